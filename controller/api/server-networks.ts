/**
 * CreateServer's `networks`, `security_groups` and `no_network`, checked
 * against what the caller may use: the interfaces the server will get when
 * it is placed (controller/store/server-ports.ts makes them).
 */
import type { NetworkRequest as PbNetworkRequest } from "../../gen/novamesh/compute/v1/server.js";
import type { Network, NetworkRequest, RequestedNetworks } from "../domain/network.js";
import { contains, parseCidr, parseIpv4 } from "../domain/ipv4.js";
import { ApiError, failedPrecondition, invalidArgument, notFound } from "../errors.js";
import type { Queryable } from "../store/db.js";
import { getNetwork, listNetworks, networkNames, subnetsOf } from "../store/networks.js";
import { addressTaken, getPort, portsOfServers } from "../store/ports.js";
import { ensureDefaultGroup, findSecurityGroup } from "../store/security-groups.js";
import type { Principal } from "../domain/types.js";
import { status } from "@grpc/grpc-js";
import type { ServerNetworks } from "./convert.js";
import * as v from "./validate.js";

/** The interfaces of servers, by server id (four queries, whatever the number of servers). */
export async function networksOf(q: Queryable, serverIds: readonly string[]): Promise<Map<string, ServerNetworks>> {
  const ports = await portsOfServers(q, serverIds);
  const names = await networkNames(q, [...new Set([...ports.values()].flat().map((p) => p.networkId))]);
  return new Map(serverIds.map((id) => [id, { ports: ports.get(id) ?? [], networkNames: names }]));
}

/** Whether `who` may plug servers into `n`. */
export function mayUseNetwork(who: Principal, n: Network): boolean {
  return who.role === "admin" || n.shared || n.projectId === who.projectId;
}

/** A network the caller may use, or NOT_FOUND (naming `field`'s value). */
export async function usableNetwork(q: Queryable, who: Principal, id: string, field: string): Promise<Network> {
  const n = await getNetwork(q, v.uuid(field, id));
  if (!n || !mayUseNetwork(who, n)) throw notFound("network", id);
  return n;
}

/**
 * The interfaces a new server asks for, or null for none. Empty `networks`
 * gives the one network the project can use (its own, else a shared one).
 */
export async function requestedNetworksOf(
  q: Queryable,
  who: Principal,
  req: { networks: readonly PbNetworkRequest[]; securityGroups: readonly string[]; noNetwork: boolean },
): Promise<RequestedNetworks | null> {
  if (req.noNetwork) {
    if (req.networks.length) throw invalidArgument("networks", "must be empty with no_network");
    if (req.securityGroups.length) throw invalidArgument("security_groups", "must be empty with no_network");
    return null;
  }
  if (req.networks.length > 16) throw invalidArgument("networks", "at most 16 interfaces");
  const networks: NetworkRequest[] = [];
  if (req.networks.length === 0) {
    const usable = await listNetworks(q, who.projectId);
    const own = usable.filter((n) => n.projectId === who.projectId);
    const choice = own.length > 0 ? own : usable.filter((n) => n.shared);
    if (choice.length === 0) {
      if (req.securityGroups.length) throw invalidArgument("security_groups", "the server gets no interface: the project has no network");
      return null;
    }
    if (choice.length > 1) {
      throw invalidArgument("networks", `the project can use ${choice.length} networks (${choice.map((n) => n.name).join(", ")}); name the ones to use, or set no_network`);
    }
    networks.push({ networkId: choice[0]!.id });
  }
  const ports = new Set<string>();
  for (const [i, r] of req.networks.entries()) {
    const f = `networks[${i}]`;
    if (!!r.networkId === !!r.portId) throw invalidArgument(f, "give network_id or port_id, not both or neither");
    if (r.portId) {
      if (r.fixedIp) throw invalidArgument(`${f}.fixed_ip`, "only goes with network_id (a port has its addresses)");
      const id = v.uuid(`${f}.port_id`, r.portId);
      const p = await getPort(q, id);
      if (!p || (who.role !== "admin" && p.projectId !== who.projectId)) throw notFound("port", r.portId);
      if (p.deviceId || p.dhcpHost) throw failedPrecondition(`port ${id} is in use by ${p.deviceId ?? "a DHCP server"}`, "PORT_IN_USE", { port: id });
      if (ports.has(id)) throw invalidArgument(`${f}.port_id`, `port ${id} is named twice`);
      ports.add(id);
      networks.push({ portId: id });
      continue;
    }
    const net = await usableNetwork(q, who, r.networkId, `${f}.network_id`);
    if (!r.fixedIp) {
      networks.push({ networkId: net.id });
      continue;
    }
    const addr = parseIpv4(r.fixedIp);
    if (addr === null) throw invalidArgument(`${f}.fixed_ip`, `${JSON.stringify(r.fixedIp.slice(0, 64))} is not an IPv4 address`);
    const subnet = (await subnetsOf(q, [net.id])).find((s) => contains(parseCidr(s.cidr)!, addr));
    if (!subnet) throw invalidArgument(`${f}.fixed_ip`, `${r.fixedIp} is in no subnet of network ${net.id}`);
    if (await addressTaken(q, subnet.id, addr)) {
      throw new ApiError(status.ALREADY_EXISTS, `IP address ${r.fixedIp} is already in use on subnet ${subnet.id}`, {
        reason: "IP_ADDRESS_IN_USE",
        fieldViolations: [{ field: `${f}.fixed_ip`, description: "is already in use" }],
        metadata: { subnet: subnet.id, ip_address: r.fixedIp },
      });
    }
    networks.push({ networkId: net.id, fixedIp: r.fixedIp });
  }
  const securityGroupIds: string[] = [];
  for (const [i, g] of req.securityGroups.entries()) {
    const found = await findSecurityGroup(q, who.projectId, g);
    if (found === "ambiguous") throw invalidArgument(`security_groups[${i}]`, `several groups are named ${JSON.stringify(g)}; give its id`);
    if (!found) throw notFound("security_group", g);
    if (!securityGroupIds.includes(found.id)) securityGroupIds.push(found.id);
  }
  if (securityGroupIds.length === 0) securityGroupIds.push((await ensureDefaultGroup(q, who.projectId)).id);
  return { networks, securityGroupIds };
}
