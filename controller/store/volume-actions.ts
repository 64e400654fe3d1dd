/**
 * Volume actions (each a volume's Operation) and the ops sent to volume
 * hosts for them (tables volume_actions, volume_ops; the op's message goes
 * through the shared outbox).
 */
import type { OperationError, OperationState } from "../domain/types.js";
import type { VolumeAction, VolumeOperation } from "../domain/volume.js";
import type { VolumeOpKind } from "../domain/volume-ops.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, select } from "./db.js";
import { insertOutbox } from "./ops.js";

const ACTION_COLUMNS = "id, volume_id, project_id, action, request_id, request_body, state, error, deadline, start_time, updated_at, finish_time, snapshot_id";

function rowToAction(r: Row): VolumeOperation {
  return {
    id: Number(r.id),
    volumeId: r.volume_id,
    projectId: r.project_id,
    action: r.action,
    requestId: r.request_id,
    request: json<Record<string, unknown> | null>(r.request_body, null),
    state: r.state,
    error: json<OperationError | null>(r.error, null),
    deadline: r.deadline,
    startTime: r.start_time,
    updatedAt: r.updated_at,
    finishTime: r.finish_time,
    snapshotId: r.snapshot_id,
  };
}

/** Records a volume action, RUNNING; returns its id. Throws ER_DUP_ENTRY on a repeated request id. */
export async function insertVolumeAction(
  q: Queryable,
  a: {
    volumeId: string;
    projectId: string;
    action: VolumeAction;
    requestId: string;
    request: Readonly<Record<string, unknown>>;
    deadline: Date | null;
    /** The snapshot a snapshot action is about. */
    snapshotId?: string;
  },
): Promise<number> {
  const res = await exec(
    q,
    "INSERT INTO volume_actions (volume_id, project_id, action, request_id, request_body, deadline, snapshot_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
    [a.volumeId, a.projectId, a.action, a.requestId, JSON.stringify(a.request), a.deadline, a.snapshotId ?? null],
  );
  return res.insertId;
}

/** A volume's action by request id. */
export async function getVolumeAction(q: Queryable, volumeId: string, requestId: string): Promise<VolumeOperation | null> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM volume_actions WHERE volume_id = ? AND request_id = ?`, [volumeId, requestId]);
  return rows[0] ? rowToAction(rows[0]) : null;
}

export async function getVolumeActionById(q: Queryable, id: number): Promise<VolumeOperation | null> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM volume_actions WHERE id = ?`, [id]);
  return rows[0] ? rowToAction(rows[0]) : null;
}

/** The action a request id started on a snapshot (of any volume). */
export async function findSnapshotAction(q: Queryable, snapshotId: string, requestId: string): Promise<VolumeOperation | null> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM volume_actions WHERE snapshot_id = ? AND request_id = ?`, [snapshotId, requestId]);
  return rows[0] ? rowToAction(rows[0]) : null;
}

/** A volume's running action (the newest not finished), if any; with `snapshots: false`, not a snapshot's. */
export async function runningVolumeAction(q: Queryable, volumeId: string, f: { snapshots?: boolean } = {}): Promise<VolumeOperation | null> {
  const rows = await select(
    q,
    `SELECT ${ACTION_COLUMNS} FROM volume_actions WHERE volume_id = ? AND finish_time IS NULL${f.snapshots === false ? " AND snapshot_id IS NULL" : ""} ORDER BY id DESC LIMIT 1`,
    [volumeId],
  );
  return rows[0] ? rowToAction(rows[0]) : null;
}

/** A volume's actions, newest first, before action id `beforeId`. */
export async function listVolumeActions(q: Queryable, f: { volumeId: string; state?: OperationState; beforeId?: number; limit: number }): Promise<VolumeOperation[]> {
  const where = ["volume_id = ?"];
  const params: unknown[] = [f.volumeId];
  if (f.state !== undefined) (where.push("state = ?"), params.push(f.state));
  if (f.beforeId !== undefined) (where.push("id < ?"), params.push(f.beforeId));
  params.push(f.limit);
  return (await select(q, `SELECT ${ACTION_COLUMNS} FROM volume_actions WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT ?`, params)).map(rowToAction);
}

/** Finishes a volume action: SUCCEEDED, or FAILED with `error`. */
export async function finishVolumeAction(q: Queryable, id: number, error: OperationError | null = null): Promise<void> {
  await exec(
    q,
    `UPDATE volume_actions SET state = ?, error = ?, finish_time = CURRENT_TIMESTAMP(3), updated_at = CURRENT_TIMESTAMP(3)
      WHERE id = ? AND finish_time IS NULL`,
    [error ? "FAILED" : "SUCCEEDED", error ? JSON.stringify(error) : null, id],
  );
}

// ---- ops to volume hosts ----

export interface VolumeOpRecord {
  readonly opId: string;
  readonly volumeId: string;
  readonly actionId: number;
  readonly host: string;
  readonly kind: VolumeOpKind;
  readonly state: "PENDING" | "DONE";
  /** The request of the op's action (for logs). */
  readonly requestId: string;
}

// The action's request id by a subquery: a locking read of the op does not lock the action's row.
const OP_COLUMNS = "op_id, volume_id, action_id, host, kind, state, (SELECT a.request_id FROM volume_actions a WHERE a.id = volume_ops.action_id) AS request_id";

function rowToOp(r: Row): VolumeOpRecord {
  return { opId: r.op_id, volumeId: r.volume_id, actionId: Number(r.action_id), host: r.host, kind: r.kind, state: r.state, requestId: r.request_id ?? "" };
}

/** Records a volume op and queues its message in the outbox, in the caller's transaction. */
export async function enqueueVolumeOp(
  q: Queryable,
  op: { opId: string; volumeId: string; actionId: number; host: string; kind: VolumeOpKind; traceParent: string | null },
  message: { subject: string; payload: Uint8Array },
): Promise<void> {
  await exec(q, "INSERT INTO volume_ops (op_id, volume_id, action_id, host, kind) VALUES (?, ?, ?, ?, ?)", [op.opId, op.volumeId, op.actionId, op.host, op.kind]);
  await insertOutbox(q, message.subject, op.opId, message.payload, op.traceParent);
}

export async function lockVolumeOp(q: Queryable, opId: string): Promise<VolumeOpRecord | null> {
  const rows = await select(q, `SELECT ${OP_COLUMNS} FROM volume_ops WHERE op_id = ? FOR UPDATE`, [opId]);
  return rows[0] ? rowToOp(rows[0]) : null;
}

/** A volume's ops not yet DONE, locked. */
export async function pendingVolumeOps(q: Queryable, volumeId: string): Promise<VolumeOpRecord[]> {
  return (await select(q, `SELECT ${OP_COLUMNS} FROM volume_ops WHERE volume_id = ? AND state = 'PENDING' ORDER BY created_at FOR UPDATE`, [volumeId])).map(rowToOp);
}

export async function finishVolumeOp(q: Queryable, opId: string, error: unknown | null): Promise<void> {
  await exec(q, "UPDATE volume_ops SET state = 'DONE', finished_at = CURRENT_TIMESTAMP(3), error = ? WHERE op_id = ?", [
    error === null ? null : JSON.stringify(error),
    opId,
  ]);
}
