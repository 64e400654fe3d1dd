import { randomUUID } from "node:crypto";
import type { ComputeNode, ResourceRequest } from "../domain/types.js";
import type { PoolConnection, Queryable, Row } from "./db.js";
import { exec, insertLater, noteChange, select, txLocal } from "./db.js";

const COLUMNS = `id, host, hypervisor_type, zone, version, vcpus, memory_mb, disk_gb, vcpus_used, memory_mb_used,
  disk_gb_used, running_vms, cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio, reserved_memory_mb,
  free_memory_mb_reported, free_disk_gb_reported, enabled, disabled_reason, last_seen_at, migration_uri,
  reserved_vcpus, reserved_disk_gb, architecture, failed_builds`;

function rowToNode(r: Row): ComputeNode {
  return {
    id: r.id,
    host: r.host,
    hypervisorType: r.hypervisor_type,
    zone: r.zone,
    version: r.version,
    vcpus: r.vcpus,
    memoryMb: Number(r.memory_mb),
    diskGb: Number(r.disk_gb),
    vcpusUsed: r.vcpus_used,
    memoryMbUsed: Number(r.memory_mb_used),
    diskGbUsed: Number(r.disk_gb_used),
    runningVms: r.running_vms,
    cpuAllocationRatio: r.cpu_allocation_ratio,
    ramAllocationRatio: r.ram_allocation_ratio,
    diskAllocationRatio: r.disk_allocation_ratio,
    reservedMemoryMb: Number(r.reserved_memory_mb),
    reservedVcpus: r.reserved_vcpus,
    reservedDiskGb: Number(r.reserved_disk_gb),
    architecture: r.architecture,
    failedBuilds: r.failed_builds,
    freeMemoryMbReported: Number(r.free_memory_mb_reported),
    freeDiskGbReported: Number(r.free_disk_gb_reported),
    enabled: r.enabled === 1,
    disabledReason: r.disabled_reason,
    lastSeenAt: r.last_seen_at,
    migrationUri: r.migration_uri,
  };
}

export async function listNodes(q: Queryable, opts: { host?: string } = {}): Promise<ComputeNode[]> {
  const rows = opts.host
    ? await select(q, `SELECT ${COLUMNS} FROM compute_nodes WHERE host = ?`, [opts.host])
    : await select(q, `SELECT ${COLUMNS} FROM compute_nodes ORDER BY host`);
  return rows.map(rowToNode);
}

/** Every compute host's name. */
export async function listHostNames(q: Queryable): Promise<string[]> {
  return (await select<{ host: string }>(q, "SELECT host FROM compute_nodes")).map((r) => r.host);
}

export async function getNodeByHost(q: Queryable, host: string): Promise<ComputeNode | null> {
  return (await listNodes(q, { host }))[0] ?? null;
}

/** Registers a host on its agent's hello, or refreshes what the agent says of itself. */
export async function upsertNode(
  q: Queryable,
  n: {
    host: string;
    hypervisorType: string;
    zone: string;
    version: string;
    vcpus: number;
    memoryMb: number;
    diskGb: number;
    cpuAllocationRatio: number;
    ramAllocationRatio: number;
    diskAllocationRatio: number;
    reservedMemoryMb: number;
    reservedVcpus: number;
    reservedDiskGb: number;
    architecture: string;
    migrationUri: string;
  },
): Promise<ComputeNode> {
  await exec(
    q,
    `INSERT INTO compute_nodes (id, host, hypervisor_type, zone, version, vcpus, memory_mb, disk_gb,
       cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio, reserved_memory_mb, migration_uri,
       reserved_vcpus, reserved_disk_gb, architecture, last_seen_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP(3))
     ON DUPLICATE KEY UPDATE hypervisor_type = VALUES(hypervisor_type), zone = VALUES(zone), version = VALUES(version),
       migration_uri = VALUES(migration_uri), architecture = VALUES(architecture),
       cpu_allocation_ratio = VALUES(cpu_allocation_ratio), ram_allocation_ratio = VALUES(ram_allocation_ratio),
       disk_allocation_ratio = VALUES(disk_allocation_ratio), reserved_memory_mb = VALUES(reserved_memory_mb),
       reserved_vcpus = VALUES(reserved_vcpus), reserved_disk_gb = VALUES(reserved_disk_gb),
       vcpus = VALUES(vcpus), memory_mb = VALUES(memory_mb), disk_gb = VALUES(disk_gb),
       last_seen_at = CURRENT_TIMESTAMP(3), generation = generation + 1`,
    [
      randomUUID(),
      n.host,
      n.hypervisorType,
      n.zone,
      n.version,
      n.vcpus,
      n.memoryMb,
      n.diskGb,
      n.cpuAllocationRatio,
      n.ramAllocationRatio,
      n.diskAllocationRatio,
      n.reservedMemoryMb,
      n.migrationUri,
      n.reservedVcpus,
      n.reservedDiskGb,
      n.architecture,
    ],
  );
  const node = await getNodeByHost(q, n.host);
  if (!node) throw new Error(`compute node ${n.host} vanished`);
  // A host (re)joined: the view changes, and waiting servers may fit now.
  noteChange(q, "hosts");
  noteChange(q, "placements");
  return node;
}

