/**
 * Ports and IPAM. An address is a row of `ip_allocations`, keyed by
 * (subnet, address): the primary key makes a duplicate impossible whatever
 * the concurrency, and deleting a port's rows releases its addresses
 * exactly once. Allocation takes the subnet's row lock (FOR UPDATE), so two
 * allocators of one subnet take turns instead of colliding, and finds the
 * lowest free address with locking reads of the primary key that stop at
 * the first hole (they see every committed allocation even in a
 * transaction that started earlier): its cost follows the addresses below
 * the hole, not all the subnet's, and nothing is read into memory.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { FixedIp, Port } from "../domain/network.js";
import { DHCP_OWNER } from "../domain/network.js";
import { contains, formatIpv4, parseCidr, parseIpv4, type Range } from "../domain/ipv4.js";
import { ApiError, invalidArgument } from "../errors.js";
import type { Queryable, Row } from "./db.js";
import { exec, isDuplicateKey, json, select } from "./db.js";
import { noteNetworkChange, portTouches, touch, type NetworkTouch } from "./network-changes.js";

/** Neutron's (and Nova's) base MAC prefix: fa:16:3e is locally administered and unicast. */
const MAC_PREFIX = "fa:16:3e";

function randomMac(): string {
  return [MAC_PREFIX, ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

/** A subnet's address space: no free address left. */
export function addressExhausted(subnetId: string, cidr: string): ApiError {
  return new ApiError(status.RESOURCE_EXHAUSTED, `no free IP address is left on subnet ${subnetId} (${cidr})`, {
    reason: "IP_ADDRESS_EXHAUSTED",
    metadata: { subnet: subnetId, cidr },
  });
}

/** What an address request names: a subnet (any free address), an address, or both. */
export interface AddressRequest {
  readonly subnetId?: string;
  readonly ipAddress?: string;
}

/** A port to create (its network checked by the caller). */
export interface NewPort {
  readonly networkId: string;
  readonly projectId: string;
  readonly name?: string;
  /** Given MAC (unicast, checked by the caller); generated when absent. */
  readonly macAddress?: string;
  /** Absent: one free address on each of the network's subnets. */
  readonly fixedIps?: readonly AddressRequest[];
  readonly securityGroupIds: readonly string[];
  readonly portSecurity: boolean;
  readonly deviceId?: string | null;
  readonly deviceOwner?: string;
  readonly autoDelete?: boolean;
  readonly position?: number;
  readonly dhcpHost?: string | null;
  /** Field the caller names in errors about the address ("fixed_ips", "networks[0].fixed_ip"). */
  readonly field?: string;
}

interface SubnetRow {
  id: string;
  cidr: string;
  gateway_ip: string | null;
  allocation_pools: unknown;
  enable_dhcp: number;
}

/**
 * Creates a port with its addresses, in the caller's transaction. Errors:
 * INVALID_ARGUMENT (an address outside its subnet, a subnet of another
 * network), ALREADY_EXISTS (the MAC on this network, or the address, is
 * taken), RESOURCE_EXHAUSTED IP_ADDRESS_EXHAUSTED.
 */
export async function createPort(q: Queryable, p: NewPort): Promise<Port> {
  const field = p.field ?? "fixed_ips";
  const subnets = await select<SubnetRow>(q, "SELECT id, cidr, gateway_ip, allocation_pools, enable_dhcp FROM subnets WHERE network_id = ? ORDER BY created_at, id", [
    p.networkId,
  ]);
  const requests: AddressRequest[] = p.fixedIps ? [...p.fixedIps] : subnets.map((s) => ({ subnetId: s.id }));
  // Which subnet each request is on.
  const planned: { subnet: SubnetRow; address: number | null }[] = [];
  for (const [i, r] of requests.entries()) {
    const f = `${field}[${i}]`;
    let subnet: SubnetRow | undefined;
    const address = r.ipAddress ? parseIpv4(r.ipAddress) : null;
    if (r.ipAddress && address === null) throw invalidArgument(`${f}.ip_address`, `${JSON.stringify(r.ipAddress)} is not an IPv4 address`);
    if (r.subnetId) {
      subnet = subnets.find((s) => s.id === r.subnetId);
      if (!subnet) throw invalidArgument(`${f}.subnet_id`, `subnet ${r.subnetId} is not a subnet of network ${p.networkId}`);
    } else if (address !== null) {
      subnet = subnets.find((s) => contains(parseCidr(s.cidr)!, address));
      if (!subnet) throw invalidArgument(`${f}.ip_address`, `${r.ipAddress} is in no subnet of network ${p.networkId}`);
    } else {
      throw invalidArgument(f, "names neither a subnet nor an address");
    }
    if (address !== null) {
      const c = parseCidr(subnet.cidr)!;
      if (!contains(c, address) || address === c.first || address === c.last) {
        throw invalidArgument(`${f}.ip_address`, `${r.ipAddress} is not a usable address of subnet ${subnet.id} (${subnet.cidr})`);
      }
      if (subnet.gateway_ip === r.ipAddress) throw invalidArgument(`${f}.ip_address`, `${r.ipAddress} is the gateway of subnet ${subnet.id}`);
    }
    if (planned.some((x) => x.subnet.id === subnet!.id && address === null && x.address === null)) {
      throw invalidArgument(f, `asks twice for an address on subnet ${subnet.id}`);
    }
    planned.push({ subnet, address });
  }
  const id = randomUUID();
  // The MAC: given, or generated until one is free on the network.
  for (let attempt = 0; ; attempt++) {
    const mac = p.macAddress ?? randomMac();
    try {
      await exec(
        q,
        `INSERT INTO ports (id, name, network_id, project_id, mac_address, device_id, device_owner, dhcp_host, position, auto_delete, port_security)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        [id, p.name ?? "", p.networkId, p.projectId, mac, p.deviceId ?? null, p.deviceOwner ?? "", p.dhcpHost ?? null, p.position ?? 0, p.autoDelete ?? false, p.portSecurity],
      );
      break;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      if (p.macAddress) throw new ApiError(status.ALREADY_EXISTS, `MAC address ${p.macAddress} is already in use on network ${p.networkId}`, { reason: "MAC_ADDRESS_IN_USE", fieldViolations: [{ field: "mac_address", description: "is already in use on the network" }] });
      if ((p.dhcpHost ?? null) !== null) throw err;
      if (attempt >= 10) throw err;
    }
  }
  for (const [i, x] of planned.entries()) await allocate(q, id, x.subnet, x.address, `${field}[${i}]`);
  for (const g of p.securityGroupIds) await exec(q, "INSERT INTO port_security_groups (port_id, security_group_id) VALUES (?, ?)", [id, g]);
  await noteNetworkChange(q, [touch("port", id), ...(p.deviceId ? [touch("server", p.deviceId)] : []), ...p.securityGroupIds.map((g) => touch("members", g))]);
  return (await getPort(q, id))!;
}

/** Allocates `address` (or the lowest free one of the pools) on `subnet` for `portId`. */
async function allocate(q: Queryable, portId: string, subnet: SubnetRow, address: number | null, field: string): Promise<void> {
  // Allocators of one subnet take turns; the locking reads below see what the others committed.
  const [locked] = await select<{ alloc_floor: number }>(q, "SELECT alloc_floor FROM subnets WHERE id = ? FOR UPDATE", [subnet.id]);
  if (address !== null) {
    try {
      await exec(q, "INSERT INTO ip_allocations (subnet_id, address, port_id) VALUES (?, ?, ?)", [subnet.id, address, portId]);
      return;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      throw new ApiError(status.ALREADY_EXISTS, `IP address ${formatIpv4(address)} is already in use on subnet ${subnet.id}`, {
        reason: "IP_ADDRESS_IN_USE",
        fieldViolations: [{ field: `${field}.ip_address`, description: "is already in use" }],
        metadata: { subnet: subnet.id, ip_address: formatIpv4(address) },
      });
    }
  }
  const pools: Range[] = json<{ start: string; end: string }[]>(subnet.allocation_pools, []).map((r) => ({ first: parseIpv4(r.start)!, last: parseIpv4(r.end)! }));
  const floor = Number(locked?.alloc_floor ?? 0);
  let free: number | null = null;
  for (const pool of pools) if ((free = await lowestFree(q, subnet.id, Math.max(pool.first, floor), pool.last)) !== null) break;
  if (free === null) throw addressExhausted(subnet.id, subnet.cidr);
  await exec(q, "INSERT INTO ip_allocations (subnet_id, address, port_id) VALUES (?, ?, ?)", [subnet.id, free, portId]);
  // Pools in ascending order: every pool address up to this one is taken now.
  if (pools.every((p, i) => i === 0 || pools[i - 1]!.last < p.first)) await exec(q, "UPDATE subnets SET alloc_floor = ? WHERE id = ? AND alloc_floor < ?", [free + 1, subnet.id, free + 1]);
}

/**
 * The lowest free address of a subnet in [from, last], or null: `from` if
 * free, else the lowest taken address of the range whose successor (still
 * in the range) is free. Both walk the primary key (subnet_id, address)
 * from `from` and stop at the first hole; with the subnet's floor as
 * `from` that is a few rows, not every allocation.
 */
async function lowestFree(q: Queryable, subnetId: string, from: number, last: number): Promise<number | null> {
  if (from > last) return null;
  const first = await select(q, "SELECT address FROM ip_allocations WHERE subnet_id = ? AND address = ? LOCK IN SHARE MODE", [subnetId, from]);
  if (first.length === 0) return from;
  const gap = await select<{ free: number }>(
    q,
    `SELECT a.address + 1 AS free FROM ip_allocations a
       LEFT JOIN ip_allocations b ON b.subnet_id = a.subnet_id AND b.address = a.address + 1
      WHERE a.subnet_id = ? AND a.address >= ? AND a.address < ? AND b.address IS NULL
      ORDER BY a.address LIMIT 1 LOCK IN SHARE MODE`,
    [subnetId, from, last],
  );
  return gap[0] ? Number(gap[0].free) : null;
}

/**
 * Addresses of the ports `where` selects are about to be released: each
 * subnet's floor comes down to the lowest of them. Every subnet concerned
 * is locked (in allocation order) before any address is deleted, so an
 * allocator that raises the floor waits for the release, or the release
 * for it; never a floor above a free address.
 */
async function lowerFloors(q: Queryable, where: string, params: readonly unknown[]): Promise<void> {
  const freed = await select<{ subnet_id: string; m: number }>(
    q,
    `SELECT a.subnet_id, MIN(a.address) AS m FROM ip_allocations a JOIN ports p ON p.id = a.port_id JOIN subnets s ON s.id = a.subnet_id
      WHERE ${where} GROUP BY a.subnet_id, s.created_at ORDER BY s.created_at, a.subnet_id`,
    [...params],
  );
  for (const f of freed) await exec(q, "UPDATE subnets SET alloc_floor = LEAST(alloc_floor, ?) WHERE id = ?", [f.m, f.subnet_id]);
}

const PORT_COLUMNS =
  "p.id, p.name, p.network_id, p.project_id, p.mac_address, p.device_id, p.device_owner, p.dhcp_host, p.position, p.auto_delete, p.port_security, p.created_at";

async function withDetails(q: Queryable, rows: Row[]): Promise<Port[]> {
  if (rows.length === 0) return [];
  const ids = rows.map((r) => r.id as string);
  const marks = ids.map(() => "?").join(",");
  const ips = await select<{ port_id: string; subnet_id: string; address: number }>(
    q,
    `SELECT a.port_id, a.subnet_id, a.address FROM ip_allocations a JOIN subnets s ON s.id = a.subnet_id WHERE a.port_id IN (${marks}) ORDER BY s.created_at, s.id, a.address`,
    ids,
  );
  const groups = await select<{ port_id: string; security_group_id: string }>(
    q,
    `SELECT port_id, security_group_id FROM port_security_groups WHERE port_id IN (${marks}) ORDER BY security_group_id`,
    ids,
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    networkId: r.network_id,
    projectId: r.project_id,
    macAddress: r.mac_address,
    fixedIps: ips.filter((a) => a.port_id === r.id).map((a): FixedIp => ({ subnetId: a.subnet_id, ipAddress: formatIpv4(Number(a.address)) })),
    deviceId: r.device_id,
    deviceOwner: r.device_owner,
    securityGroupIds: groups.filter((g) => g.port_id === r.id).map((g) => g.security_group_id),
    portSecurity: !!r.port_security,
    autoDelete: !!r.auto_delete,
    position: r.position,
    dhcpHost: r.dhcp_host,
    createdAt: r.created_at,
  }));
}

export async function getPort(q: Queryable, id: string, o: { lock?: boolean } = {}): Promise<Port | null> {
  const rows = await select(q, `SELECT ${PORT_COLUMNS} FROM ports p WHERE p.id = ?${o.lock ? " FOR UPDATE" : ""}`, [id]);
  return (await withDetails(q, rows))[0] ?? null;
}

/** Ports by filter (a project's; a network's; a server's), oldest first; DHCP ports only when asked by network. */
export async function listPorts(q: Queryable, f: { projectId?: string; networkId?: string; deviceId?: string }): Promise<Port[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  for (const [column, value] of [
    ["project_id", f.projectId],
    ["network_id", f.networkId],
    ["device_id", f.deviceId],
  ] as const) {
    if (value === undefined) continue;
    where.push(`p.${column} = ?`);
    params.push(value);
  }
  const rows = await select(q, `SELECT ${PORT_COLUMNS} FROM ports p ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY p.created_at, p.id`, params);
  return withDetails(q, rows);
}

/** A server's ports, in interface order. */
export async function portsOfServer(q: Queryable, serverId: string): Promise<Port[]> {
  const rows = await select(q, `SELECT ${PORT_COLUMNS} FROM ports p WHERE p.device_id = ? ORDER BY p.position, p.created_at`, [serverId]);
  return withDetails(q, rows);
}

/** The ports of several servers, by server, in interface order (one query each for ports, addresses, groups). */
export async function portsOfServers(q: Queryable, serverIds: readonly string[]): Promise<Map<string, Port[]>> {
  const out = new Map<string, Port[]>();
  if (serverIds.length === 0) return out;
  const rows = await select(
    q,
    `SELECT ${PORT_COLUMNS} FROM ports p WHERE p.device_id IN (${serverIds.map(() => "?").join(",")}) ORDER BY p.position, p.created_at`,
    [...serverIds],
  );
  for (const port of await withDetails(q, rows)) {
    const list = out.get(port.deviceId!) ?? [];
    list.push(port);
    out.set(port.deviceId!, list);
  }
  return out;
}

/** Attaches a free port to a server at `position`; false if it is no longer free. */
export async function attachPort(q: Queryable, portId: string, serverId: string, deviceOwner: string, position: number): Promise<boolean> {
  const r = await exec(q, "UPDATE ports SET device_id = ?, device_owner = ?, position = ? WHERE id = ? AND device_id IS NULL AND dhcp_host IS NULL", [
    serverId,
    deviceOwner,
    position,
    portId,
  ]);
  if (r.affectedRows === 1) await noteNetworkChange(q, [touch("port", portId), touch("server", serverId)]);
  return r.affectedRows === 1;
}

/** Deletes a port and releases its addresses. */
export async function deletePort(q: Queryable, id: string): Promise<boolean> {
  const touched = await portTouches(q, id, { members: true });
  await lowerFloors(q, "p.id = ?", [id]);
  await exec(q, "DELETE FROM ip_allocations WHERE port_id = ?", [id]);
  const r = await exec(q, "DELETE FROM ports WHERE id = ?", [id]);
  if (r.affectedRows === 1) await noteNetworkChange(q, touched);
  return r.affectedRows === 1;
}

/**
 * A server is gone (or never got its ports): the ports made for it are
 * deleted and their addresses released; ports it was given are free again.
 * Returns how many ports it had.
 */
export async function releaseServerPorts(q: Queryable, serverId: string): Promise<number> {
  const had = await select<{ id: string; auto_delete: number; security_group_id: string | null }>(
    q,
    "SELECT p.id, p.auto_delete, g.security_group_id FROM ports p LEFT JOIN port_security_groups g ON g.port_id = p.id WHERE p.device_id = ?",
    [serverId],
  );
  // Deleted ports leave their groups; freed ones stay members, with their addresses.
  const touched: NetworkTouch[] = [touch("server", serverId), ...had.map((p) => touch("port", p.id))];
  for (const p of had) if (p.auto_delete && p.security_group_id) touched.push(touch("members", p.security_group_id));
  await lowerFloors(q, "p.device_id = ? AND p.auto_delete = 1", [serverId]);
  await exec(q, "DELETE a FROM ip_allocations a JOIN ports p ON p.id = a.port_id WHERE p.device_id = ? AND p.auto_delete = 1", [serverId]);
  const deleted = await exec(q, "DELETE FROM ports WHERE device_id = ? AND auto_delete = 1", [serverId]);
  const freed = await exec(q, "UPDATE ports SET device_id = NULL, device_owner = '' WHERE device_id = ?", [serverId]);
  if (deleted.affectedRows + freed.affectedRows > 0) await noteNetworkChange(q, touched);
  return deleted.affectedRows + freed.affectedRows;
}

/** Replaces a port's name, security groups or port security. */
export async function updatePort(q: Queryable, id: string, patch: { name?: string; securityGroupIds?: readonly string[]; portSecurity?: boolean }): Promise<void> {
  // A new set of groups changes the members of the groups it had and of those it gets.
  const touched = await portTouches(q, id, { members: patch.securityGroupIds !== undefined });
  for (const g of patch.securityGroupIds ?? []) touched.push(touch("members", g));
  if (patch.name !== undefined) await exec(q, "UPDATE ports SET name = ? WHERE id = ?", [patch.name, id]);
  if (patch.portSecurity !== undefined) await exec(q, "UPDATE ports SET port_security = ? WHERE id = ?", [patch.portSecurity, id]);
  if (patch.securityGroupIds !== undefined) {
    await exec(q, "DELETE FROM port_security_groups WHERE port_id = ?", [id]);
    for (const g of patch.securityGroupIds) await exec(q, "INSERT INTO port_security_groups (port_id, security_group_id) VALUES (?, ?)", [id, g]);
  }
  await noteNetworkChange(q, touched);
}

/**
 * A host's DHCP port on a network (Neutron's DHCP port): made on first use,
 * with an address on each DHCP subnet. RESOURCE_EXHAUSTED when a subnet has
 * no address left for it.
 */
export async function ensureDhcpPort(q: Queryable, network: { id: string; projectId: string }, host: string): Promise<Port | null> {
  const dhcpSubnets = await select<{ id: string }>(q, "SELECT id FROM subnets WHERE network_id = ? AND enable_dhcp = 1 ORDER BY created_at, id", [network.id]);
  if (dhcpSubnets.length === 0) return null;
  const existing = await select<{ id: string }>(q, "SELECT id FROM ports WHERE network_id = ? AND dhcp_host = ?", [network.id, host]);
  if (existing[0]) {
    const port = (await getPort(q, existing[0].id))!;
    // A DHCP subnet added since: the port gets an address on it too.
    const missing = dhcpSubnets.filter((s) => !port.fixedIps.some((ip) => ip.subnetId === s.id));
    if (missing.length === 0) return port;
    const rows = await select<SubnetRow>(q, `SELECT id, cidr, gateway_ip, allocation_pools, enable_dhcp FROM subnets WHERE id IN (${missing.map(() => "?").join(",")})`, missing.map((s) => s.id));
    for (const s of rows) await allocate(q, port.id, s, null, "dhcp");
    await noteNetworkChange(q, [touch("port", port.id)]);
    return getPort(q, port.id);
  }
  try {
    return await createPort(q, {
      networkId: network.id,
      projectId: network.projectId,
      name: `dhcp ${host}`,
      fixedIps: dhcpSubnets.map((s) => ({ subnetId: s.id })),
      securityGroupIds: [],
      portSecurity: false,
      deviceOwner: DHCP_OWNER,
      dhcpHost: host,
    });
  } catch (err) {
    // Another transaction made it first.
    if (!isDuplicateKey(err)) throw err;
    const again = await select<{ id: string }>(q, "SELECT id FROM ports WHERE network_id = ? AND dhcp_host = ? LOCK IN SHARE MODE", [network.id, host]);
    if (!again[0]) throw err;
    return getPort(q, again[0].id);
  }
}

/** Records the port an attach_interface action plugs. */
export async function setActionPort(q: Queryable, actionId: number, portId: string): Promise<void> {
  await exec(q, "UPDATE instance_actions SET port_id = ? WHERE id = ?", [portId, actionId]);
}

/** The port an attach_interface action plugs; null if none was recorded. */
export async function actionPort(q: Queryable, actionId: number): Promise<string | null> {
  const rows = await select<{ port_id: string | null }>(q, "SELECT port_id FROM instance_actions WHERE id = ?", [actionId]);
  return rows[0]?.port_id ?? null;
}

/**
 * A port leaves its server: one made for it is deleted with its addresses;
 * one it was given is free again. False if it was not the server's.
 */
export async function releasePort(q: Queryable, portId: string, serverId: string): Promise<boolean> {
  const rows = await select<{ auto_delete: number }>(q, "SELECT auto_delete FROM ports WHERE id = ? AND device_id = ? FOR UPDATE", [portId, serverId]);
  if (!rows[0]) return false;
  if (rows[0].auto_delete) return deletePort(q, portId);
  await exec(q, "UPDATE ports SET device_id = NULL, device_owner = '' WHERE id = ?", [portId]);
  await noteNetworkChange(q, [touch("port", portId), touch("server", serverId)]);
  return true;
}

/** The next interface position of a server. */
export async function nextPosition(q: Queryable, serverId: string): Promise<number> {
  const rows = await select<{ p: number | null }>(q, "SELECT MAX(position) AS p FROM ports WHERE device_id = ?", [serverId]);
  return rows[0]?.p === null || rows[0]?.p === undefined ? 0 : Number(rows[0].p) + 1;
}

/** A host's DHCP port on a network, if it has one. */
export async function dhcpPortOf(q: Queryable, networkId: string, host: string): Promise<Port | null> {
  const rows = await select<{ id: string }>(q, "SELECT id FROM ports WHERE network_id = ? AND dhcp_host = ?", [networkId, host]);
  return rows[0] ? getPort(q, rows[0].id) : null;
}

/** Whether an address of a subnet is allocated (a hint: the allocation itself is what decides). */
export async function addressTaken(q: Queryable, subnetId: string, address: number): Promise<boolean> {
  return (await select(q, "SELECT 1 FROM ip_allocations WHERE subnet_id = ? AND address = ?", [subnetId, address])).length > 0;
}
