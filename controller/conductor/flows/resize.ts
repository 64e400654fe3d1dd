/**
 * Resize and cold migration, with confirm and revert. Placement claims a
 * target (the source is never a candidate); its attached volumes are
 * exported to the target (volume-moves.ts); the source powers off and
 * hands the disk over (migrate_disk; none when it boots from a volume);
 * the target creates the server with the new flavor, opening the volumes'
 * exports made for it (finish_migration), and it waits in RESIZED.
 * Confirm removes the source's copy, releases its capacity and ends the
 * source's exports; revert removes the target's copy, ends the target's
 * exports and brings the old copy back on the source, whose exports never
 * ended. A move that fails or times out before it is FINISHED is rolled
 * back to the source.
 */
import { status } from "@grpc/grpc-js";
import { resizeRequest } from "../../domain/quota.js";
import type { Flavor, Instance, Migration, Principal } from "../../domain/types.js";
import { failedPrecondition, invalidArgument } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext, Tx } from "../context.js";
import type { ActionRules, ResultContext, ResultRules, TimeoutRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { abandonMove, beginMove, checkTargetHost, rollbackMove } from "../moves.js";
import { dropMoves, exportForMove, hostVolumes, moveExported, noExportFault, settleMoves } from "./volume-moves.js";

export const actions = {
  resize: { from: ["ACTIVE", "STOPPED"], task: "RESIZE_PREP", scheduled: true },
  migrate: { from: ["ACTIVE", "STOPPED"], task: "RESIZE_PREP", scheduled: true },
  confirm_resize: { from: ["RESIZED"], task: "RESIZE_CONFIRMING" },
  revert_resize: { from: ["RESIZED"], task: "RESIZE_REVERTING" },
} as const satisfies ActionRules<"resize" | "migrate" | "confirm_resize" | "revert_resize">;

/** Resize to `flavor`: placement claims a target, then the hosts move the server. */
export function resize(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, flavor: Flavor): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "resize", actions.resize, { flavor_id: flavor.id }, async (tx, inst, actionId) => {
    if (flavor.id === inst.flavor.id) throw invalidArgument("flavor_id", `is the server's current flavor (${inst.flavor.name})`);
    const { id, name, vcpus, ramMb, diskGb, extraSpecs } = flavor;
    // The server holds the larger flavor until the resize is confirmed or reverted: the growth must fit its project's quota.
    await tx.store.checkQuota(inst.projectId, resizeRequest(inst.flavor, flavor), { fields: { cores: "flavor_id", ram: "flavor_id" } });
    return beginMove(tx, inst, { actionId, requestId, type: "RESIZE", newFlavor: { id, name, vcpus, ramMb, diskGb, extraSpecs } });
  });
}

/** Cold migration; an admin may name the target host. */
export function migrate(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "migrate", actions.migrate, { host }, async (tx, inst, actionId) => {
    await checkTargetHost(tx.store, who, inst, host, { adminOnly: true });
    return beginMove(tx, inst, { actionId, requestId, type: "MIGRATION", newFlavor: inst.flavor, requestedHost: host });
  });
}

/** Placement chose the target: the attached volumes are exported to it, then the source powers off and hands the disk over. */
export async function placed(tx: Tx, inst: Instance, m: Migration, target: string): Promise<void> {
  const moving = await tx.update(inst.uuid, tx.task("RESIZE_MIGRATING"));
  await tx.store.markActionRunning(m.actionId, moving.taskDeadline);
  if ((await exportForMove(tx, moving, target, m.actionId, m.requestId)) > 0) {
    await tx.store.setActionStep(m.actionId, { message: `exporting volumes to ${target}` });
    return;
  }
  await migrateDisk(tx, moving, m, target);
}

/** The source powers off and hands its disk over (none when the server boots from a volume). */
async function migrateDisk(tx: Tx, inst: Instance, m: Migration, target: string): Promise<void> {
  const args = { kind: "migrate_disk", targetHost: target, timeoutSeconds: tx.ctx.powerOffTimeoutSeconds, bootsFromVolume: inst.bootsFromVolume } as const;
  await tx.dispatch({ instance: inst, host: m.sourceHost, actionId: m.actionId, requestId: m.requestId, args });
}

export function confirmResize(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "confirm_resize", actions.confirm_resize, {}, async (tx, _inst, actionId) => {
    const m = await tx.store.openMigration(uuid, { lock: true });
    if (!m || m.status !== "FINISHED") throw failedPrecondition(`server ${uuid} has no finished migration to confirm`, "NO_MIGRATION");
    const confirming = await tx.update(uuid, tx.task("RESIZE_CONFIRMING"));
    await tx.dispatch({ instance: confirming, host: m.sourceHost, actionId, requestId, args: { kind: "confirm_migration" } });
    return { instance: confirming };
  });
}

