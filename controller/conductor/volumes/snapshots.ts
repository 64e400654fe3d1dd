/**
 * Volume snapshots: taken and deleted by the volume's host, each an action
 * of the volume (its operation), with the snapshot's own status and
 * deadline; the volume keeps its status meanwhile. A snapshot that fails
 * or times out is in ERROR with the fault, to be deleted.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Principal } from "../../domain/types.js";
import type { VolumeFault, VolumeSnapshot } from "../../domain/volume.js";
import type { VolumeOpKind } from "../../domain/volume-ops.js";
import { failedPrecondition, notFound } from "../../errors.js";
import type { PoolConnection } from "../../store/db.js";
import { afterCommit } from "../../store/db.js";
import { findSnapshotAction, finishVolumeAction, finishVolumeOp, getVolumeActionById, pendingVolumeOps } from "../../store/volume-actions.js";
import { deleteSnapshotRow, getSnapshot, insertSnapshot, lockOverdueSnapshots, snapshotBeingCopied, updateSnapshot } from "../../store/volume-snapshots.js";
import type { ConductorContext } from "../context.js";
import { faultOf, operationErrorOf, operationErrorOfFault } from "../flow.js";
import type { VolumeResultContext, VolumeResultRules } from "./flow.js";
import { dispatchVolumeOp, volumeAccepted, volumeAct, type VolumeAccepted } from "./frame.js";
import { checkQuota } from "../quota.js";

/** What a snapshot call returns: its volume's operation, and the snapshot. */
export interface SnapshotAccepted extends VolumeAccepted {
  readonly snapshot: VolumeSnapshot | null;
}

/** A snapshot the caller may see (its volume's project; admins any), optionally locked. */
export async function visibleSnapshot(q: ConductorContext["pool"] | PoolConnection, who: Principal, id: string, lock = false): Promise<VolumeSnapshot> {
  const s = await getSnapshot(q, id, { lock });
  if (!s || (who.role !== "admin" && s.projectId !== who.projectId)) throw notFound("volume_snapshot", id);
  return s;
}

export async function createSnapshot(
  ctx: ConductorContext,
  who: Principal,
  volumeId: string,
  requestId: string,
  o: { name: string; description: string },
): Promise<SnapshotAccepted> {
  const id = randomUUID();
  const accepted = await volumeAct(
    ctx,
    who,
    volumeId,
    requestId,
    "create_snapshot",
    { name: o.name, description: o.description },
    async (conn, v, actionId, deadline) => {
      await checkQuota(conn, v.projectId, { snapshots: 1, gigabytes: v.sizeGb });
      await insertSnapshot(conn, { id, volumeId: v.id, projectId: v.projectId, name: o.name, description: o.description, sizeGb: v.sizeGb, taskDeadline: deadline });
      await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "create_volume_snapshot", snapshotId: id }, deadline });
    },
    id,
  );
  // A repeated request: the snapshot its first call made.
  const snapshotId = accepted.operation.snapshotId ?? id;
  return { ...accepted, snapshot: await getSnapshot(ctx.pool, snapshotId) };
}

export async function deleteSnapshot(ctx: ConductorContext, who: Principal, id: string, requestId: string): Promise<SnapshotAccepted> {
  const s = await getSnapshot(ctx.pool, id);
  if (!s) {
    // A repeat after the snapshot went: its first call's operation.
    const prior = await findSnapshotAction(ctx.pool, id, requestId);
    if (!prior || (who.role !== "admin" && prior.projectId !== who.projectId)) throw notFound("volume_snapshot", id);
    return { ...(await volumeAccepted(ctx.pool, prior.volumeId, prior.id)), snapshot: null };
  }
  if (who.role !== "admin" && s.projectId !== who.projectId) throw notFound("volume_snapshot", id);
  const accepted = await volumeAct(
    ctx,
    who,
    s.volumeId,
    requestId,
    "delete_snapshot",
    { snapshot_id: id },
    async (conn, v, actionId, deadline) => {
      const locked = await getSnapshot(conn, id, { lock: true });
      if (!locked) throw notFound("volume_snapshot", id);
      if (locked.status !== "AVAILABLE" && locked.status !== "ERROR") {
        throw failedPrecondition(`cannot delete snapshot ${id} while it is ${locked.status}; allowed from: AVAILABLE, ERROR`, "WRONG_STATUS", { status: locked.status });
      }
      if (await snapshotBeingCopied(conn, id)) throw failedPrecondition(`snapshot ${id} is being copied into a new volume; delete it when that is made`, "SNAPSHOT_IN_USE");
      await updateSnapshot(conn, id, { status: "DELETING", taskDeadline: deadline });
      await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "delete_volume_snapshot", snapshotId: id }, deadline });
    },
    id,
  );
  return { ...accepted, snapshot: await getSnapshot(ctx.pool, id) };
}

