import type { Queryable, Row } from "./db.js";
import { exec, insertLater, noteChange, select } from "./db.js";

import type { OpKind } from "../domain/ops.js";

export interface OpRecord {
  readonly opId: string;
  readonly instanceUuid: string;
  readonly actionId: number;
  readonly host: string;
  readonly kind: OpKind;
  readonly attempt: number;
  readonly state: "PENDING" | "DONE";
  /** The request of the op's action (for logs). */
  readonly requestId: string;
  /** When it was queued. */
  readonly createdAt: Date;
  /** The trace it was sent in (W3C traceparent), null if none. */
  readonly traceParent: string | null;
}

/**
 * Records an op and queues its message in the outbox, in the caller's
 * transaction: the op is published only if the state change commits, and is
 * published even if this process dies right after the commit.
 */
export async function enqueueOp(
  q: Queryable,
  op: { opId: string; instanceUuid: string; actionId: number; host: string; kind: OpKind; attempt: number; traceParent: string | null },
  message: { subject: string; payload: Uint8Array },
): Promise<void> {
  await insertLater(
    q,
    "compute_ops",
    ["op_id", "instance_uuid", "action_id", "host", "kind", "attempt", "trace_parent"],
    [op.opId, op.instanceUuid, op.actionId, op.host, op.kind, op.attempt, op.traceParent],
  );
  await insertOutbox(q, message.subject, op.opId, message.payload, op.traceParent);
}

/**
 * Queues an op message in the outbox (with the trace it is sent in), in the
 * caller's transaction: written with its other messages before it commits,
 * in the order they were queued.
 */
export async function insertOutbox(q: Queryable, subject: string, opId: string, payload: Uint8Array, traceParent: string | null): Promise<void> {
  await insertLater(q, "outbox", ["subject", "msg_id", "payload", "trace_parent"], [subject, opId, Buffer.from(payload), traceParent]);
  noteChange(q, "outbox");
}

// The action's request id by a subquery: a locking read of the op does not lock the action's row.
const OP_COLUMNS = "op_id, instance_uuid, action_id, host, kind, attempt, state, created_at, trace_parent, (SELECT a.request_id FROM instance_actions a WHERE a.id = compute_ops.action_id) AS request_id";

function rowToOp(r: Row): OpRecord {
  return {
    opId: r.op_id,
    instanceUuid: r.instance_uuid,
    actionId: Number(r.action_id),
    host: r.host,
    kind: r.kind,
    attempt: r.attempt,
    state: r.state,
    requestId: r.request_id ?? "",
    createdAt: r.created_at,
    traceParent: r.trace_parent ?? null,
  };
}

export async function lockOp(q: Queryable, opId: string): Promise<OpRecord | null> {
  return (await lockOps(q, [opId])).get(opId) ?? null;
}

/** {@link lockOp} of each of `opIds`, in one read; an unknown op is absent. */
export async function lockOps(q: Queryable, opIds: readonly string[]): Promise<Map<string, OpRecord>> {
  if (opIds.length === 0) return new Map();
  const rows = await select(q, `SELECT ${OP_COLUMNS} FROM compute_ops WHERE op_id IN (?) FOR UPDATE`, [opIds]);
  return new Map(rows.map((r) => [r.op_id as string, rowToOp(r)]));
}

/** An op's record, unlocked. */
export async function getOp(q: Queryable, opId: string): Promise<OpRecord | null> {
  const rows = await select(q, `SELECT ${OP_COLUMNS} FROM compute_ops WHERE op_id = ?`, [opId]);
  return rows[0] ? rowToOp(rows[0]) : null;
}

/** Ops of an instance not yet DONE, locked (oldest first). */
export async function pendingOps(q: Queryable, instanceUuid: string): Promise<OpRecord[]> {
  const rows = await select(q, `SELECT ${OP_COLUMNS} FROM compute_ops WHERE instance_uuid = ? AND state = 'PENDING' ORDER BY created_at FOR UPDATE`, [
    instanceUuid,
  ]);
  return rows.map(rowToOp);
}

/** How an op's action event ends. */
export interface OpEventEnd {
  readonly result: "Success" | "Error";
  readonly fault?: string;
  readonly details?: string;
  /** When the host finished it (default: now). */
  readonly finishTime?: Date;
}

/** Marks an op DONE (with its error, if any) and finishes its action event, in one statement. */
export async function finishOp(q: Queryable, opId: string, error: unknown | null, event: OpEventEnd): Promise<void> {
  await exec(
    q,
    `UPDATE compute_ops o LEFT JOIN instance_action_events e ON e.op_id = o.op_id AND e.finish_time IS NULL
        SET o.state = 'DONE', o.finished_at = CURRENT_TIMESTAMP(3), o.error = ?,
            e.finish_time = COALESCE(?, CURRENT_TIMESTAMP(3)), e.result = ?, e.fault = ?, e.details = ?
      WHERE o.op_id = ?`,
    [error === null ? null : JSON.stringify(error), event.finishTime ?? null, event.result, event.fault ?? null, event.details ?? null, opId],
  );
}

export interface OutboxRow {
  readonly id: number;
  readonly subject: string;
  readonly msgId: string;
  readonly payload: Buffer;
  /** The trace the op was sent in (W3C traceparent), null if none. */
  readonly traceParent: string | null;
}

/** Locks up to `limit` outbox rows no other publisher holds, oldest first. */
export async function claimOutbox(q: Queryable, limit: number): Promise<OutboxRow[]> {
  const rows = await select(q, "SELECT id, subject, msg_id, payload, trace_parent FROM outbox ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED", [limit]);
  return rows.map((r) => ({ id: Number(r.id), subject: r.subject, msgId: r.msg_id, payload: r.payload, traceParent: r.trace_parent ?? null }));
}

export async function deleteOutbox(q: Queryable, ids: readonly number[]): Promise<void> {
  if (ids.length) await exec(q, "DELETE FROM outbox WHERE id IN (?)", [ids]);
}

/** Messages waiting in the outbox, and the age of the oldest in seconds (0 when empty). */
export async function outboxStats(q: Queryable): Promise<{ depth: number; oldestSeconds: number }> {
  const [r] = await select(q, "SELECT COUNT(*) AS n, TIMESTAMPDIFF(MICROSECOND, MIN(created_at), CURRENT_TIMESTAMP(3)) AS age_us FROM outbox");
  return { depth: Number(r?.n ?? 0), oldestSeconds: r?.age_us === null || r?.age_us === undefined ? 0 : Math.max(0, Number(r.age_us) / 1e6) };
}