export function revertResize(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "revert_resize", actions.revert_resize, {}, async (tx, _inst, actionId) => {
    const m = await tx.store.openMigration(uuid, { lock: true });
    if (!m || m.status !== "FINISHED" || !m.targetHost) throw failedPrecondition(`server ${uuid} has no finished migration to revert`, "NO_MIGRATION");
    const reverting = await tx.update(uuid, tx.task("RESIZE_REVERTING"));
    await tx.dispatch({ instance: reverting, host: m.targetHost, actionId, requestId, args: { kind: "revert_migration" } });
    return { instance: reverting };
  });
}

/** The power state a moved server has when its host did not say: as it was before the move. */
const powerBefore = (m: Migration) => (m.oldVmState === "ACTIVE" ? "RUNNING" : "SHUTDOWN");

export const results = {
  /** The source handed the disk over: the target creates the server with the new flavor. */
  migrate_disk: {
    tasks: ["RESIZE_MIGRATING"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (!m || !m.targetHost || r.op.host !== m.sourceHost) return;
      if (r.error) {
        // A source that stopped the guest for the move starts it again.
        const stopped = r.power !== undefined && r.power !== "RUNNING";
        await rollbackMove(r.tx, { inst: r.inst, migration: m, fault: r.fault(), error: r.opError(), restoreSource: stopped, cleanupTarget: false });
        return;
      }
      const finishing = await r.update({ host: m.targetHost, flavor: m.newFlavor, ...r.tx.task("RESIZE_FINISH") });
      const volumes = await hostVolumes(r.tx, finishing, "move");
      await r.dispatch(m.targetHost, { kind: "finish_migration", sourceHost: m.sourceHost, powerOn: m.oldVmState === "ACTIVE", ...volumes }, finishing, m.requestId);
    },
  },
  /** The target runs the moved server: it waits in RESIZED for confirm or revert. */
  finish_migration: {
    tasks: ["RESIZE_FINISH"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (!m || r.op.host !== m.targetHost) return;
      if (r.error) {
        await rollbackMove(r.tx, { inst: r.inst, migration: m, fault: r.fault(), error: r.opError(), restoreSource: true, cleanupTarget: true });
        return;
      }
      await r.store.updateMigration(m.id, { status: "FINISHED" });
      await r.succeed({ vmState: "RESIZED", powerState: r.power ?? powerBefore(m) });
    },
  },
  /** The source copy is gone: its capacity is released, its volumes' exports end. */
  confirm_migration: {
    tasks: ["RESIZE_CONFIRMING"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (!m) return;
      // Either way the server stays on the target: its volumes keep the target's exports, the source's end.
      await settleMoves(r.tx, r.inst, r.op.actionId, await requestIdOf(r));
      if (r.error) {
        await r.store.updateMigration(m.id, { status: "ERROR" });
        return r.fail({ vmState: "ERROR" });
      }
      await r.store.releaseAllocations(m.id);
      await r.store.updateMigration(m.id, { status: "CONFIRMED" });
      await r.succeed({ vmState: m.oldVmState === "STOPPED" ? "STOPPED" : "ACTIVE" });
    },
  },
  /** Revert, first step: the target's copy is gone; the source brings the old one back. */
  revert_migration: {
    tasks: ["RESIZE_REVERTING"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      // A revert_migration sent as cleanup of a failed move finishes nothing.
      if (!m || m.status !== "FINISHED" || r.op.host !== m.targetHost) return;
      if (r.error) {
        // The target's copy may still be there, and the server with it: its volumes keep the target's exports.
        await settleMoves(r.tx, r.inst, r.op.actionId, await requestIdOf(r));
        return r.fail({ vmState: "ERROR" });
      }
      // The source's copy opens the exports it always had.
      await dropMoves(r.tx, r.inst, r.op.actionId, await requestIdOf(r));
      const target = await r.store.getNodeByHost(m.targetHost);
      if (target) await r.store.releaseAllocations(r.inst.uuid, target.id);
      await r.store.moveAllocations(m.id, r.inst.uuid);
      const back = await r.update({ host: m.sourceHost, flavor: m.oldFlavor, ...r.tx.task("RESIZE_REVERTING") });
      await r.dispatch(m.sourceHost, { kind: "finish_revert_migration", powerOn: m.oldVmState === "ACTIVE" }, back, m.requestId);
    },
  },
  /** Revert, last step (or the rollback of a failed move): the old copy runs again on the source. */
  finish_revert_migration: {
    tasks: ["RESIZE_REVERTING"],
    apply: async (r) => {
      const m = await r.store.latestMigration(r.inst.uuid);
      if (!m || r.op.host !== m.sourceHost) return;
      if (r.error) {
        if (m.status === "FINISHED") await r.store.updateMigration(m.id, { status: "ERROR" });
        return r.fail({ vmState: "ERROR", powerState: r.power });
      }
      if (m.status === "FINISHED") await r.store.updateMigration(m.id, { status: "REVERTED" });
      await r.succeed({ vmState: m.oldVmState, powerState: r.power ?? powerBefore(m) });
    },
  },
} as const satisfies ResultRules<"migrate_disk" | "finish_migration" | "confirm_migration" | "revert_migration" | "finish_revert_migration">;

/** The request id of the action a result belongs to. */
async function requestIdOf(r: ResultContext): Promise<string> {
  return (await r.store.getActionById(r.op.actionId))?.requestId ?? r.inst.requestId;
}

