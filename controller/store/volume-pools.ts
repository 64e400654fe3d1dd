/** The storage pools volume hosts report (table volume_pools). */
import type { ReportedPool, VolumePool } from "../domain/volume.js";
import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";
import { recountPoolClaims } from "./volumes.js";

/**
 * Records `pools` as `host`'s; with `replace` (a hello), the host's pools
 * not named are removed and the claims of those named are recounted from
 * the volumes placed there.
 */
export async function recordPools(q: Queryable, host: string, pools: readonly ReportedPool[], opts: { replace: boolean }): Promise<void> {
  if (opts.replace) {
    await exec(
      q,
      pools.length ? "DELETE FROM volume_pools WHERE host = ? AND name NOT IN (?)" : "DELETE FROM volume_pools WHERE host = ?",
      pools.length ? [host, pools.map((p) => p.name)] : [host],
    );
  }
  if (pools.length > 0) {
    await exec(
      q,
      `INSERT INTO volume_pools (host, name, backend, total_bytes, free_bytes, provisioned_bytes) VALUES ?
         ON DUPLICATE KEY UPDATE backend = VALUES(backend), total_bytes = VALUES(total_bytes), free_bytes = VALUES(free_bytes),
           provisioned_bytes = VALUES(provisioned_bytes), updated_at = CURRENT_TIMESTAMP(3)`,
      [pools.map((p) => [host, p.name, p.backend, p.totalBytes, p.freeBytes, p.provisionedBytes])],
    );
  }
  if (opts.replace) await recountPoolClaims(q, host);
}

/** Every pool (or one host's), by host and name, with its host's service. */
export async function listPools(q: Queryable, f: { host?: string } = {}): Promise<VolumePool[]> {
  const rows = await select<{
    host: string;
    name: string;
    backend: string;
    total_bytes: number | string;
    free_bytes: number | string;
    provisioned_bytes: number | string;
    allocated_bytes: number | string;
    updated_at: Date;
    zone: string | null;
    enabled: number | null;
    last_seen_at: Date | null;
  }>(
    q,
    `SELECT p.host, p.name, p.backend, p.total_bytes, p.free_bytes, p.provisioned_bytes, p.allocated_bytes, p.updated_at, n.zone, n.enabled, n.last_seen_at
       FROM volume_pools p LEFT JOIN compute_nodes n ON n.host = p.host
      ${f.host !== undefined ? "WHERE p.host = ?" : ""} ORDER BY p.host, p.name`,
    f.host !== undefined ? [f.host] : [],
  );
  return rows.map((r) => ({
    host: r.host,
    name: r.name,
    backend: r.backend,
    totalBytes: Number(r.total_bytes),
    freeBytes: Number(r.free_bytes),
    provisionedBytes: Number(r.provisioned_bytes),
    allocatedBytes: Number(r.allocated_bytes),
    updatedAt: r.updated_at,
    hostZone: r.zone ?? "",
    enabled: r.enabled === 1,
    lastSeenAt: r.last_seen_at,
  }));
}
