/**
 * The frame of every call on a volume: lock the row, replay a repeated
 * request id, check the status table, record the action (the volume's
 * Operation), run the flow's body, commit; and the steps flows take in it:
 * set a working status with its deadline, send an op to the volume's host.
 */
import { randomUUID } from "node:crypto";
import { encodeVolumeOp } from "../../bus/op-codec.js";
import { opsSubject } from "../../bus/subjects.js";
import type { Image, Principal } from "../../domain/types.js";
import type { Volume, VolumeAction, VolumeOperation, VolumeTask } from "../../domain/volume.js";
import { VOLUME_ACTION_RULES, volumeTarget } from "../../domain/volume.js";
import type { VolumeOpArgs } from "../../domain/volume-ops.js";
import { VOLUME_OP_TRAITS } from "../../domain/volume-ops.js";
import { failedPrecondition, notFound } from "../../errors.js";
import type { Pool, PoolConnection, Queryable } from "../../store/db.js";
import { DEADLOCK_RETRIES, afterCommit, withTx } from "../../store/db.js";
import { currentTraceParent } from "../../tracing.js";
import { enqueueVolumeOp, getVolumeAction, getVolumeActionById, insertVolumeAction } from "../../store/volume-actions.js";
import { getVolume } from "../../store/volumes.js";
import { checkSameAction, checkSameRequest, type RequestBody } from "../act.js";
import type { ConductorContext } from "../context.js";

/** What a mutating volume call returns: the volume after the call and its operation. */
export interface VolumeAccepted {
  readonly volume: Volume;
  readonly operation: VolumeOperation;
}

/** Loads a volume the caller may see: another project's, or a deleted one, is NOT_FOUND. */
export async function visibleVolume(q: Pool | PoolConnection, who: Principal, id: string, lock = false): Promise<Volume> {
  const v = await getVolume(q, id, { lock });
  if (!v || v.status === "DELETED" || (who.role !== "admin" && v.projectId !== who.projectId)) throw notFound("volume", id);
  return v;
}

/** The volume and the operation `actionId`, read after the commit. */
export async function volumeAccepted(pool: Pool, volumeId: string, actionId: number): Promise<VolumeAccepted> {
  const [volume, operation] = await Promise.all([getVolume(pool, volumeId), getVolumeActionById(pool, actionId)]);
  if (!volume || !operation) throw new Error(`volume ${volumeId} or its action ${actionId} is missing`);
  return { volume, operation };
}

/** A working status with its deadline from now. */
export function volumeTask(ctx: ConductorContext, task: VolumeTask, now = Date.now()): { status: VolumeTask; taskDeadline: Date } {
  return { status: task, taskDeadline: new Date(now + ctx.volumeTimeouts[task] * 1000) };
}

/**
 * Sends a volume op to the volume's host (recorded in volume_ops, its
 * message queued in the outbox), in the caller's transaction. It carries
 * the volume's deadline unless it is a cleanup op.
 */
export async function dispatchVolumeOp(
  q: Queryable,
  ctx: ConductorContext,
  o: { volume: Volume; actionId: number; requestId: string; args: VolumeOpArgs; deadline: Date | null; image?: Image | null },
): Promise<string> {
  const opId = randomUUID();
  const v = o.volume;
  const payload = encodeVolumeOp({
    opId,
    requestId: o.requestId,
    volume: volumeTarget(v),
    image: o.image ?? null,
    args: o.args,
    deadline: VOLUME_OP_TRAITS[o.args.kind].cleanup ? null : o.deadline,
  });
  await enqueueVolumeOp(q, { opId, volumeId: v.id, actionId: o.actionId, host: v.host, kind: o.args.kind, traceParent: currentTraceParent() }, { subject: opsSubject(ctx.subjectPrefix, v.host), payload });
  afterCommit(q, () => ctx.log.info({ op_id: opId, request_id: o.requestId, volume_id: v.id, host: v.host, op: o.args.kind }, "volume op queued for its host"));
  return opId;
}

/**
 * Runs `action` on volume `id` in the frame, asked with `request`; `body`
 * does the flow's part (it has the volume locked and the action recorded,
 * and sets the working status and sends the op).
 */
export async function volumeAct(
  ctx: ConductorContext,
  who: Principal,
  id: string,
  requestId: string,
  action: Exclude<VolumeAction, "create">,
  request: RequestBody,
  body: (conn: PoolConnection, v: Volume, actionId: number, deadline: Date) => Promise<void>,
  /** The snapshot a snapshot action is about (recorded on the action). */
  snapshotId?: string,
): Promise<VolumeAccepted> {
  const rule = VOLUME_ACTION_RULES[action];
  let actionId = 0;
  await withTx(
    ctx.pool,
    async (conn) => {
      // The volume's row first: a repeat racing its first call waits for it, then replays.
      const v = await getVolume(conn, id, { lock: true });
      if (!v || (who.role !== "admin" && v.projectId !== who.projectId)) throw notFound("volume", id);
      const prior = await getVolumeAction(conn, id, requestId);
      if (prior) {
        // A repeat is answered even after a delete made the volume invisible.
        checkSameAction(requestId, prior.action, action);
        checkSameRequest(requestId, action, prior.request, request);
        actionId = prior.id;
        return;
      }
      if (v.status === "DELETED") throw notFound("volume", id);
      if (!(rule.from as readonly string[]).includes(v.status)) {
        throw failedPrecondition(`cannot ${action} volume ${id} while it is ${v.status}; allowed from: ${rule.from.join(", ")}`, "WRONG_STATUS", {
          status: v.status,
        });
      }
      const { taskDeadline } = volumeTask(ctx, rule.timeout);
      actionId = await insertVolumeAction(conn, { volumeId: id, projectId: v.projectId, action, requestId, request, deadline: taskDeadline, snapshotId });
      await body(conn, v, actionId, taskDeadline);
    },
    { deadlockRetries: DEADLOCK_RETRIES },
  );
  return volumeAccepted(ctx.pool, id, actionId);
}