/** Rows of op kinds other flows own, for this flow's task (flows/index.ts joins them). */
export const sharedResults = {
  /** A volume host exported an attached volume to the target: once all are, the source hands the disk over. */
  export_volume: {
    tasks: ["RESIZE_MIGRATING"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (!m?.targetHost || (m.type !== "RESIZE" && m.type !== "MIGRATION")) return;
      const state = await moveExported(r);
      if (state === "failed") {
        // Nothing moved yet: the server stays on its source as it was.
        const fault = r.error ? r.fault() : noExportFault(r);
        const error = r.error ? r.opError() : operationErrorOfFault(fault, status.UNKNOWN);
        await rollbackMove(r.tx, { inst: r.inst, migration: m, fault, error, restoreSource: false, cleanupTarget: false });
        return;
      }
      if (state === "ready") {
        await r.store.setActionStep(r.op.actionId, { message: `moving to ${m.targetHost}` });
        await migrateDisk(r.tx, r.inst, m, m.targetHost);
      }
    },
  },
} as const satisfies ResultRules<"export_volume">;

const rollBack = {
  outcome: "the move was rolled back to the source host",
  reap: async (t) => {
    const m = await t.store.openMigration(t.inst.uuid, { lock: true });
    if (!m) return t.end({ vmState: "ERROR" });
    await rollbackMove(t.tx, { inst: t.inst, migration: m, fault: t.fault, error: t.error, restoreSource: true, cleanupTarget: true });
  },
} as const satisfies TimeoutRules<"RESIZE_MIGRATING">["RESIZE_MIGRATING"];

/**
 * A timeout while the target finishes: rolled back to the source as
 * above — but a server with volumes is left stopped there, not started: the
 * target may still be starting its copy on the same volumes, and the source
 * must not open them before the target's exports have ended.
 */
const rollBackFinish = {
  outcome: rollBack.outcome,
  reap: async (t) => {
    const m = await t.store.openMigration(t.inst.uuid, { lock: true });
    if (!m) return t.end({ vmState: "ERROR" });
    if ((await t.store.attachmentsOf(t.inst.uuid)).length === 0) {
      await rollbackMove(t.tx, { inst: t.inst, migration: m, fault: t.fault, error: t.error, restoreSource: true, cleanupTarget: true });
      return;
    }
    const message = `${t.fault.message}, stopped: it has volumes its target may still be opening; start it once the target has let go`;
    const fault = { ...t.fault, message };
    const back = await rollbackMove(t.tx, { inst: t.inst, migration: m, fault, error: { ...t.error, message }, restoreSource: false, cleanupTarget: true, vmState: "STOPPED" });
    await t.tx.update(back.uuid, { powerState: "SHUTDOWN" });
  },
} as const satisfies TimeoutRules<"RESIZE_FINISH">["RESIZE_FINISH"];

export const timeouts = {
  RESIZE_PREP: {
    outcome: "the move was abandoned before it started",
    reap: async (t) => {
      const m = await t.store.openMigration(t.inst.uuid, { lock: true });
      if (m) await abandonMove(t.store, t.inst, m);
      await t.end();
    },
  },
  RESIZE_MIGRATING: rollBack,
  RESIZE_FINISH: rollBackFinish,
  RESIZE_CONFIRMING: {
    outcome: "the move was confirmed here; the source host removes the old copy when it can",
    reap: async (t) => {
      // The source's confirm (a cleanup op) stays queued; the move is confirmed.
      const m = await t.store.openMigration(t.inst.uuid, { lock: true });
      if (m) {
        await settleMoves(t.tx, t.inst, m.actionId, m.requestId);
        await t.store.releaseAllocations(m.id);
        await t.store.updateMigration(m.id, { status: "CONFIRMED" });
      }
      await t.end({ vmState: m?.oldVmState === "STOPPED" ? "STOPPED" : "ACTIVE" });
    },
  },
  RESIZE_REVERTING: {
    outcome: "the revert did not complete; the server needs an operator (hard reboot or delete)",
    reap: async (t) => {
      const m = await t.store.openMigration(t.inst.uuid, { lock: true });
      if (m) {
        await t.store.updateMigration(m.id, { status: "ERROR" });
        // Its volumes keep the exports of the host it is recorded on.
        await settleMoves(t.tx, t.inst, m.actionId, m.requestId);
      }
      await t.end({ vmState: "ERROR" });
    },
  },
} as const satisfies TimeoutRules<"RESIZE_PREP" | "RESIZE_MIGRATING" | "RESIZE_FINISH" | "RESIZE_CONFIRMING" | "RESIZE_REVERTING">;

/** Confirm, as a user would, a resize left unconfirmed past the confirm window (Nova's _poll_unconfirmed_resizes). */
export const autoConfirm = (ctx: ConductorContext, d: { id: string; instanceUuid: string; projectId: string }) =>
  confirmResize(ctx, { tokenId: "system", projectId: d.projectId, role: "admin", host: null }, d.instanceUuid, `auto-confirm-${d.id}`);

