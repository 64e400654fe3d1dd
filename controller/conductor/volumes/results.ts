/**
 * Volume op results and volume timeouts: the dispatchers from an op's kind
 * and a working status to the volume flows' rules, exactly once.
 */
import type { OpOutcome } from "../../domain/ops.js";
import type { Volume, VolumeFault, VolumeSnapshot, VolumeTask } from "../../domain/volume.js";
import { VOLUME_TASKS } from "../../domain/volume.js";
import type { ApiError } from "../../errors.js";
import { permissionDenied } from "../../errors.js";
import type { PoolConnection } from "../../store/db.js";
import { DEADLOCK_RETRIES, afterCommit, withTx } from "../../store/db.js";
import { finishVolumeOp, getVolumeActionById, lockVolumeOp, pendingVolumeOps, runningVolumeAction } from "../../store/volume-actions.js";
import { getSnapshot } from "../../store/volume-snapshots.js";
import { getVolume, lockOverdueVolumes, updateVolume } from "../../store/volumes.js";
import type { ConductorContext } from "../context.js";
import { VolumeResultContext, VolumeTimeoutContext } from "./flow.js";
import { reapSnapshots, SNAPSHOT_OP_KINDS } from "./snapshots.js";
import { VOLUME_RESULT_RULES, VOLUME_TIMEOUT_RULES } from "./index.js";

/**
 * Applies a volume op's result in the caller's transaction; false when
 * `outcome` is no volume op's. The op row is locked and marked DONE with the
 * volume's change, so a re-reported result changes nothing; a result that
 * comes when the volume is no longer in the status its op works in (timed
 * out, deleted) changes only the op's record. Only the op's host may report
 * it: from another, the refusal is returned (nothing written), for the
 * caller to give that host once its transaction ends.
 */
export async function applyVolumeOpResult(conn: PoolConnection, ctx: ConductorContext, outcome: OpOutcome, fromHost: string): Promise<boolean | ApiError> {
  const op = await lockVolumeOp(conn, outcome.opId);
  if (!op) return false;
  const fields = { op_id: op.opId, request_id: op.requestId, volume_id: op.volumeId, host: op.host, op: op.kind };
  if (op.host !== fromHost) {
    afterCommit(conn, () => ctx.log.warn({ ...fields, from_host: fromHost }, "volume op result from another host than the op's refused"));
    return permissionDenied(`op ${op.opId} was sent to another host; only that host may report its result`);
  }
  if (op.state === "DONE") return true;
  const e = outcome.error;
  afterCommit(conn, () => ctx.log.info({ ...fields, result: e ? e.code : "ok" }, e ? `volume op failed: ${e.message}` : "volume op done"));
  await finishVolumeOp(conn, op.opId, outcome.error);
  const volume = await getVolume(conn, op.volumeId, { lock: true });
  const rule = VOLUME_RESULT_RULES[op.kind];
  if (!volume) return true;
  let snapshot: VolumeSnapshot | null = null;
  if ("snapshot" in rule) {
    const snapshotId = (await getVolumeActionById(conn, op.actionId))?.snapshotId;
    snapshot = snapshotId ? await getSnapshot(conn, snapshotId, { lock: true }) : null;
    if (snapshot?.status !== rule.snapshot) return true;
  } else if (volume.status !== rule.status) return true;
  await rule.apply(new VolumeResultContext(conn, ctx, op, volume, outcome, snapshot));
  return true;
}

/** Volumes ended per transaction. */
export const VOLUME_REAP_BATCH = 50;

/**
 * Ends every volume left in a working status past its deadline (one
 * batch): its outstanding ops are marked done (a late result changes
 * nothing), its flow's timeout rule leaves it in a defined status with a
 * TASK_TIMED_OUT fault; and so every overdue snapshot. Returns the larger
 * of the two counts (a full batch: call again).
 */
export async function reapVolumes(ctx: ConductorContext, now = new Date()): Promise<number> {
  return withTx(ctx.pool, async (conn) => {
    const overdue = await lockOverdueVolumes(conn, now, VOLUME_REAP_BATCH);
    for (const v of overdue) await reapVolume(conn, ctx, v);
    const snapshots = await reapSnapshots(conn, ctx, now);
    return Math.max(overdue.length, snapshots);
  }, { deadlockRetries: DEADLOCK_RETRIES });
}

async function reapVolume(conn: PoolConnection, ctx: ConductorContext, v: Volume): Promise<void> {
  const task = v.status as VolumeTask;
  if (!(VOLUME_TASKS as readonly string[]).includes(task)) {
    // A deadline left on a resting volume: nothing is running.
    ctx.log.warn({ volume_id: v.id, status: v.status }, "volume deadline without a working status cleared");
    await updateVolume(conn, v.id, { taskDeadline: null });
    return;
  }
  const rule = VOLUME_TIMEOUT_RULES[task];
  const seconds = ctx.volumeTimeouts[task];
  const why = `${task} did not finish within ${seconds} s on volume host ${v.host}`;
  const fault: VolumeFault = {
    code: "TASK_TIMED_OUT",
    message: `${why}; ${rule.outcome}`,
    details: { status: task, timeout_seconds: String(seconds), host: v.host },
    createdAt: new Date().toISOString(),
  };
  // The working status's own ops and action (a snapshot's have their own deadline).
  const ops = (await pendingVolumeOps(conn, v.id)).filter((op) => !SNAPSHOT_OP_KINDS.includes(op.kind));
  for (const op of ops) await finishVolumeOp(conn, op.opId, { code: "TASK_TIMED_OUT", message: why, retryable: false });
  const actionId = ops.at(-1)?.actionId ?? (await runningVolumeAction(conn, v.id, { snapshots: false }))?.id ?? null;
  afterCommit(conn, () => {
    ctx.log.warn({ volume_id: v.id, status: task, host: v.host }, `volume task timed out: ${fault.message}`);
    ctx.metrics?.tasksTimedOut.inc({ task: `volume_${task}` });
  });
  await rule.reap(new VolumeTimeoutContext(conn, ctx, v, actionId, fault));
}
