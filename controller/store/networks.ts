/**
 * Networks and subnets (Neutron's core objects). Allocation of VNIs is
 * atomic through the unique key on `networks.vni`; subnets of one network
 * are checked for overlap under the network's row lock.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { AddressRange, HostRoute, Network, Segmentation, Subnet } from "../domain/network.js";
import { ApiError, failedPrecondition, invalidArgument } from "../errors.js";
import type { Queryable, Row } from "./db.js";
import { exec, isDuplicateKey, json, select } from "./db.js";
import { noteNetworkChange, touch } from "./network-changes.js";

/** VNIs tenant networks get, inclusive. */
export interface VniRange {
  readonly min: number;
  readonly max: number;
}

const NETWORK_COLUMNS = "id, name, project_id, shared, segmentation, physical_network, vni, mtu, port_security, created_at";

function rowToNetwork(r: Row, subnetIds: readonly string[]): Network {
  return {
    id: r.id,
    name: r.name,
    projectId: r.project_id,
    shared: !!r.shared,
    segmentation: r.segmentation as Segmentation,
    physicalNetwork: r.physical_network,
    vni: r.vni === null ? null : Number(r.vni),
    mtu: r.mtu,
    portSecurity: !!r.port_security,
    subnetIds,
    createdAt: r.created_at,
  };
}

async function withSubnetIds(q: Queryable, rows: Row[]): Promise<Network[]> {
  if (rows.length === 0) return [];
  const subs = await select<{ id: string; network_id: string }>(
    q,
    `SELECT id, network_id FROM subnets WHERE network_id IN (${rows.map(() => "?").join(",")}) ORDER BY created_at, id`,
    rows.map((r) => r.id),
  );
  return rows.map((r) =>
    rowToNetwork(
      r,
      subs.filter((s) => s.network_id === r.id).map((s) => s.id),
    ),
  );
}

/**
 * Creates a network; a vxlan one gets the lowest free VNI of `range`
 * (RESOURCE_EXHAUSTED, reason VNI_EXHAUSTED, when none is left).
 */
export async function createNetwork(
  q: Queryable,
  n: { name: string; projectId: string; shared: boolean; segmentation: Segmentation; physicalNetwork: string; mtu: number; portSecurity: boolean },
  range: VniRange,
): Promise<Network> {
  const id = randomUUID();
  for (let attempt = 0; ; attempt++) {
    let vni: number | null = null;
    if (n.segmentation === "vxlan") {
      const used = await select<{ vni: number }>(q, "SELECT vni FROM networks WHERE vni BETWEEN ? AND ? ORDER BY vni", [range.min, range.max]);
      vni = range.min;
      for (const u of used) {
        if (Number(u.vni) !== vni) break;
        vni++;
      }
      if (vni > range.max) {
        throw new ApiError(status.RESOURCE_EXHAUSTED, `no VNI is left in ${range.min}-${range.max}`, { reason: "VNI_EXHAUSTED" });
      }
    }
    try {
      await exec(
        q,
        "INSERT INTO networks (id, name, project_id, shared, segmentation, physical_network, vni, mtu, port_security) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [id, n.name, n.projectId, n.shared, n.segmentation, n.physicalNetwork, vni, n.mtu, n.portSecurity],
      );
      return (await getNetwork(q, id))!;
    } catch (err) {
      // Another controller took the same VNI first: choose again.
      if (isDuplicateKey(err) && vni !== null && attempt < 20) continue;
      throw err;
    }
  }
}

export async function getNetwork(q: Queryable, id: string, o: { lock?: boolean } = {}): Promise<Network | null> {
  const rows = await select(q, `SELECT ${NETWORK_COLUMNS} FROM networks WHERE id = ?${o.lock ? " FOR UPDATE" : ""}`, [id]);
  return (await withSubnetIds(q, rows))[0] ?? null;
}

/** A project's networks and the shared ones (every network when `projectId` is undefined), oldest first. */
export async function listNetworks(q: Queryable, projectId: string | undefined): Promise<Network[]> {
  const rows =
    projectId === undefined
      ? await select(q, `SELECT ${NETWORK_COLUMNS} FROM networks ORDER BY created_at, id`)
      : await select(q, `SELECT ${NETWORK_COLUMNS} FROM networks WHERE project_id = ? OR shared = 1 ORDER BY created_at, id`, [projectId]);
  return withSubnetIds(q, rows);
}

/** Deletes a network with its subnets and its hosts' DHCP ports; refused while any other port is on it. */
export async function deleteNetwork(q: Queryable, id: string): Promise<boolean> {
  const net = await getNetwork(q, id, { lock: true });
  if (!net) return false;
  const [inUse] = await select<{ n: number }>(q, "SELECT COUNT(*) AS n FROM ports WHERE network_id = ? AND dhcp_host IS NULL", [id]);
  if (Number(inUse!.n) > 0) {
    throw failedPrecondition(`network ${id} still has ${inUse!.n} port(s); delete or detach them first`, "NETWORK_IN_USE", { network: id, ports: String(inUse!.n) });
  }
  await exec(q, "DELETE a FROM ip_allocations a JOIN ports p ON p.id = a.port_id WHERE p.network_id = ?", [id]);
  await exec(q, "DELETE FROM ports WHERE network_id = ?", [id]);
  await exec(q, "DELETE FROM subnets WHERE network_id = ?", [id]);
  await exec(q, "DELETE FROM networks WHERE id = ?", [id]);
  await noteNetworkChange(q, [touch("network", id)]);
  return true;
}

