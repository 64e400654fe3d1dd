/**
 * Live migration, and its cancel. Placement claims a target (or takes the
 * one an admin named); the target prepares (pre_live_migration); the source
 * copies the running guest (live_migrate, cancellable: an abort op stops
 * the copy); the target finishes (post_live_migration) and the source's
 * capacity is released. A failure or a cancel before the target took the
 * server leaves it on its source as it was; a timeout during the copy
 * leaves both hosts' claims for an operator, since the server may run on
 * either.
 */
import { status } from "@grpc/grpc-js";
import type { Fault, Instance, InstanceAction, Migration, Principal } from "../../domain/types.js";
import { failedPrecondition, notFound } from "../../errors.js";
import { getActionById } from "../../store/actions.js";
import { withTx } from "../../store/db.js";
import type { Accepted } from "../act.js";
import { act, visible } from "../act.js";
import type { ConductorContext } from "../context.js";
import { Tx } from "../context.js";
import type { ActionRules, ResultContext, ResultRules, TimeoutRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { abandonMove, beginMove, checkTargetHost, rollbackMove } from "../moves.js";
import { exportForMove, noExportFault, exportingForMove, moveExported, movingVolumes, settleMoves } from "./volume-moves.js";

export const actions = {
  live_migrate: { from: ["ACTIVE", "PAUSED"], task: "MIGRATING", scheduled: true },
} as const satisfies ActionRules<"live_migrate">;

/** Live migration; an admin may name the target host. */
export function liveMigrate(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "live_migrate", actions.live_migrate, { host }, async (tx, inst, actionId) => {
    await checkTargetHost(tx.store, who, inst, host, { adminOnly: true });
    return beginMove(tx, inst, { actionId, requestId, type: "LIVE_MIGRATION", newFlavor: inst.flavor, requestedHost: host });
  });
}

/**
 * Placement chose the target: the attached volumes are exported to it
 * (volume-moves.ts), then it prepares; the task (and its deadline) spans
 * the whole move.
 */
export async function placed(tx: Tx, inst: Instance, m: Migration, target: string): Promise<void> {
  await tx.store.markActionRunning(m.actionId, inst.taskDeadline);
  if ((await exportForMove(tx, inst, target, m.actionId, m.requestId)) > 0) {
    await tx.store.setActionStep(m.actionId, { message: `exporting volumes to ${target}` });
    return;
  }
  await prepare(tx, inst, m, target);
}

/** The target prepares to receive the server (with no local root disk when it boots from a volume). */
async function prepare(tx: Tx, inst: Instance, m: Migration, target: string): Promise<void> {
  const args = { kind: "pre_live_migration", sourceHost: m.sourceHost, bootsFromVolume: inst.bootsFromVolume } as const;
  await tx.dispatch({ instance: inst, host: target, actionId: m.actionId, requestId: m.requestId, args });
}

/**
 * Cancels a running operation where the action allows it: a live migration
 * is aborted on its source while it copies.
 */
