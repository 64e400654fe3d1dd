/**
 * The server change log that WatchServers streams.
 *
 * Every instance update queues the instance's new state on its transaction;
 * just before the transaction commits, the queued states get their indexes
 * from the one-row `change_counter` (`n = LAST_INSERT_ID(n + k)`). That row
 * lock is held from then until commit, so a transaction that takes index i
 * commits before any transaction can take index i+1, and a rolled-back one
 * gives its indexes back. Indexes therefore become visible strictly in
 * order and without gaps: a reader that has seen index i has seen every
 * index below it, and resuming after i misses nothing. The lock is taken
 * last, after every other row lock of the transaction, so it adds no
 * deadlocks and is held only for the commit.
 */
import type { Instance } from "../domain/types.js";
import type { PoolConnection, Queryable } from "./db.js";
import { beforeCommit, exec, json, noteChange, select } from "./db.js";

const pending = new WeakMap<object, Map<string, Instance>>();

/** Queues `inst`'s current state for the change log of `conn`'s transaction. */
export function recordChange(conn: Queryable, inst: Instance): void {
  let byUuid = pending.get(conn);
  if (!byUuid) {
    byUuid = new Map();
    pending.set(conn, byUuid);
    beforeCommit(conn, "server_changes", flush);
    noteChange(conn, "servers");
  }
  // Only the state at commit is ever visible; an earlier update of the same
  // instance in this transaction is superseded.
  byUuid.delete(inst.uuid);
  byUuid.set(inst.uuid, inst);
}

async function flush(conn: PoolConnection): Promise<void> {
  const byUuid = pending.get(conn);
  pending.delete(conn);
  if (!byUuid || byUuid.size === 0) return;
  const k = byUuid.size;
  // LAST_INSERT_ID(expr) in an UPDATE comes back in the OK packet's insert id: no SELECT needed.
  const res = await exec(conn, "UPDATE change_counter SET n = LAST_INSERT_ID(n + ?) WHERE id = 1", [k]);
  const last = Number(res.insertId);
  if (res.affectedRows !== 1 || !(last >= k)) throw new Error(`the change counter gave no index (insert id ${res.insertId})`);
  let index = last - k;
  const rows = [...byUuid.values()].map((inst) => [++index, inst.uuid, inst.projectId, JSON.stringify(inst)]);
  await exec(conn, "INSERT INTO server_changes (id, instance_uuid, project_id, snapshot) VALUES ?", [rows]);
}

export interface ChangeRecord {
  readonly index: number;
  readonly time: Date;
  readonly instance: Instance;
}

function reviveInstance(raw: Record<string, unknown>): Instance {
  const d = (v: unknown) => (v === null || v === undefined ? null : new Date(v as string));
  return {
    ...(raw as unknown as Instance),
    createdAt: d(raw.createdAt)!,
    updatedAt: d(raw.updatedAt)!,
    launchedAt: d(raw.launchedAt),
    deletedAt: d(raw.deletedAt),
    taskDeadline: d(raw.taskDeadline),
  };
}

/** Reads the change log after `afterIndex`, oldest first (all projects; callers filter). */
export async function listChanges(q: Queryable, f: { afterIndex: number; limit: number }): Promise<ChangeRecord[]> {
  const rows = await select(q, "SELECT id, created_at, snapshot FROM server_changes WHERE id > ? ORDER BY id LIMIT ?", [f.afterIndex, f.limit]);
  return rows.map((r) => ({ index: Number(r.id), time: r.created_at, instance: reviveInstance(json(r.snapshot, {})) }));
}

/** The highest index committed so far. */
export async function lastChangeIndex(q: Queryable): Promise<number> {
  const rows = await select<{ n: number }>(q, "SELECT n FROM change_counter WHERE id = 1");
  return Number(rows[0]?.n ?? 0);
}
