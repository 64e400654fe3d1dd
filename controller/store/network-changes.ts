/**
 * The network's revision: a row per change to what hosts plug (a port made,
 * changed or gone, a security rule, a host's tunnel address). Inserts only,
 * so concurrent transactions never wait on each other for it; hosts' views
 * follow MAX(id) (conductor/network-sync.ts), and old rows are pruned.
 */
import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";

/** Records that what hosts plug changed (in the caller's transaction). */
export async function noteNetworkChange(q: Queryable): Promise<void> {
  await exec(q, "INSERT INTO network_changes () VALUES ()");
}

/** The current revision (0 before any change). */
export async function networkRevision(q: Queryable): Promise<number> {
  const rows = await select<{ r: number | null }>(q, "SELECT MAX(id) AS r FROM network_changes");
  return Number(rows[0]?.r ?? 0);
}

/** Removes the rows below `revision` (the latest stays: it is the revision). */
export async function pruneNetworkChanges(q: Queryable, revision: number): Promise<void> {
  await exec(q, "DELETE FROM network_changes WHERE id < ?", [revision]);
}

/** Sets a host's tunnel address; a change is a network change (its peers' flood lists). */
export async function setTunnelIp(q: Queryable, host: string, tunnelIp: string): Promise<void> {
  const r = await exec(q, "UPDATE compute_nodes SET tunnel_ip = ? WHERE host = ? AND tunnel_ip <> ?", [tunnelIp, host, tunnelIp]);
  if (r.affectedRows > 0) await noteNetworkChange(q);
}

/** The tunnel addresses of every host but `host`. */
export async function tunnelPeers(q: Queryable, host: string): Promise<string[]> {
  const rows = await select<{ tunnel_ip: string }>(q, "SELECT DISTINCT tunnel_ip FROM compute_nodes WHERE tunnel_ip <> '' AND host <> ? ORDER BY tunnel_ip", [host]);
  return rows.map((r) => r.tunnel_ip);
}