/**
 * Locks the rows of those of `hosts` no other transaction holds just now
 * (SKIP LOCKED: it never waits) and returns their names.
 */
export async function lockNodesNotLocked(conn: PoolConnection, hosts: readonly string[]): Promise<Set<string>> {
  if (!hosts.length) return new Set();
  const rows = await select<{ host: string }>(conn, "SELECT host FROM compute_nodes WHERE host IN (?) ORDER BY host FOR UPDATE SKIP LOCKED", [hosts]);
  return new Set(rows.map((r) => r.host));
}

/**
 * Hosts' reports: each host's heartbeat (last_seen_at), capacity and free
 * resources, in one statement (rows updated in host order; see
 * lockNodesNotLocked for writing many without waiting on any).
 */
export async function recordReports(
  q: Queryable,
  reports: readonly { host: string; vcpus: number; memoryMb: number; diskGb: number; freeMemoryMb: number; freeDiskGb: number }[],
): Promise<void> {
  if (!reports.length) return;
  const column = (key: "vcpus" | "memoryMb" | "diskGb" | "freeMemoryMb" | "freeDiskGb") => ({
    sql: `CASE host ${reports.map(() => "WHEN ? THEN ?").join(" ")} END`,
    params: reports.flatMap((r) => [r.host, r[key]]),
  });
  const cols = [
    ["vcpus", column("vcpus")],
    ["memory_mb", column("memoryMb")],
    ["disk_gb", column("diskGb")],
    ["free_memory_mb_reported", column("freeMemoryMb")],
    ["free_disk_gb_reported", column("freeDiskGb")],
  ] as const;
  await exec(
    q,
    `UPDATE compute_nodes SET last_seen_at = CURRENT_TIMESTAMP(3), ${cols.map(([name, c]) => `${name} = ${c.sql}`).join(", ")}
     WHERE host IN (?) ORDER BY host`,
    [...cols.flatMap(([, c]) => c.params), reports.map((r) => r.host)],
  );
}

export async function setNodeEnabled(q: Queryable, host: string, enabled: boolean, reason: string): Promise<boolean> {
  const res = await exec(q, "UPDATE compute_nodes SET enabled = ?, disabled_reason = ?, generation = generation + 1 WHERE host = ?", [
    enabled ? 1 : 0,
    enabled ? "" : reason,
    host,
  ]);
  noteChange(q, "hosts");
  return res.affectedRows === 1;
}

/**
 * Claims `req` on a node atomically: the conditional UPDATE succeeds only if
 * the node is enabled, up (seen since `upSince`) and the request fits under
 * its ratio-adjusted capacity, so concurrent schedulers never double-book.
 * Records the allocation in the same transaction (the caller's).
 */
