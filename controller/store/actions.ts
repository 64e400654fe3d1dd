import type { ActionEvent, InstanceAction } from "../domain/types.js";
import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";

/** Records an action; returns its id. Throws ER_DUP_ENTRY on a repeated request id. */
export async function insertAction(
  q: Queryable,
  a: { instanceUuid: string; requestId: string; projectId: string; action: string },
): Promise<number> {
  const res = await exec(q, "INSERT INTO instance_actions (instance_uuid, request_id, project_id, action) VALUES (?, ?, ?, ?)", [
    a.instanceUuid,
    a.requestId,
    a.projectId,
    a.action,
  ]);
  return res.insertId;
}

export async function findAction(q: Queryable, instanceUuid: string, requestId: string): Promise<{ id: number; action: string } | null> {
  const rows = await select<{ id: number; action: string }>(
    q,
    "SELECT id, action FROM instance_actions WHERE instance_uuid = ? AND request_id = ?",
    [instanceUuid, requestId],
  );
  return rows[0] ? { id: Number(rows[0].id), action: rows[0].action } : null;
}

/** Finishes an action; `message` is "Error" when it failed (as Nova writes it). */
export async function finishAction(q: Queryable, actionId: number, message = ""): Promise<void> {
  await exec(q, "UPDATE instance_actions SET finish_time = CURRENT_TIMESTAMP(3), message = ? WHERE id = ? AND finish_time IS NULL", [
    message,
    actionId,
  ]);
}

export async function startEvent(q: Queryable, e: { actionId: number; event: string; host?: string; opId?: string }): Promise<void> {
  await exec(q, "INSERT INTO instance_action_events (action_id, event, host, op_id) VALUES (?, ?, ?, ?)", [
    e.actionId,
    e.event,
    e.host ?? "",
    e.opId ?? null,
  ]);
}

/** Records an event that starts and finishes at once (such as a scheduling decision). */
export async function instantEvent(
  q: Queryable,
  e: { actionId: number; event: string; host?: string; result: "Success" | "Error"; fault?: string },
): Promise<void> {
  await exec(
    q,
    `INSERT INTO instance_action_events (action_id, event, host, finish_time, result, fault)
     VALUES (?, ?, ?, CURRENT_TIMESTAMP(3), ?, ?)`,
    [e.actionId, e.event, e.host ?? "", e.result, e.fault ?? null],
  );
}

/** Finishes the event of an op. */
export async function finishOpEvent(
  q: Queryable,
  opId: string,
  r: { result: "Success" | "Error"; fault?: string; startTime?: Date; finishTime?: Date },
): Promise<void> {
  await exec(
    q,
    `UPDATE instance_action_events SET finish_time = COALESCE(?, CURRENT_TIMESTAMP(3)), result = ?, fault = ?
     WHERE op_id = ? AND finish_time IS NULL`,
    [r.finishTime ?? null, r.result, r.fault ?? null, opId],
  );
}

/** Lists a server's actions (newest first) with their events (oldest first). */
export async function listActions(q: Queryable, instanceUuid: string): Promise<InstanceAction[]> {
  const actions = await select(
    q,
    `SELECT id, instance_uuid, request_id, project_id, action, start_time, finish_time, message
     FROM instance_actions WHERE instance_uuid = ? ORDER BY id DESC`,
    [instanceUuid],
  );
  if (actions.length === 0) return [];
  const events = await select(
    q,
    `SELECT action_id, event, host, start_time, finish_time, result, fault FROM instance_action_events
     WHERE action_id IN (?) ORDER BY id`,
    [actions.map((a) => a.id)],
  );
  const byAction = new Map<number, ActionEvent[]>();
  for (const e of events) {
    const list = byAction.get(Number(e.action_id)) ?? [];
    list.push({ event: e.event, host: e.host, startTime: e.start_time, finishTime: e.finish_time, result: e.result, fault: e.fault });
    byAction.set(Number(e.action_id), list);
  }
  return actions.map((a) => ({
    id: Number(a.id),
    instanceUuid: a.instance_uuid,
    requestId: a.request_id,
    projectId: a.project_id,
    action: a.action,
    startTime: a.start_time,
    finishTime: a.finish_time,
    message: a.message,
    events: byAction.get(Number(a.id)) ?? [],
  }));
}
