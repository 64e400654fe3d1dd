/**
 * A server's ports as one host plugs them: each with its network, the
 * network's subnets, the host's DHCP port on it (made on first use) and the
 * rules of its security groups with remote groups resolved to addresses.
 * Ops that build, receive or replug a server on a host carry these.
 */
import type { HostPort, Network, Port, SecurityGroupRule, Subnet } from "../domain/network.js";
import type { Queryable } from "../store/db.js";
import { getNetwork, subnetsOf } from "../store/networks.js";
import { dhcpPortOf, ensureDhcpPort, portsOfServer, portsOfServers } from "../store/ports.js";
import { tunnelPeers } from "../store/network-changes.js";
import { serverIdsOnHost } from "../store/instances.js";
import { getSecurityGroup, groupAddresses } from "../store/security-groups.js";

/** A rule's port range as the host applies it. */
function rangeOf(r: SecurityGroupRule): { portMin: number; portMax: number } {
  if (r.protocol === "icmp") return { portMin: r.portMin ?? -1, portMax: r.portMax ?? -1 };
  if (r.protocol === "tcp" || r.protocol === "udp") {
    if (r.portMin === null) return { portMin: 0, portMax: 0 };
    return { portMin: r.portMin, portMax: r.portMax ?? r.portMin };
  }
  return { portMin: 0, portMax: 0 };
}

/**
 * The host side of `ports` on `host`. The host's DHCP port on each network
 * is made if missing, unless `readOnly` (then a network without one is sent
 * without DHCP: the next build or move on the host makes it).
 */
export async function hostPortsFor(q: Queryable, ports: readonly Port[], host: string, o: { readOnly?: boolean; remoteGroups?: Set<string> } = {}): Promise<HostPort[]> {
  if (ports.length === 0) return [];
  const networks = new Map<string, { net: Network; subnets: Subnet[]; dhcp: Port | null }>();
  for (const p of ports) {
    if (networks.has(p.networkId)) continue;
    const net = await getNetwork(q, p.networkId);
    if (!net) throw new Error(`port ${p.id} is on network ${p.networkId}, which is gone`);
    networks.set(p.networkId, { net, subnets: await subnetsOf(q, [net.id]), dhcp: o.readOnly ? await dhcpPortOf(q, net.id, host) : await ensureDhcpPort(q, net, host) });
  }
  const groups = new Map<string, SecurityGroupRule[]>();
  for (const id of new Set(ports.flatMap((p) => p.securityGroupIds))) groups.set(id, [...((await getSecurityGroup(q, id))?.rules ?? [])]);
  const remote = await groupAddresses(q, [...new Set([...groups.values()].flat().flatMap((r) => (r.remoteGroupId ? [r.remoteGroupId] : [])))]);
  for (const g of remote.keys()) o.remoteGroups?.add(g);
  return ports.map((p) => {
    const { net, subnets, dhcp } = networks.get(p.networkId)!;
    return {
      id: p.id,
      macAddress: p.macAddress,
      fixedIps: p.fixedIps,
      network: {
        id: net.id,
        segmentation: net.segmentation,
        physicalBridge: net.physicalNetwork,
        vni: net.vni ?? 0,
        mtu: net.mtu,
        subnets: subnets.map((s) => ({
          id: s.id,
          cidr: s.cidr,
          gatewayIp: s.gatewayIp ?? "",
          dnsServers: s.dnsNameservers,
          hostRoutes: s.hostRoutes,
          dhcp: s.enableDhcp,
        })),
        dhcpPort: dhcp ? { id: dhcp.id, macAddress: dhcp.macAddress, fixedIps: dhcp.fixedIps } : null,
      },
      portSecurity: p.portSecurity,
      securityRules: p.portSecurity
        ? p.securityGroupIds.flatMap((g) =>
            (groups.get(g) ?? []).map((r) => ({
              direction: r.direction,
              protocol: r.protocol,
              ...rangeOf(r),
              remoteCidr: r.remoteCidr,
              remoteGroup: r.remoteGroupId !== null,
              remoteAddresses: r.remoteGroupId ? (remote.get(r.remoteGroupId) ?? []) : [],
            })),
          )
        : [],
    };
  });
}

/** A server's ports on `host`. */
export async function hostPortsOf(q: Queryable, serverId: string, host: string): Promise<HostPort[]> {
  return hostPortsFor(q, await portsOfServer(q, serverId), host);
}

/** What a host plugs now: its tunnel peers, and the ports of each instance on it. */
export interface HostNetwork {
  readonly tunnelPeers: readonly string[];
  readonly instances: ReadonlyMap<string, HostPort[]>;
}

/**
 * What a host's network was made of: a change to any of these concerns the
 * host (network-sync.ts), as does a change to its tunnel peers.
 */
export interface HostNetworkSources {
  /** Its servers' ports and its DHCP ports. */
  readonly ports: ReadonlySet<string>;
  readonly servers: ReadonlySet<string>;
  readonly networks: ReadonlySet<string>;
  /** The groups of its ports (their rules). */
  readonly groups: ReadonlySet<string>;
  /** The groups its rules name as remote group (their members' addresses). */
  readonly remoteGroups: ReadonlySet<string>;
}

/** The network of `host`: the ports of the servers it has, as it plugs them, and its tunnel peers; with what it was made of. */
export async function hostNetworkOf(q: Queryable, host: string): Promise<HostNetwork & { readonly sources: HostNetworkSources }> {
  const servers = await serverIdsOnHost(q, host);
  const ports = [...(await portsOfServers(q, servers)).values()].flat();
  // All at once: each network, DHCP port and security group is read once for the host, not once per server.
  const remoteGroups = new Set<string>();
  const hostPorts = await hostPortsFor(q, ports, host, { readOnly: true, remoteGroups });
  const instances = new Map<string, HostPort[]>();
  ports.forEach((p, i) => instances.set(p.deviceId!, [...(instances.get(p.deviceId!) ?? []), hostPorts[i]!]));
  const sources: HostNetworkSources = {
    ports: new Set([...ports.map((p) => p.id), ...hostPorts.flatMap((p) => (p.network.dhcpPort ? [p.network.dhcpPort.id] : []))]),
    servers: new Set(servers),
    networks: new Set(ports.map((p) => p.networkId)),
    groups: new Set(ports.flatMap((p) => p.securityGroupIds)),
    remoteGroups,
  };
  return { tunnelPeers: await tunnelPeers(q, host), instances, sources };
}