export async function claim(q: Queryable, nodeId: string, instanceUuid: string, req: ResourceRequest, upSince: Date): Promise<boolean> {
  const res = await exec(
    q,
    `UPDATE compute_nodes SET vcpus_used = vcpus_used + ?, memory_mb_used = memory_mb_used + ?,
       disk_gb_used = disk_gb_used + ?, running_vms = running_vms + 1, generation = generation + 1
     WHERE id = ? AND enabled = 1 AND last_seen_at >= ?
       AND vcpus_used + ? <= (vcpus - reserved_vcpus) * cpu_allocation_ratio
       AND memory_mb_used + ? <= (memory_mb - reserved_memory_mb) * ram_allocation_ratio
       AND disk_gb_used + ? <= (disk_gb - reserved_disk_gb) * disk_allocation_ratio`,
    [req.vcpus, req.memoryMb, req.diskGb, nodeId, upSince, req.vcpus, req.memoryMb, req.diskGb],
  );
  if (res.affectedRows !== 1) return false;
  // With the transaction's other claims, before it commits (or before it reads allocations).
  await insertLater(q, "allocations", ["instance_uuid", "node_id", "vcpus", "memory_mb", "disk_gb"], [instanceUuid, nodeId, req.vcpus, req.memoryMb, req.diskGb]);
  return true;
}

/**
 * Releases every allocation a consumer (an instance, or a migration holding
 * its source's capacity) holds — only those on `nodeId` when given — exactly
 * once: the allocation rows are locked and deleted, and the nodes' usage
 * drops by what they held. Returns how many were released.
 */
export async function releaseAllocations(q: Queryable, consumer: string, nodeId?: string): Promise<number> {
  const allocs = await select(
    q,
    `SELECT node_id, vcpus, memory_mb, disk_gb FROM allocations WHERE instance_uuid = ?${nodeId ? " AND node_id = ?" : ""} FOR UPDATE`,
    nodeId ? [consumer, nodeId] : [consumer],
  );
  for (const a of allocs) {
    await exec(
      q,
      `UPDATE compute_nodes SET vcpus_used = vcpus_used - ?, memory_mb_used = memory_mb_used - ?,
         disk_gb_used = disk_gb_used - ?, running_vms = running_vms - 1, generation = generation + 1 WHERE id = ?`,
      [a.vcpus, a.memory_mb, a.disk_gb, a.node_id],
    );
  }
  if (allocs.length) {
    await exec(q, `DELETE FROM allocations WHERE instance_uuid = ?${nodeId ? " AND node_id = ?" : ""}`, nodeId ? [consumer, nodeId] : [consumer]);
    noteChange(q, "hosts");
  }
  return allocs.length;
}

/**
 * Hands a consumer's allocations over to another consumer (a resize moves
 * the source's capacity to the migration, a revert moves it back) without
 * changing any host's usage.
 */
export async function moveAllocations(q: Queryable, from: string, to: string): Promise<number> {
  const res = await exec(q, "UPDATE allocations SET instance_uuid = ? WHERE instance_uuid = ?", [to, from]);
  return res.affectedRows;
}

const BUILDS_RESET = Symbol("hosts whose failed builds this transaction has seen at 0 or reset");

/** The hosts whose failed-build count this transaction has seen at 0 or reset (undefined outside one). */
function buildsReset(q: Queryable): Set<string> | undefined {
  return txLocal(q, BUILDS_RESET, () => new Set<string>(), { cache: true });
}

/** Counts a failed build on `host` (the build failure weigher prefers other hosts until one succeeds there). */
export async function recordBuildFailure(q: Queryable, host: string): Promise<void> {
  buildsReset(q)?.delete(host);
  await exec(q, "UPDATE compute_nodes SET failed_builds = failed_builds + 1 WHERE host = ?", [host]);
}

/**
 * A build succeeded on `host`: its failure count starts again. Read first
 * without a lock: the host's row is often locked by a placement claiming it,
 * and an UPDATE would wait for that placement to commit even to change
 * nothing. Once per host in a transaction (a batch of results has many
 * builds on each host).
 */
export async function recordBuildSuccess(q: Queryable, host: string): Promise<void> {
  const reset = buildsReset(q);
  if (reset?.has(host)) return;
  const [row] = await select<{ failed_builds: number }>(q, "SELECT failed_builds FROM compute_nodes WHERE host = ?", [host]);
  if (row && row.failed_builds !== 0) await exec(q, "UPDATE compute_nodes SET failed_builds = 0 WHERE host = ? AND failed_builds <> 0", [host]);
  reset?.add(host);
}
