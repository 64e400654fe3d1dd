/**
 * Instance actions (Nova's os-instance-actions) and their events. An action
 * is also the server's Operation: its state, progress, error and deadline
 * live on the action row.
 */
import type { ActionEvent, InstanceAction, OperationError, OperationState } from "../domain/types.js";
import type { Queryable, Row } from "./db.js";
import mysql from "mysql2/promise";
import { exec, insertLater, json, select } from "./db.js";

/** What an action is recorded with. */
export interface NewAction {
  readonly instanceUuid: string;
  readonly requestId: string;
  readonly projectId: string;
  readonly action: string;
  readonly state?: OperationState;
  readonly deadline?: Date | null;
  /** What the action was asked with (its request's own fields), to tell a repeat from another request. */
  readonly request?: Readonly<Record<string, unknown>>;
  /** The trace the request is part of (W3C traceparent), for work picked up later (its placement). */
  readonly traceParent?: string | null;
}

/** Records an action; returns its id. Throws ER_DUP_ENTRY on a repeated request id. */
export async function insertAction(q: Queryable, a: NewAction): Promise<number> {
  return (await createAction(q, a)).id;
}

/** Records an action; returns it as stored, without reading it back (it has no events yet). Throws ER_DUP_ENTRY on a repeated request id. */
export async function createAction(q: Queryable, a: NewAction): Promise<InstanceAction> {
  const now = new Date();
  const state = a.state ?? "RUNNING";
  const res = await exec(
    q,
    `INSERT INTO instance_actions (instance_uuid, request_id, project_id, action, state, deadline, request_body, trace_parent, start_time, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [a.instanceUuid, a.requestId, a.projectId, a.action, state, a.deadline ?? null, a.request ? JSON.stringify(a.request) : null, a.traceParent ?? null, now, now],
  );
  // The columns' defaults, as the database would give them back.
  return {
    id: Number(res.insertId),
    instanceUuid: a.instanceUuid,
    requestId: a.requestId,
    projectId: a.projectId,
    action: a.action,
    startTime: now,
    finishTime: null,
    message: "",
    state,
    progress: 0,
    progressMessage: "",
    error: null,
    cancellable: false,
    updatedAt: now,
    deadline: a.deadline ?? null,
    imageId: null,
    events: [],
  };
}

export async function findAction(
  q: Queryable,
  instanceUuid: string,
  requestId: string,
): Promise<{ id: number; action: string; state: OperationState; request: Readonly<Record<string, unknown>> | null } | null> {
  const rows = await select(q, "SELECT id, action, state, request_body FROM instance_actions WHERE instance_uuid = ? AND request_id = ?", [
    instanceUuid,
    requestId,
  ]);
  const r = rows[0];
  return r ? { id: Number(r.id), action: r.action, state: r.state, request: json<Record<string, unknown> | null>(r.request_body, null) } : null;
}

/** An action not yet finished: its id, request and trace. */
export interface RunningAction {
  readonly id: number;
  readonly requestId: string;
  readonly traceParent: string | null;
}

/** The instance's running action (the newest one not finished), if any. */
export async function runningAction(q: Queryable, instanceUuid: string): Promise<RunningAction | null> {
  return (await runningActions(q, [instanceUuid])).get(instanceUuid) ?? null;
}

/** {@link runningAction} of each of `instanceUuids`, in one read; a server without one is absent. */
export async function runningActions(q: Queryable, instanceUuids: readonly string[]): Promise<Map<string, RunningAction>> {
  const out = new Map<string, RunningAction>();
  if (instanceUuids.length === 0) return out;
  // No ORDER BY: MariaDB would walk the primary key through the whole table for it rather than use the index on instance_uuid.
  const rows = await select(q, "SELECT instance_uuid, id, request_id, trace_parent FROM instance_actions WHERE instance_uuid IN (?) AND finish_time IS NULL", [
    instanceUuids,
  ]);
  for (const r of rows) {
    const id = Number(r.id);
    if ((out.get(r.instance_uuid)?.id ?? -1) < id) out.set(r.instance_uuid, { id, requestId: r.request_id, traceParent: r.trace_parent ?? null });
  }
  return out;
}

/** Marks an action RUNNING (a host started on it) with its deadline. */
export async function markActionRunning(q: Queryable, actionId: number, deadline: Date | null, cancellable = false): Promise<void> {
  await exec(
    q,
    `UPDATE instance_actions SET state = 'RUNNING', deadline = ?, cancellable = ?, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = ? AND finish_time IS NULL`,
    [deadline, cancellable ? 1 : 0, actionId],
  );
}

/** Moves an action's deadline and cancellability as it goes from step to step. */
export async function setActionStep(q: Queryable, actionId: number, s: { deadline?: Date | null; cancellable?: boolean; message?: string }): Promise<void> {
  const sets = ["updated_at = CURRENT_TIMESTAMP(3)"];
  const params: unknown[] = [];
  if (s.deadline !== undefined) (sets.push("deadline = ?"), params.push(s.deadline));
  if (s.cancellable !== undefined) (sets.push("cancellable = ?"), params.push(s.cancellable ? 1 : 0));
  if (s.message !== undefined) (sets.push("progress_message = ?"), params.push(s.message.slice(0, 255)));
  params.push(actionId);
  await exec(q, `UPDATE instance_actions SET ${sets.join(", ")} WHERE id = ? AND finish_time IS NULL`, params);
}

/** Records the image an action made (a snapshot), so a replayed request returns it. */
export async function setActionImage(q: Queryable, actionId: number, imageId: string): Promise<void> {
  await exec(q, "UPDATE instance_actions SET image_id = ? WHERE id = ?", [imageId, actionId]);
}

/** Records progress reported by a host. */
export async function setActionProgress(q: Queryable, actionId: number, percent: number, message: string): Promise<void> {
  await exec(
    q,
    `UPDATE instance_actions SET progress = ?, progress_message = ?, updated_at = CURRENT_TIMESTAMP(3)
     WHERE id = ? AND finish_time IS NULL`,
    [Math.max(0, Math.min(100, Math.round(percent))), message.slice(0, 255), actionId],
  );
}

/**
 * Finishes an action: SUCCEEDED without `failure`, else FAILED (or
 * CANCELLED) with the error. The message column keeps Nova's "Error".
 */
export async function finishAction(
  q: Queryable,
  actionId: number,
  failure?: { state?: "FAILED" | "CANCELLED"; error: OperationError },
): Promise<void> {
  const state: OperationState = failure ? (failure.state ?? "FAILED") : "SUCCEEDED";
  await exec(
    q,
    `UPDATE instance_actions SET finish_time = CURRENT_TIMESTAMP(3), updated_at = CURRENT_TIMESTAMP(3), state = ?, message = ?,
       error = ?, cancellable = 0, progress = IF(? = 'SUCCEEDED', 100, progress)
     WHERE id = ? AND finish_time IS NULL`,
    [state, failure ? "Error" : "", failure ? JSON.stringify(failure.error) : null, state, actionId],
  );
}

/** The columns of an event as it is first written (one list, so a transaction's events are written together, in order; it starts when written). */
const EVENT_COLUMNS = ["action_id", "event", "host", "op_id", "finish_time", "result", "fault", "details"];
/** The database's time (events, like every other time the database keeps, are on its clock). */
const NOW = mysql.raw("CURRENT_TIMESTAMP(3)");

/** Records the start of an op's event (finished by its result). Written with the transaction's other events, before it commits. */
export async function startEvent(q: Queryable, e: { actionId: number; event: string; host?: string; opId?: string }): Promise<void> {
  await insertLater(q, "instance_action_events", EVENT_COLUMNS, [e.actionId, e.event, e.host ?? "", e.opId ?? null, null, null, null, null]);
}

/** Records an event that starts and finishes at once (such as a scheduling decision). */
export async function instantEvent(
  q: Queryable,
  e: { actionId: number; event: string; host?: string; result: "Success" | "Error"; fault?: string; details?: string },
): Promise<void> {
  await insertLater(q, "instance_action_events", EVENT_COLUMNS, [e.actionId, e.event, e.host ?? "", null, NOW, e.result, e.fault ?? null, e.details ?? null]);
}

const ACTION_COLUMNS = `id, instance_uuid, request_id, project_id, action, start_time, finish_time, message, state, progress,
  progress_message, error, cancellable, updated_at, deadline, image_id`;

function rowToAction(a: Row, events: readonly ActionEvent[]): InstanceAction {
  return {
    id: Number(a.id),
    instanceUuid: a.instance_uuid,
    requestId: a.request_id,
    projectId: a.project_id,
    action: a.action,
    startTime: a.start_time,
    finishTime: a.finish_time,
    message: a.message,
    state: a.state,
    progress: a.progress,
    progressMessage: a.progress_message,
    error: json<OperationError | null>(a.error, null),
    cancellable: a.cancellable === 1,
    updatedAt: a.updated_at,
    deadline: a.deadline,
    imageId: a.image_id,
    events,
  };
}

async function withEvents(q: Queryable, actions: Row[]): Promise<InstanceAction[]> {
  if (actions.length === 0) return [];
  const events = await select(
    q,
    `SELECT action_id, event, host, start_time, finish_time, result, fault, details FROM instance_action_events
     WHERE action_id IN (?) ORDER BY id`,
    [actions.map((a) => a.id)],
  );
  const byAction = new Map<number, ActionEvent[]>();
  for (const e of events) {
    const list = byAction.get(Number(e.action_id)) ?? [];
    list.push({
      event: e.event,
      host: e.host,
      startTime: e.start_time,
      finishTime: e.finish_time,
      result: e.result,
      fault: e.fault,
      details: e.details,
    });
    byAction.set(Number(e.action_id), list);
  }
  return actions.map((a) => rowToAction(a, byAction.get(Number(a.id)) ?? []));
}

/** Lists a server's actions (newest first) with their events (oldest first). */
export async function listActions(q: Queryable, instanceUuid: string): Promise<InstanceAction[]> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM instance_actions WHERE instance_uuid = ? ORDER BY id DESC`, [instanceUuid]);
  return withEvents(q, rows);
}

