/**
 * Rebuild on the server's host, and evacuation (admins): rebuild a server
 * whose host is down on another host. An evacuation ends the tasks the dead
 * host left hanging, gives up a resize awaiting confirm, and lets placement
 * claim a new host, which builds the server from its image — its attached
 * volumes (a volume-booted server's root too) exported to that host first
 * (volume-moves.ts) and opened there; once it runs, the exports to the dead
 * host end, so it cannot write to them when it comes back, and it destroys
 * its old copy.
 */
import { rootAttachment } from "./boot-volume.js";
import { rebuildFromVolume } from "./volume-rebuild.js";
import { ofRunningAction } from "./volumes.js";
import { status } from "@grpc/grpc-js";
import { isUp } from "../../domain/service.js";
import type { Image, Instance, Migration, Principal } from "../../domain/types.js";
import { failedPrecondition, invalidArgument, permissionDenied } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext, Tx } from "../context.js";
import type { ActionRules, ResultContext, ResultRules, TimeoutContext, TimeoutRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { abandonMove, beginMove, checkTargetHost, rollbackMove } from "../moves.js";
import { POWER_TASKS } from "./power.js";
import { exportForMove, hostVolumes, moveExported, noExportFault, settleMoves } from "./volume-moves.js";

export const actions = {
  rebuild: { from: ["ACTIVE", "STOPPED", "ERROR"], task: "REBUILDING" },
  // Every state but a build; an offloaded server has no host to evacuate from.
  evacuate: { from: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "RESIZED", "ERROR"], task: "REBUILDING", interrupts: POWER_TASKS, scheduled: true },
} as const satisfies ActionRules<"rebuild" | "evacuate">;

/** Rebuild on the server's host from `image` (null: its current image), optionally renaming it. */
export function rebuild(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, image: Image | null, name: string | null): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "rebuild", actions.rebuild, { image_id: image?.id ?? null, name }, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const root = inst.bootsFromVolume ? await rootAttachment(tx.store, inst) : null;
    if (root) return rebuildFromVolume(tx, { ...inst, host: inst.host }, root, image, name, { actionId, requestId });
    if (image && inst.flavor.diskGb < image.minDiskGb) {
      throw invalidArgument("image_id", `the server's disk ${inst.flavor.diskGb} GiB is below the image's min_disk ${image.minDiskGb} GiB`);
    }
    if (image && inst.flavor.ramMb < image.minRamMb) {
      throw invalidArgument("image_id", `the server's RAM ${inst.flavor.ramMb} MiB is below the image's min_ram ${image.minRamMb} MiB`);
    }
    const busy = await tx.update(uuid, { ...tx.task("REBUILDING"), ...(image ? { imageId: image.id } : {}), ...(name ? { name } : {}) });
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "rebuild", recreate: false } });
    return { instance: busy };
  });
}

/** Evacuation (admins): rebuild a server whose host is down on another host. */
export function evacuate(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "evacuate", actions.evacuate, { host }, async (tx, inst, actionId) => {
    const { store } = tx;
    if (who.role !== "admin") throw permissionDenied("evacuate needs the admin role");
    const source = inst.host ? await store.getNodeByHost(inst.host) : null;
    if (!inst.host || !source) throw failedPrecondition(`server ${uuid} has no host to evacuate from`, "NO_HOST");
    if (isUp(source, ctx.serviceDownTimeSeconds)) {
      throw failedPrecondition(`host ${inst.host} of server ${uuid} is up; evacuate only from a host that is down`, "HOST_UP", { host: inst.host });
    }
    await checkTargetHost(store, who, inst, host, { adminOnly: false });
    // Tasks the dead host left hanging are over: their ops are done.
    for (const op of await store.pendingOps(uuid)) {
      await store.finishOp(op.opId, { code: "SUPERSEDED", message: "the server is being evacuated", retryable: false }, { result: "Error", fault: "SUPERSEDED: the server is being evacuated" });
      if (op.actionId !== actionId) await store.finishAction(op.actionId, { error: { code: status.ABORTED, reason: "SUPERSEDED", message: "the server was evacuated" } });
    }
    // A resize awaiting confirm: the dead host held the new copy. The move
    // is given up; the old copy on its source is destroyed and its
    // capacity released.
    const resize = await store.openMigration(uuid, { lock: true });
    if (resize) {
      // The server lived on the dead host (the resize's target): its volumes take the exports made for it, the source's end.
      await settleMoves(tx, inst, actionId, requestId);
      await store.releaseAllocations(resize.id);
      await store.updateMigration(resize.id, { status: "CANCELLED" });
      await tx.dispatch({ instance: inst, host: resize.sourceHost, actionId, requestId, args: { kind: "confirm_migration" } });
    }
    return beginMove(tx, inst, { actionId, requestId, type: "EVACUATION", newFlavor: inst.flavor, requestedHost: host });
  });
}

