/**
 * Shared steps of moving a server between hosts (resize, cold migration):
 * who holds which capacity, and how a move is rolled back.
 *
 * Capacity: while a move is open the instance (consumer = instance uuid)
 * holds the target's claim with the new flavor, and the migration (consumer
 * = migration id) holds the source's claim with the old flavor. Confirm
 * releases the migration's; revert releases the instance's and hands the
 * migration's back to the instance.
 */
import type { VmState } from "../domain/states.js";
import type { Fault, Instance, Migration, OperationError } from "../domain/types.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { startTask } from "../domain/tasks.js";
import { finishAction } from "../store/actions.js";
import type { PoolConnection } from "../store/db.js";
import { select } from "../store/db.js";
import { updateInstance } from "../store/instances.js";
import { updateMigration } from "../store/moves.js";
import { getNodeByHost, moveAllocations, releaseAllocations } from "../store/nodes.js";
import { dispatchOp } from "./dispatch.js";

export interface MoveContext {
  readonly subjectPrefix: string;
  readonly taskTimeouts: TaskTimeouts;
}

/**
 * Releases everything an instance and its migrations hold. Returns how many
 * allocations were released.
 */
export async function releaseEverything(conn: PoolConnection, instanceUuid: string): Promise<number> {
  let n = await releaseAllocations(conn, instanceUuid);
  const migrations = await select<{ id: string }>(conn, "SELECT id FROM migrations WHERE instance_uuid = ?", [instanceUuid]);
  for (const m of migrations) n += await releaseAllocations(conn, m.id);
  return n;
}

/**
 * Undoes a move that failed or timed out before it was FINISHED: the
 * target's claim is released, the source's goes back to the instance, the
 * instance is back on its source with its old flavor, the migration is
 * ERROR and the action FAILED. A copy that may exist on the target is
 * destroyed; when the source copy was powered off for the move and the
 * server was running, it is brought back (task RESIZE_REVERTING) —
 * otherwise the task ends now.
 */
export async function rollbackMove(
  conn: PoolConnection,
  ctx: MoveContext,
  o: {
    inst: Instance;
    migration: Migration;
    /** The server's fault; none for a move cancelled on request. */
    fault: Fault | null;
    error: OperationError;
    restoreSource: boolean;
    cleanupTarget: boolean;
    /** The move was cancelled on request rather than failed. */
    cancelled?: boolean;
    /** The server's vm_state afterwards (default: unchanged). */
    vmState?: VmState;
  },
): Promise<Instance> {
  const { inst, migration: m } = o;
  if (m.targetHost) {
    const target = await getNodeByHost(conn, m.targetHost);
    if (target) await releaseAllocations(conn, inst.uuid, target.id);
  }
  await moveAllocations(conn, m.id, inst.uuid);
  await updateMigration(conn, m.id, { status: o.cancelled ? "CANCELLED" : "ERROR" });
  await finishAction(conn, m.actionId, { state: o.cancelled ? "CANCELLED" : "FAILED", error: o.error });
  const restore = o.restoreSource && m.oldVmState === "ACTIVE";
  const back = await updateInstance(conn, inst.uuid, {
    host: m.sourceHost,
    flavor: m.oldFlavor,
    ...(o.fault ? { fault: o.fault } : {}),
    ...(o.vmState ? { vmState: o.vmState } : {}),
    ...(restore ? startTask(ctx.taskTimeouts, "RESIZE_REVERTING") : { taskState: null }),
  });
  if (o.cleanupTarget && m.targetHost) {
    // What the target made goes: a live migration's incoming domain, or the new copy.
    const args = m.type === "LIVE_MIGRATION" ? ({ kind: "rollback_live_migration" } as const) : ({ kind: "revert_migration" } as const);
    await dispatchOp(conn, { instance: back, host: m.targetHost, actionId: m.actionId, requestId: m.requestId, args, subjectPrefix: ctx.subjectPrefix });
  }
  if (restore) {
    await dispatchOp(conn, {
      instance: back,
      host: m.sourceHost,
      actionId: m.actionId,
      requestId: m.requestId,
      args: { kind: "finish_revert_migration", powerOn: true },
      subjectPrefix: ctx.subjectPrefix,
    });
  }
  return back;
}