const SUBNET_COLUMNS =
  "id, network_id, project_id, name, cidr, first_address, last_address, gateway_ip, allocation_pools, dns_nameservers, host_routes, enable_dhcp, created_at";

function rowToSubnet(r: Row): Subnet {
  return {
    id: r.id,
    networkId: r.network_id,
    projectId: r.project_id,
    name: r.name,
    cidr: r.cidr,
    gatewayIp: r.gateway_ip,
    allocationPools: json<AddressRange[]>(r.allocation_pools, []),
    dnsNameservers: json<string[]>(r.dns_nameservers, []),
    hostRoutes: json<HostRoute[]>(r.host_routes, []),
    enableDhcp: !!r.enable_dhcp,
    createdAt: r.created_at,
  };
}

/** A subnet to create, validated: its range as integers for the overlap check. */
export type NewSubnet = Omit<Subnet, "id" | "createdAt"> & { readonly first: number; readonly last: number };

/**
 * Creates a subnet, under its network's row lock so two subnets that
 * overlap cannot both be created (INVALID_ARGUMENT naming subnet.cidr).
 * The caller runs it in a transaction.
 */
export async function createSubnet(q: Queryable, s: NewSubnet): Promise<Subnet> {
  await select(q, "SELECT id FROM networks WHERE id = ? FOR UPDATE", [s.networkId]);
  const clash = await select<{ id: string; cidr: string }>(
    q,
    "SELECT id, cidr FROM subnets WHERE network_id = ? AND first_address <= ? AND last_address >= ?",
    [s.networkId, s.last, s.first],
  );
  if (clash[0]) throw invalidArgument("subnet.cidr", `${s.cidr} overlaps subnet ${clash[0].id} (${clash[0].cidr}) of the network`);
  const id = randomUUID();
  await exec(
    q,
    `INSERT INTO subnets (id, network_id, project_id, name, cidr, first_address, last_address, gateway_ip, allocation_pools, dns_nameservers, host_routes, enable_dhcp)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      id,
      s.networkId,
      s.projectId,
      s.name,
      s.cidr,
      s.first,
      s.last,
      s.gatewayIp,
      JSON.stringify(s.allocationPools),
      JSON.stringify(s.dnsNameservers),
      JSON.stringify(s.hostRoutes),
      s.enableDhcp,
    ],
  );
  // Hosts with ports on the network list its subnets.
  await noteNetworkChange(q, [touch("network", s.networkId)]);
  return (await getSubnet(q, id))!;
}

export async function getSubnet(q: Queryable, id: string, o: { lock?: boolean } = {}): Promise<Subnet | null> {
  const rows = await select(q, `SELECT ${SUBNET_COLUMNS} FROM subnets WHERE id = ?${o.lock ? " FOR UPDATE" : ""}`, [id]);
  return rows[0] ? rowToSubnet(rows[0]) : null;
}

/** Subnets of the given networks, oldest first. */
export async function subnetsOf(q: Queryable, networkIds: readonly string[]): Promise<Subnet[]> {
  if (networkIds.length === 0) return [];
  const rows = await select(
    q,
    `SELECT ${SUBNET_COLUMNS} FROM subnets WHERE network_id IN (${networkIds.map(() => "?").join(",")}) ORDER BY created_at, id`,
    [...networkIds],
  );
  return rows.map(rowToSubnet);
}

/** Deletes a subnet; refused while a port other than a DHCP port has an address on it. */
export async function deleteSubnet(q: Queryable, id: string): Promise<boolean> {
  const s = await getSubnet(q, id, { lock: true });
  if (!s) return false;
  const [inUse] = await select<{ n: number }>(
    q,
    "SELECT COUNT(*) AS n FROM ip_allocations a JOIN ports p ON p.id = a.port_id WHERE a.subnet_id = ? AND p.dhcp_host IS NULL",
    [id],
  );
  if (Number(inUse!.n) > 0) {
    throw failedPrecondition(`subnet ${id} still has ${inUse!.n} address(es) in use`, "SUBNET_IN_USE", { subnet: id, addresses: String(inUse!.n) });
  }
  await exec(q, "DELETE FROM ip_allocations WHERE subnet_id = ?", [id]);
  await exec(q, "DELETE FROM subnets WHERE id = ?", [id]);
  await noteNetworkChange(q, [touch("network", s.networkId)]);
  return true;
}

/** The names of networks, by id. */
export async function networkNames(q: Queryable, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await select<{ id: string; name: string }>(q, `SELECT id, name FROM networks WHERE id IN (${ids.map(() => "?").join(",")})`, [...ids]);
  return new Map(rows.map((r) => [r.id, r.name]));
}