/** The host failed a snapshot op: the snapshot is in ERROR with the fault, its action FAILED. */
async function snapshotFailed(r: VolumeResultContext): Promise<void> {
  await updateSnapshot(r.conn, r.snapshot!.id, { status: "ERROR", taskDeadline: null, fault: faultOf(r.error!, r.op) });
  await finishVolumeAction(r.conn, r.op.actionId, operationErrorOf(r.error!, r.op));
}

export const snapshotResults: VolumeResultRules<"create_volume_snapshot" | "delete_volume_snapshot"> = {
  create_volume_snapshot: {
    snapshot: "CREATING",
    apply: async (r) => {
      const s = r.snapshot!;
      if (r.error) return snapshotFailed(r);
      await updateSnapshot(r.conn, s.id, { status: "AVAILABLE", taskDeadline: null, fault: null });
      await finishVolumeAction(r.conn, r.op.actionId);
    },
  },
  delete_volume_snapshot: {
    snapshot: "DELETING",
    apply: async (r) => {
      const s = r.snapshot!;
      if (r.error) return snapshotFailed(r);
      await deleteSnapshotRow(r.conn, s.id);
      await finishVolumeAction(r.conn, r.op.actionId);
    },
  },
};

/** The ops that work on a snapshot (with its own status and deadline), not on the volume's status. */
export const SNAPSHOT_OP_KINDS: readonly VolumeOpKind[] = ["create_volume_snapshot", "delete_volume_snapshot"];

/** Snapshots ended per transaction. */
export const SNAPSHOT_REAP_BATCH = 50;

/** Ends every snapshot past its deadline (one batch): ERROR with a TASK_TIMED_OUT fault, its action FAILED. */
export async function reapSnapshots(conn: PoolConnection, ctx: ConductorContext, now: Date): Promise<number> {
  const overdue = await lockOverdueSnapshots(conn, now, SNAPSHOT_REAP_BATCH);
  for (const s of overdue) {
    const task = s.status === "DELETING" ? "DELETING" : "CREATING";
    const seconds = ctx.volumeTimeouts[task];
    const why = `snapshot ${task} did not finish within ${seconds} s`;
    const fault: VolumeFault = { code: "TASK_TIMED_OUT", message: `${why}; the snapshot is in ERROR: delete it`, details: { status: s.status, timeout_seconds: String(seconds) }, createdAt: new Date().toISOString() };
    const ops = (await pendingVolumeOps(conn, s.volumeId)).filter((op) => SNAPSHOT_OP_KINDS.includes(op.kind));
    for (const op of ops) {
      if ((await getVolumeActionById(conn, op.actionId))?.snapshotId !== s.id) continue;
      await finishVolumeOp(conn, op.opId, { code: "TASK_TIMED_OUT", message: why, retryable: false });
      await finishVolumeAction(conn, op.actionId, operationErrorOfFault(fault, status.DEADLINE_EXCEEDED));
    }
    afterCommit(conn, () => ctx.log.warn({ snapshot_id: s.id, volume_id: s.volumeId, status: s.status }, `snapshot timed out: ${fault.message}`));
    await updateSnapshot(conn, s.id, { status: "ERROR", taskDeadline: null, fault });
  }
  return overdue.length;
}
