/**
 * The network model (Neutron's core objects, as Nova's users know them):
 * networks, their IPv4 subnets, ports with MACs and fixed addresses, and
 * security groups. The records the store returns and the API shows.
 */

export type Segmentation = "flat" | "vxlan";

export interface Network {
  readonly id: string;
  readonly name: string;
  readonly projectId: string;
  readonly shared: boolean;
  readonly segmentation: Segmentation;
  /** flat: the hosts' bridge. */
  readonly physicalNetwork: string;
  /** vxlan: the VNI; null for flat. */
  readonly vni: number | null;
  readonly mtu: number;
  /** Default of its ports' port security. */
  readonly portSecurity: boolean;
  readonly subnetIds: readonly string[];
  readonly createdAt: Date;
}

export interface AddressRange {
  readonly start: string;
  readonly end: string;
}

export interface HostRoute {
  readonly destination: string;
  readonly nexthop: string;
}

export interface Subnet {
  readonly id: string;
  readonly networkId: string;
  readonly projectId: string;
  readonly name: string;
  readonly cidr: string;
  readonly gatewayIp: string | null;
  readonly allocationPools: readonly AddressRange[];
  readonly dnsNameservers: readonly string[];
  readonly hostRoutes: readonly HostRoute[];
  readonly enableDhcp: boolean;
  readonly createdAt: Date;
}

export interface FixedIp {
  readonly subnetId: string;
  readonly ipAddress: string;
}

/** What owns a port that a host's DHCP server uses. */
export const DHCP_OWNER = "network:dhcp";

export interface Port {
  readonly id: string;
  readonly name: string;
  readonly networkId: string;
  readonly projectId: string;
  readonly macAddress: string;
  readonly fixedIps: readonly FixedIp[];
  /** The server it is attached to; null: none. */
  readonly deviceId: string | null;
  /** "compute:<zone>", "network:dhcp" or "". */
  readonly deviceOwner: string;
  readonly securityGroupIds: readonly string[];
  readonly portSecurity: boolean;
  /** Made for a server (CreateServer with a network): deleted with it, not kept free. */
  readonly autoDelete: boolean;
  /** Its place among its server's interfaces. */
  readonly position: number;
  /** A DHCP port: its host. */
  readonly dhcpHost: string | null;
  readonly createdAt: Date;
}

export type Direction = "ingress" | "egress";

export const RULE_PROTOCOLS = ["", "tcp", "udp", "icmp"] as const;
export type RuleProtocol = (typeof RULE_PROTOCOLS)[number];

export interface SecurityGroupRule {
  readonly id: string;
  readonly securityGroupId: string;
  readonly direction: Direction;
  /** "" for any protocol. */
  readonly protocol: RuleProtocol;
  /** tcp/udp: first port; icmp: type; null: any. */
  readonly portMin: number | null;
  /** tcp/udp: last port; icmp: code; null: any. */
  readonly portMax: number | null;
  /** "" for anywhere (or a remote group). */
  readonly remoteCidr: string;
  readonly remoteGroupId: string | null;
  readonly description: string;
}

export interface SecurityGroup {
  readonly id: string;
  readonly projectId: string;
  readonly name: string;
  readonly description: string;
  /** The project's default group. */
  readonly isDefault: boolean;
  readonly rules: readonly SecurityGroupRule[];
  readonly createdAt: Date;
}

/** One interface asked for at CreateServer, validated (ids checked, security groups resolved). */
export interface NetworkRequest {
  readonly networkId?: string;
  readonly portId?: string;
  readonly fixedIp?: string;
}

/** The interfaces a server asked for, kept with it until it is built. */
export interface RequestedNetworks {
  readonly networks: readonly NetworkRequest[];
  /** Security group ids of the ports made for it. */
  readonly securityGroupIds: readonly string[];
}

/** A MAC address is unicast when the low bit of its first octet is clear. */
export function isUnicastMac(mac: string): boolean {
  return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0 && mac !== "00:00:00:00:00:00";
}

/** A port as its host plugs it: what an op carries (the wire's agent.v1.Port). */
export interface HostPort {
  readonly id: string;
  readonly macAddress: string;
  readonly fixedIps: readonly FixedIp[];
  readonly network: {
    readonly id: string;
    readonly segmentation: Segmentation;
    readonly physicalBridge: string;
    readonly vni: number;
    readonly mtu: number;
    readonly subnets: readonly {
      readonly id: string;
      readonly cidr: string;
      readonly gatewayIp: string;
      readonly dnsServers: readonly string[];
      readonly hostRoutes: readonly HostRoute[];
      readonly dhcp: boolean;
    }[];
    /** The host's DHCP port on the network; null when no subnet has DHCP. */
    readonly dhcpPort: { readonly id: string; readonly macAddress: string; readonly fixedIps: readonly FixedIp[] } | null;
  };
  readonly portSecurity: boolean;
  readonly securityRules: readonly {
    readonly direction: Direction;
    readonly protocol: string;
    /** tcp/udp: first port (0: all); icmp: type (-1: any). */
    readonly portMin: number;
    /** tcp/udp: last port; icmp: code (-1: any). */
    readonly portMax: number;
    readonly remoteCidr: string;
    readonly remoteGroup: boolean;
    readonly remoteAddresses: readonly string[];
  }[];
}
