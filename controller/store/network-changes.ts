/**
 * The network's change log: a row per thing a change to what hosts plug
 * touched (a port made, changed or gone, a server's ports, a group's rules
 * or members, a network's subnets, a host's tunnel address). Inserts only,
 * so concurrent transactions never wait on each other for it; controllers
 * read the rows past the last they read (conductor/network-sync.ts), work
 * out the hosts concerned, and old rows are pruned.
 */
import type { Queryable } from "./db.js";
import { exec, insertLater, select } from "./db.js";

/**
 * What a change touched, and so which hosts it concerns:
 * - `port`: a port made, changed, attached, released or gone (the host of its server; a DHCP port's host);
 * - `server`: a server's set of ports (its host);
 * - `rules`: a security group's rules (hosts with a port in the group);
 * - `members`: a group's ports or their addresses (hosts whose rules name the group as remote group);
 * - `network`: a network's subnets (hosts with a port on it);
 * - `tunnel`: a host's tunnel address (every host: its peers).
 * A row of another kind (or none, written before kinds) concerns every host.
 */
export type TouchKind = "port" | "server" | "rules" | "members" | "network" | "tunnel";

export interface NetworkTouch {
  readonly kind: TouchKind;
  readonly ref: string;
}

/** A row of the log. */
export interface NetworkChange {
  readonly id: number;
  readonly kind: string;
  readonly ref: string;
}

export const touch = (kind: TouchKind, ref: string): NetworkTouch => ({ kind, ref });

/**
 * Records what a change touched (in the caller's transaction), one row
 * each. The rows are written with the transaction's others (insertLater):
 * servers placed together note their moves in one statement.
 */
export async function noteNetworkChange(q: Queryable, touched: readonly NetworkTouch[]): Promise<void> {
  const rows = [...new Map(touched.map((t) => [`${t.kind} ${t.ref}`, t])).values()];
  // Nothing named: a row that concerns every host.
  if (rows.length === 0) return void (await exec(q, "INSERT INTO network_changes () VALUES ()"));
  for (const t of rows) await insertLater(q, "network_changes", ["kind", "ref"], [t.kind, t.ref]);
}

/** What a port touches: itself, its server, and the groups it is a member of when `members`. */
export async function portTouches(q: Queryable, portId: string, o: { members: boolean }): Promise<NetworkTouch[]> {
  const rows = await select<{ device_id: string | null; security_group_id: string | null }>(
    q,
    "SELECT p.device_id, g.security_group_id FROM ports p LEFT JOIN port_security_groups g ON g.port_id = p.id WHERE p.id = ?",
    [portId],
  );
  const out = [touch("port", portId)];
  if (rows[0]?.device_id) out.push(touch("server", rows[0].device_id));
  if (o.members) for (const r of rows) if (r.security_group_id) out.push(touch("members", r.security_group_id));
  return out;
}

/** The current revision: the highest row (0 before any change). */
export async function networkRevision(q: Queryable): Promise<number> {
  const rows = await select<{ r: number | null }>(q, "SELECT MAX(id) AS r FROM network_changes");
  return Number(rows[0]?.r ?? 0);
}

/** Which of the rows from `from` to `to` are there (at most `limit`). */
export async function networkChangeIds(q: Queryable, from: number, to: number, limit: number): Promise<number[]> {
  const rows = await select<{ id: number }>(q, "SELECT id FROM network_changes WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?", [from, to, limit]);
  return rows.map((r) => Number(r.id));
}

/**
 * The rows past `after` (at most `limit`, lowest first) and those of
 * `also` that are there now; with the lowest row of the log (null when empty).
 */
export async function networkChangesSince(
  q: Queryable,
  after: number,
  also: readonly number[],
  limit: number,
): Promise<{ changes: NetworkChange[]; oldest: number | null }> {
  const rows = await select<{ id: number; kind: string; ref: string }>(
    q,
    `(SELECT id, kind, ref FROM network_changes WHERE id > ? ORDER BY id LIMIT ?)${
      also.length ? ` UNION (SELECT id, kind, ref FROM network_changes WHERE id IN (${also.map(() => "?").join(",")}))` : ""
    } ORDER BY id`,
    [after, limit, ...also],
  );
  const [low] = await select<{ m: number | null }>(q, "SELECT MIN(id) AS m FROM network_changes");
  return { changes: rows.map((r) => ({ id: Number(r.id), kind: r.kind, ref: r.ref })), oldest: low?.m === null || low?.m === undefined ? null : Number(low.m) };
}

