/**
 * The server change log that WatchServers streams.
 *
 * Every instance update queues the instance's new state on its transaction;
 * the transaction ends with one call of the `commit_server_changes`
 * procedure (store/migrations.ts ROUTINES), which gives the queued states their indexes from the one-row
 * `change_counter` (`n = LAST_INSERT_ID(n + k)`), writes them and commits.
 * The counter's row lock is held from then until the commit, so a
 * transaction that takes index i commits before any transaction can take
 * index i+1, and a rolled-back one gives its indexes back. Indexes
 * therefore become visible strictly in order and without gaps: a reader
 * that has seen index i has seen every index below it, and resuming after i
 * misses nothing. The lock is taken last, after every other row lock of the
 * transaction, so it adds no deadlocks; and it is held only inside the
 * database, for the insert and the commit, never across a round trip to the
 * controller: every transaction that changes a server passes this one lock,
 * so how long it is held bounds how many such transactions the whole cloud
 * commits per second.
 */
import type { Instance } from "../domain/types.js";
import type { PoolConnection, Queryable } from "./db.js";
import { commitWith, inSavepoint, json, noteChange, select, txLocal } from "./db.js";

const PENDING = Symbol("the server changes of a transaction");

/** The states a transaction has queued for the change log, by server (undefined outside a transaction). */
function pendingOf(conn: Queryable): Map<string, Instance> | undefined {
  return txLocal(conn, PENDING, () => new Map<string, Instance>());
}

/** Queues `inst`'s current state for the change log of `conn`'s transaction. */
export function recordChange(conn: Queryable, inst: Instance): void {
  const byUuid = pendingOf(conn);
  if (!byUuid) throw new Error("a server change is recorded inside a transaction (withTx)");
  // A rollback to the savepoint could not take it back out of the queue.
  if (inSavepoint(conn)) throw new Error(`a server change (${inst.uuid}) cannot be recorded inside a savepoint`);
  if (byUuid.size === 0) {
    commitWith(conn, "server_changes", commitChanges);
    noteChange(conn, "servers");
  }
  // Only the state at commit is ever visible; an earlier update of the same
  // instance in this transaction is superseded.
  byUuid.delete(inst.uuid);
  byUuid.set(inst.uuid, inst);
}

async function commitChanges(conn: PoolConnection): Promise<void> {
  const byUuid = pendingOf(conn);
  if (!byUuid?.size) return conn.commit();
  const changes = [...byUuid.values()].map((inst) => ({ u: inst.uuid, p: inst.projectId, s: Buffer.from(JSON.stringify(inst)).toString("base64") }));
  await conn.query("CALL commit_server_changes(?)", [JSON.stringify(changes)]);
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
