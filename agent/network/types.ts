/**
 * Domain types of the agent's network side (Nova's nova-network role on a
 * host): what the controller says about a port, as the network driver takes
 * it. Generated protobuf types never reach a network driver; the agent
 * converts an op's ports into these (agent/proto-convert.ts).
 */

/** How a network's traffic is carried between hosts. */
export type Segmentation = "flat" | "vxlan";

/** One IPv4 subnet of a network, as a host's DHCP server serves it. */
export interface SubnetSpec {
  readonly id: string;
  /** "10.0.0.0/24". */
  readonly cidr: string;
  /** The router's address guests are given; null: none (an isolated subnet). */
  readonly gatewayIp: string | null;
  /** DNS servers handed out by DHCP. */
  readonly dnsServers: readonly string[];
  /** Extra routes handed out by DHCP (option 121). */
  readonly hostRoutes: readonly { readonly destination: string; readonly nexthop: string }[];
  /** Whether guests get their address by DHCP. */
  readonly dhcp: boolean;
}

/** A network, as a host needs it. */
export interface NetworkSpec {
  /** Network id (UUID). */
  readonly id: string;
  readonly segmentation: Segmentation;
  /** `flat`: the operator's bridge on every host that carries the network (already there, never removed). */
  readonly physicalBridge: string;
  /** `vxlan`: the VXLAN network identifier. */
  readonly vni: number;
  /** MTU guests are given (by DHCP) and the host's devices use. */
  readonly mtu: number;
  readonly subnets: readonly SubnetSpec[];
  /**
   * This host's DHCP server on the network: its MAC and one address per
   * DHCP-enabled subnet (allocated by the controller's IPAM, as Neutron's
   * DHCP port). Null when no subnet has DHCP.
   */
  readonly dhcpPort: { readonly id: string; readonly mac: string; readonly fixedIps: readonly FixedIp[] } | null;
}

/** An address of a port on one of its network's subnets. */
export interface FixedIp {
  readonly subnetId: string;
  readonly address: string;
}

/** A security group rule (Neutron's model). */
export interface SecurityRuleSpec {
  /** ingress: to the port; egress: from it. */
  readonly direction: "ingress" | "egress";
  /** "tcp", "udp", "icmp", an IP protocol number ("47"), or "" for any. */
  readonly protocol: string;
  /**
   * tcp/udp: the port range (0, 0: all ports); icmp: the type in `portMin`
   * and the code in `portMax`, each -1 for any.
   */
  readonly portMin: number;
  readonly portMax: number;
  /** The other end, as a CIDR; "" with no remote group: anywhere. */
  readonly remoteCidr: string;
  /**
   * The other end, as a group: the addresses of that group's ports, resolved
   * by the controller when it sent the op (set when the rule names a group).
   */
  readonly remoteAddresses: readonly string[] | null;
}

/** A port as a host plugs it. */
export interface PortSpec {
  /** Port id (UUID). */
  readonly id: string;
  /** Unicast MAC, "fa:16:3e:…". */
  readonly mac: string;
  readonly fixedIps: readonly FixedIp[];
  readonly network: NetworkSpec;
  /**
   * Anti-spoofing and security groups apply (Neutron's port_security_enabled).
   * When false the port passes anything.
   */
  readonly portSecurity: boolean;
  /** The rules of all the port's security groups (none: only what the defaults allow). */
  readonly securityRules: readonly SecurityRuleSpec[];
}

/** How the hypervisor attaches a port: what the domain's interface names. */
export interface VifSpec {
  readonly portId: string;
  readonly mac: string;
  /** The Linux bridge the tap joins. */
  readonly bridge: string;
  /** The tap device's name (at most 15 characters). */
  readonly tap: string;
  readonly mtu: number;
}