/** Removes rows older than `seconds` (the latest stays: it is the revision). */
export async function pruneNetworkChanges(q: Queryable, seconds: number): Promise<void> {
  const latest = await networkRevision(q);
  await exec(q, "DELETE FROM network_changes WHERE created_at < NOW(3) - INTERVAL ? SECOND AND id < ?", [seconds, latest]);
}

/** What changes touched, by kind, for {@link hostsConcerned}. */
export interface Touched {
  readonly ports: readonly string[];
  readonly servers: readonly string[];
  readonly rules: readonly string[];
  readonly members: readonly string[];
  readonly networks: readonly string[];
}

const CHUNK = 500;

/** The hosts the query selects, for each chunk of `ids` (the list its `IN (?)` takes). */
async function hostsOf(q: Queryable, sql: string, ids: readonly string[], out: Set<string>): Promise<void> {
  for (let i = 0; i < ids.length; i += CHUNK) {
    const rows = await select<{ host: string | null }>(q, sql, [ids.slice(i, i + CHUNK)]);
    for (const r of rows) if (r.host) out.add(r.host);
  }
}

/**
 * The hosts whose network, as the tables are now, holds what was touched:
 * the host of a port's server (or a DHCP port's host), of a server, of a
 * port in a group whose rules changed, of a port in a group with a rule
 * naming a changed group as remote group, of a port on a changed network.
 * (Hosts that held it before are the caller's to know: it sent them.)
 */
export async function hostsConcerned(q: Queryable, t: Touched): Promise<Set<string>> {
  const out = new Set<string>();
  const live = "JOIN instances i ON i.uuid = p.device_id AND i.deleted_at IS NULL";
  await hostsOf(q, `SELECT i.host FROM ports p ${live} WHERE p.id IN (?)`, t.ports, out);
  await hostsOf(q, "SELECT dhcp_host AS host FROM ports WHERE id IN (?) AND dhcp_host IS NOT NULL", t.ports, out);
  await hostsOf(q, "SELECT host FROM instances WHERE uuid IN (?) AND deleted_at IS NULL", t.servers, out);
  await hostsOf(q, `SELECT DISTINCT i.host FROM port_security_groups g JOIN ports p ON p.id = g.port_id ${live} WHERE g.security_group_id IN (?)`, t.rules, out);
  await hostsOf(
    q,
    `SELECT DISTINCT i.host FROM security_group_rules r JOIN port_security_groups g ON g.security_group_id = r.security_group_id
       JOIN ports p ON p.id = g.port_id ${live} WHERE r.remote_group_id IN (?)`,
    t.members,
    out,
  );
  await hostsOf(q, `SELECT DISTINCT i.host FROM ports p ${live} WHERE p.network_id IN (?)`, t.networks, out);
  return out;
}

/** Sets a host's tunnel address; a change is a network change (its peers' flood lists). */
export async function setTunnelIp(q: Queryable, host: string, tunnelIp: string): Promise<void> {
  const r = await exec(q, "UPDATE compute_nodes SET tunnel_ip = ? WHERE host = ? AND tunnel_ip <> ?", [tunnelIp, host, tunnelIp]);
  if (r.affectedRows > 0) await noteNetworkChange(q, [touch("tunnel", host)]);
}

/** The tunnel addresses of every host but `host`. */
export async function tunnelPeers(q: Queryable, host: string): Promise<string[]> {
  const rows = await select<{ tunnel_ip: string }>(q, "SELECT DISTINCT tunnel_ip FROM compute_nodes WHERE tunnel_ip <> '' AND host <> ? ORDER BY tunnel_ip", [host]);
  return rows.map((r) => r.tunnel_ip);
}
