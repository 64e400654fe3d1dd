/**
 * Shared steps of moving a server between hosts (resize, cold and live
 * migration, evacuation): who holds which capacity, how a move begins, and
 * how it is rolled back.
 *
 * Capacity: while a move is open the instance (consumer = instance uuid)
 * holds the target's claim with the new flavor, and the migration (consumer
 * = migration id) holds the source's claim with the old flavor. Confirm
 * releases the migration's; revert releases the instance's and hands the
 * migration's back to the instance.
 */
import { randomUUID } from "node:crypto";
import type { TaskState, VmState } from "../domain/states.js";
import type { Fault, Instance, Migration, MigrationFlavor, MigrationType, OperationError, Principal } from "../domain/types.js";
import { invalidArgument, failedPrecondition, notFound, permissionDenied } from "../errors.js";
import type { Step } from "./act.js";
import type { Tx } from "./context.js";
import type { TxStore } from "./tx-store.js";
import { dropMoves } from "./flows/volume-moves.js";

/** The task each kind of move runs under while it waits for a target. */
export const WAITING_TASK: Readonly<Record<MigrationType, TaskState>> = {
  RESIZE: "RESIZE_PREP",
  MIGRATION: "RESIZE_PREP",
  LIVE_MIGRATION: "MIGRATING",
  EVACUATION: "REBUILDING",
};

/** Tasks of moves that may be waiting for a target. */
export const MOVE_WAITING_TASKS: readonly TaskState[] = [...new Set(Object.values(WAITING_TASK))];

/**
 * Releases everything an instance and its migrations hold. Returns how many
 * allocations were released.
 */
export async function releaseEverything(store: TxStore, instanceUuid: string): Promise<number> {
  let n = await store.releaseAllocations(instanceUuid);
  for (const id of await store.migrationIdsOf(instanceUuid)) n += await store.releaseAllocations(id);
  // Ports made for it go with their addresses; ports it was given are free again.
  await store.releaseServerPorts(instanceUuid);
  return n;
}

/** Checks an optional target host: admins only where asked, known, not the current one. */
export async function checkTargetHost(store: TxStore, who: Principal, inst: Instance, host: string | null, o: { adminOnly: boolean }): Promise<void> {
  if (host === null) return;
  if (o.adminOnly && who.role !== "admin") throw permissionDenied("choosing the target host needs the admin role");
  if (!(await store.getNodeByHost(host))) throw notFound("host", host);
  if (host === inst.host) throw invalidArgument("host", "is the server's current host");
}

/** Opens a move (PRE_MIGRATING): placement then claims a target and calls the move's placement hook. */
export async function beginMove(
  tx: Tx,
  inst: Instance,
  o: { actionId: number; requestId: string; type: MigrationType; newFlavor: MigrationFlavor; requestedHost?: string | null },
): Promise<Step> {
  if (!inst.host) throw failedPrecondition(`server ${inst.uuid} has no host`, "NO_HOST");
  await tx.store.insertMigration({
    id: randomUUID(),
    instanceUuid: inst.uuid,
    projectId: inst.projectId,
    actionId: o.actionId,
    requestId: o.requestId,
    type: o.type,
    status: "PRE_MIGRATING",
    sourceHost: inst.host,
    requestedHost: o.requestedHost ?? null,
    oldFlavor: { ...inst.flavor, extraSpecs: inst.extraSpecs },
    newFlavor: o.newFlavor,
    oldVmState: inst.vmState,
  });
  return { instance: await tx.update(inst.uuid, tx.task(WAITING_TASK[o.type])) };
}

/**
 * Gives up a move that never got a target (nothing fits, or it timed out
 * waiting): the source's capacity goes back to the instance and the
 * migration is ERROR. The server stays where and as it was.
 */
export async function abandonMove(store: TxStore, inst: Instance, m: Migration): Promise<void> {
  await store.moveAllocations(m.id, inst.uuid);
  await store.updateMigration(m.id, { status: "ERROR" });
}

/**
 * Undoes a move that failed or timed out before it was FINISHED: the
 * target's claim is released, the source's goes back to the instance, the
 * instance is back on its source with its old flavor, the migration is
 * ERROR and the action FAILED. The exports of its volumes made for the
 * target end; a copy that may exist on the target is destroyed; when the source copy was powered off for the move and the
 * server was running, it is brought back (task RESIZE_REVERTING) —
 * otherwise the task ends now.
 */
export async function rollbackMove(
  tx: Tx,
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
  const { store } = tx;
  const { inst, migration: m } = o;
  await dropMoves(tx, inst, m.actionId, m.requestId);
  if (m.targetHost) {
    const target = await store.getNodeByHost(m.targetHost);
    if (target) await store.releaseAllocations(inst.uuid, target.id);
  }
  await store.moveAllocations(m.id, inst.uuid);
  await store.updateMigration(m.id, { status: o.cancelled ? "CANCELLED" : "ERROR" });
  await store.finishAction(m.actionId, { state: o.cancelled ? "CANCELLED" : "FAILED", error: o.error });
  const restore = o.restoreSource && m.oldVmState === "ACTIVE";
  const back = await tx.update(inst.uuid, {
    host: m.sourceHost,
    flavor: m.oldFlavor,
    ...(o.fault ? { fault: o.fault } : {}),
    ...(o.vmState ? { vmState: o.vmState } : {}),
    ...(restore ? tx.task("RESIZE_REVERTING") : { taskState: null }),
  });
  const send = { instance: back, actionId: m.actionId, requestId: m.requestId };
  if (o.cleanupTarget && m.targetHost) {
    // What the target made goes: a live migration's incoming domain, or the new copy.
    const kind = m.type === "LIVE_MIGRATION" ? "rollback_live_migration" : "revert_migration";
    await tx.dispatch({ ...send, host: m.targetHost, args: { kind } });
  }
  if (restore) await tx.dispatch({ ...send, host: m.sourceHost, args: { kind: "finish_revert_migration", powerOn: true } });
  return back;
}