export async function cancel(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<InstanceAction> {
  const actionId = await withTx(ctx.pool, async (conn) => {
    await visible(conn, who, uuid, true);
    const tx = new Tx(conn, ctx);
    const { store } = tx;
    const action = await store.findAction(uuid, requestId);
    if (!action) throw notFound("operation", requestId);
    const op = await store.getActionById(action.id);
    if (!op || op.finishTime) throw failedPrecondition(`the operation is already ${op?.state ?? "done"}`, "OPERATION_DONE", { state: op?.state ?? "" });
    if (!op.cancellable) throw failedPrecondition(`a ${op.action} operation cannot be cancelled now`, "NOT_CANCELLABLE", { action: op.action });
    const running = (await store.pendingOps(uuid)).find((o) => o.actionId === action.id && o.kind === "live_migrate");
    if (!running) throw failedPrecondition(`the ${op.action} operation has nothing running to cancel`, "NOT_CANCELLABLE", { action: op.action });
    const inst = (await store.getInstance(uuid))!;
    await tx.dispatch({ instance: inst, host: running.host, actionId: action.id, requestId, args: { kind: "abort", targetOpId: running.opId } });
    await store.instantEvent({ actionId: action.id, event: "cancel_requested", result: "Success" });
    await store.setActionStep(action.id, { cancellable: false, message: "cancelling" });
    return action.id;
  });
  const operation = await getActionById(ctx.pool, actionId);
  if (!operation) throw new Error(`action ${actionId} vanished`);
  return operation;
}

/** The open live migration a result belongs to, if `host` is its `side` (any host: a volume host's). */
async function liveMigrationOf(r: ResultContext, side: "sourceHost" | "targetHost" | "any"): Promise<Migration | null> {
  const m = await r.store.openMigration(r.inst.uuid, { lock: true });
  return m && m.type === "LIVE_MIGRATION" && (side === "any" || r.op.host === m[side]) && m.targetHost ? m : null;
}

/**
 * A live migration that failed or was aborted before the target took the
 * server: it stays on its source as it was, the target's claim and
 * incoming domain go, and its volumes' exports made for the target end.
 * `decided`: the controller's fault, when no host failed.
 */
async function failed(r: ResultContext, m: Migration, decided?: Fault): Promise<void> {
  const aborted = r.op.kind === "live_migrate" && r.error?.code === "ABORTED" && (await r.store.cancelRequested(r.op.actionId));
  const cancelled = { code: status.CANCELLED, reason: "CANCELLED", message: "the live migration was cancelled; the server stayed on its source" };
  await rollbackMove(r.tx, {
    inst: r.inst,
    migration: m,
    fault: decided ?? (aborted ? null : r.fault()),
    error: decided ? operationErrorOfFault(decided, status.UNKNOWN) : aborted ? cancelled : r.opError(),
    restoreSource: false,
    cleanupTarget: true,
    cancelled: aborted,
  });
  if (r.power) await r.update({ powerState: r.power });
}

export const results = {
  /** The target is ready to receive the server: the source starts copying (cancellable from now). */
  pre_live_migration: {
    tasks: ["MIGRATING"],
    apply: async (r) => {
      const m = await liveMigrationOf(r, "targetHost");
      if (!m) return;
      if (r.error) return failed(r, m);
      const target = await r.store.getNodeByHost(m.targetHost!);
      const volumes = await movingVolumes(r.tx, r.inst);
      await r.dispatch(m.sourceHost, { kind: "live_migrate", targetHost: m.targetHost!, targetUri: target?.migrationUri ?? "", volumes }, r.inst, m.requestId);
      await r.store.setActionStep(r.op.actionId, { cancellable: true, message: `copying to ${m.targetHost}` });
    },
  },
  /** The copy finished (or was aborted, or failed). */
  live_migrate: {
    tasks: ["MIGRATING"],
    apply: async (r) => {
      const m = await liveMigrationOf(r, "sourceHost");
      if (!m) return;
      if (r.error) return failed(r, m);
      await r.store.setActionStep(r.op.actionId, { cancellable: false, message: `finishing on ${m.targetHost}` });
      const moved = await r.update({ host: m.targetHost });
      await settleMoves(r.tx, moved, m.actionId, m.requestId);
      await r.dispatch(m.targetHost!, { kind: "post_live_migration", sourceHost: m.sourceHost }, moved, m.requestId);
    },
  },
  /** The server runs on its new host: the source's capacity is released. */
  post_live_migration: {
    tasks: ["MIGRATING"],
    apply: async (r) => {
      const m = await liveMigrationOf(r, "targetHost");
      if (!m) return;
      // The server left the source either way.
      await r.store.releaseAllocations(m.id);
      if (r.error) {
        await r.store.updateMigration(m.id, { status: "ERROR" });
        return r.fail({ vmState: "ERROR", powerState: r.power });
      }
      await r.store.updateMigration(m.id, { status: "COMPLETED" });
      await r.succeed({ powerState: r.power ?? (m.oldVmState === "PAUSED" ? "PAUSED" : "RUNNING") });
    },
  },
  rollback_live_migration: { tasks: [] },
  abort: { tasks: [] },
} as const satisfies ResultRules<"pre_live_migration" | "live_migrate" | "post_live_migration" | "rollback_live_migration" | "abort">;

/** Rows of op kinds other flows own, for this flow's task (flows/index.ts joins them). */
export const sharedResults = {
  /** A volume host exported an attached volume to the target: once all are, the target prepares. */
  export_volume: {
    tasks: ["MIGRATING"],
    apply: async (r) => {
      const m = await liveMigrationOf(r, "any");
      if (!m) return;
      const state = await moveExported(r);
      if (state === "failed") return failed(r, m, r.error ? undefined : noExportFault(r));
      if (state === "ready") {
        await r.store.setActionStep(r.op.actionId, { message: `preparing ${m.targetHost}` });
        await prepare(r.tx, r.inst, m, m.targetHost!);
      }
    },
  },
} as const satisfies ResultRules<"export_volume">;

export const timeouts = {
  MIGRATING: {
    outcome: "the server may be on either host; both keep their capacity until an operator acts",
    reap: async (t) => {
      const m = await t.store.openMigration(t.inst.uuid, { lock: true });
      // No host was chosen: nothing moved.
      if (m?.status === "PRE_MIGRATING") {
        await abandonMove(t.store, t.inst, m);
        return t.end();
      }
      // Still exporting the volumes to the target: nothing moved, it stays on its source as it was.
      if (m?.type === "LIVE_MIGRATION" && (await exportingForMove(t.tx, t.inst))) {
        const fault = { ...t.fault, message: `the volumes were not exported to ${m.targetHost} in time; the server stays on its source as it was` };
        await rollbackMove(t.tx, { inst: t.inst, migration: m, fault, error: { ...t.error, message: fault.message }, restoreSource: false, cleanupTarget: true });
        return;
      }
      // The copy may or may not have completed: the server may run on
      // either host, so both keep their claims until an operator acts.
      if (m) await t.store.updateMigration(m.id, { status: "ERROR" });
      await t.end({ vmState: "ERROR" });
    },
  },
} as const satisfies TimeoutRules<"MIGRATING">;