/** Placement chose the new host: its volumes are exported there, then it builds the server. */
export async function placed(tx: Tx, inst: Instance, m: Migration, target: string): Promise<void> {
  const rebuilding = await tx.update(inst.uuid, { host: target, ...tx.task("REBUILD_SPAWNING") });
  await tx.store.markActionRunning(m.actionId, rebuilding.taskDeadline);
  if ((await exportForMove(tx, rebuilding, target, m.actionId, m.requestId)) > 0) {
    await tx.store.setActionStep(m.actionId, { message: `exporting volumes to ${target}` });
    return;
  }
  await recreate(tx, rebuilding, m);
}

/** The new host builds the server, opening its volumes' exports made for it. */
async function recreate(tx: Tx, inst: Instance, m: Migration): Promise<void> {
  const args = { kind: "rebuild", recreate: true, ...(await hostVolumes(tx, inst, "move")) } as const;
  await tx.dispatch({ instance: inst, host: inst.host!, actionId: m.actionId, requestId: m.requestId, args });
}

/**
 * The evacuated server runs on its new host: the dead host's capacity is
 * released, and that host destroys its old copy when it comes back.
 */
async function evacuated(r: ResultContext, m: Migration): Promise<void> {
  if (r.error) {
    await rollbackMove(r.tx, { inst: r.inst, migration: m, fault: r.fault(), error: r.opError(), restoreSource: false, cleanupTarget: true, vmState: "ERROR" });
    return;
  }
  await r.store.releaseAllocations(m.id);
  await r.store.updateMigration(m.id, { status: "COMPLETED" });
  await settleMoves(r.tx, r.inst, m.actionId, m.requestId);
  const done = await r.update({ vmState: "ACTIVE", taskState: null, powerState: r.power ?? "RUNNING", fault: null });
  await r.dispatch(m.sourceHost, { kind: "destroy" }, done, m.requestId);
  await r.store.finishAction(r.op.actionId);
}

export const results = {
  /** A rebuild on the server's host, or an evacuation's build on its new host. */
  rebuild: {
    tasks: ["REBUILDING", "REBUILD_SPAWNING"],
    steps: ["REBUILDING", "REBUILD_SPAWNING"],
    apply: async (r) => {
      // Of another host, or of an earlier rebuild a delete interrupted: nothing to finish.
      if (r.op.host !== r.inst.host || !(await ofRunningAction(r))) return;
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (m?.type === "EVACUATION") return evacuated(r, m);
      if (r.error) return r.fail({ vmState: "ERROR", powerState: r.power });
      await r.succeed({ vmState: "ACTIVE", powerState: r.power ?? "RUNNING" });
    },
  },
} as const satisfies ResultRules<"rebuild">;

/** Rows of op kinds other flows own, for this flow's task (flows/index.ts joins them). */
export const sharedResults = {
  /** A volume host exported an attached volume to the evacuation's new host: once all are, it builds the server. */
  export_volume: {
    tasks: ["REBUILD_SPAWNING"],
    apply: async (r) => {
      const m = await r.store.openMigration(r.inst.uuid, { lock: true });
      if (m?.type !== "EVACUATION" || r.inst.host !== m.targetHost) return;
      const state = await moveExported(r);
      if (state === "failed") {
        const fault = r.error ? r.fault() : noExportFault(r);
        const error = r.error ? r.opError() : operationErrorOfFault(fault, status.UNKNOWN);
        await rollbackMove(r.tx, { inst: r.inst, migration: m, fault, error, restoreSource: false, cleanupTarget: false, vmState: "ERROR" });
        return;
      }
      if (state === "ready") {
        await r.store.setActionStep(r.op.actionId, { message: `building on ${m.targetHost}` });
        await recreate(r.tx, r.inst, m);
      }
    },
  },
} as const satisfies ResultRules<"export_volume">;

/** A rebuild that did not finish leaves the disk in an unknown state; an evacuation that got no host did nothing. */
async function reapRebuild(t: TimeoutContext): Promise<void> {
  const m = await t.store.openMigration(t.inst.uuid, { lock: true });
  if (m?.status === "PRE_MIGRATING") {
    await abandonMove(t.store, t.inst, m);
    return t.end();
  }
  if (m?.type === "EVACUATION" && t.task === "REBUILD_SPAWNING") {
    await rollbackMove(t.tx, { inst: t.inst, migration: m, fault: t.fault, error: t.error, restoreSource: false, cleanupTarget: true, vmState: "ERROR" });
    return;
  }
  await t.end({ vmState: "ERROR" });
}

export const timeouts = {
  REBUILDING: { outcome: "the rebuild did not complete; the server is in ERROR", reap: reapRebuild },
  REBUILD_SPAWNING: { outcome: "the rebuild did not complete (an evacuation is rolled back to the old host); the server is in ERROR", reap: reapRebuild },
} as const satisfies TimeoutRules<"REBUILDING" | "REBUILD_SPAWNING">;