/** One action by server and request id, with its events. */
export async function getAction(q: Queryable, instanceUuid: string, requestId: string): Promise<InstanceAction | null> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM instance_actions WHERE instance_uuid = ? AND request_id = ?`, [
    instanceUuid,
    requestId,
  ]);
  return (await withEvents(q, rows))[0] ?? null;
}

export async function getActionById(q: Queryable, id: number): Promise<InstanceAction | null> {
  const rows = await select(q, `SELECT ${ACTION_COLUMNS} FROM instance_actions WHERE id = ?`, [id]);
  return (await withEvents(q, rows))[0] ?? null;
}

/** Lists actions (without events), newest first. */
export async function listOperations(
  q: Queryable,
  f: { projectId?: string; instanceUuid?: string; state?: OperationState; beforeId?: number; limit: number },
): Promise<InstanceAction[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.projectId !== undefined) (where.push("project_id = ?"), params.push(f.projectId));
  if (f.instanceUuid !== undefined) (where.push("instance_uuid = ?"), params.push(f.instanceUuid));
  if (f.state !== undefined) (where.push("state = ?"), params.push(f.state));
  if (f.beforeId !== undefined) (where.push("id < ?"), params.push(f.beforeId));
  params.push(f.limit);
  const rows = await select(
    q,
    `SELECT ${ACTION_COLUMNS} FROM instance_actions ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT ?`,
    params,
  );
  return rows.map((r) => rowToAction(r, []));
}

/** Whether CancelOperation asked to stop this action. */
export async function cancelRequested(q: Queryable, actionId: number): Promise<boolean> {
  const rows = await select(q, "SELECT 1 FROM instance_action_events WHERE action_id = ? AND event = 'cancel_requested' LIMIT 1", [actionId]);
  return rows.length > 0;
}
