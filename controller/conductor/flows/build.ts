/**
 * Build: a new server, and an unshelved one, which is built the same way
 * from its shelved image. Create (create.ts) records the server waiting
 * for a host; placement claims one and the build spawns there. A retryable spawn
 * failure claims the next of the alternates placement stored with the build
 * (Nova's alternates) or goes back to placement; an unshelve that cannot be
 * built stays shelved. A server with volumes (booted from one, or an
 * unshelved one with volumes attached) has each exported to the host first;
 * the spawn opens those exports, and a failed spawn ends them.
 */
import type { Fault, Instance } from "../../domain/types.js";
import { claimOf, HARD_POLICIES } from "../../domain/placement.js";
import { status } from "@grpc/grpc-js";
import type { PortFailure } from "../../store/server-ports.js";
import type { Tx } from "../context.js";
import { operationErrorOfFault, type ResultContext, type ResultRules, type TimeoutRules } from "../flow.js";
import { exportVolumes, rootInUse } from "./boot-volume.js";
import { endExports, hostVolumes, moveExported, noExportFault, settleMoves } from "./volume-moves.js";

/**
 * Placement claimed `host` for a build or an unshelve: it spawns there. A
 * `bare` server (placement read that it has no interface, asked for or
 * made, and no volume) has no ports to bind or volumes to export.
 */
export async function placed(
  tx: Tx,
  inst: Instance,
  action: { id: number; requestId: string },
  host: string,
  alternates: readonly string[],
  o: { bare: boolean },
): Promise<void> {
  // Its ports (made on the first placement) and the host's DHCP ports on their networks.
  const bound = o.bare ? ({ failure: null, portless: true } as const) : await tx.store.bindServerPorts(inst, host);
  if (bound.failure) {
    await tx.store.releaseAllocations(inst.uuid);
    return noPorts(tx, inst, action, bound.failure);
  }
  const attempt = inst.attempt + 1;
  const spawning = await tx.update(inst.uuid, {
    host,
    ...tx.task("SPAWNING"),
    attempt,
    triedHosts: [...inst.triedHosts, host],
    // Nova's alternates: the next best hosts, for the attempts left.
    alternateHosts: alternates.slice(0, Math.max(0, tx.ctx.maxAttempts - attempt)),
  });
  await tx.store.markActionRunning(action.id, spawning.taskDeadline);
  await tx.store.instantEvent({ actionId: action.id, event: "schedule", host, result: "Success" });
  await spawn(tx, inst, spawning, { actionId: action.id, requestId: action.requestId, host, attempt, portless: bound.portless, volumeless: o.bare });
}

/** The image a build starts from: an unshelved server's snapshot, else its own image. */
export function imageOf(inst: Instance): string {
  return inst.vmState === "SHELVED_OFFLOADED" && inst.shelvedImageId ? inst.shelvedImageId : inst.imageId;
}

/** Sends the spawn, from the image the build starts from; a server with volumes has them exported to the host first. */
async function spawn(
  tx: Tx,
  before: Instance,
  spawning: Instance,
  o: { actionId: number; requestId: string; host: string; attempt: number; portless: boolean; volumeless?: boolean },
) {
  if (!o.volumeless && (await exportVolumes(tx, spawning, o.host, o.actionId, o.requestId))) return;
  const { actionId, requestId, host, attempt, portless } = o;
  await tx.dispatch({ instance: spawning, host, actionId, requestId, args: { kind: "spawn" }, attempt, imageId: imageOf(before), portless });
}

/** A build's volumes are exported to its host: it spawns there, opening them. */
async function spawnWithVolumes(r: ResultContext): Promise<void> {
  const { inst, store, tx } = r;
  const requestId = (await store.getActionById(r.op.actionId))?.requestId ?? inst.requestId;
  await settleMoves(tx, inst, r.op.actionId, requestId);
  const args = { kind: "spawn", ...(await hostVolumes(tx, inst, "export")) } as const;
  await tx.dispatch({ instance: inst, host: inst.host!, actionId: r.op.actionId, requestId, args, attempt: inst.attempt, imageId: imageOf(inst) });
}

/**
 * A volume host could not export a volume to the build's host: the attempt
 * failed as a spawn does (retried elsewhere when the failure is retryable);
 * one answered without an export is a defect: a build fails, an unshelve
 * stays shelved (the volumes stay attached to the server; deleting it
 * frees them).
 */
async function notExported(r: ResultContext): Promise<void> {
  if (r.error) return retryOrFail(r);
  const { inst, store, tx } = r;
  const fault = noExportFault(r);
  await store.releaseAllocations(inst.uuid);
  await endExports(tx, inst, r.op.actionId, (await store.getActionById(r.op.actionId))?.requestId ?? inst.requestId);
  const unshelve = inst.vmState === "SHELVED_OFFLOADED";
  await r.update({ ...(unshelve ? {} : { vmState: "ERROR" as const }), taskState: null, host: null, powerState: "NOSTATE", fault });
  await store.finishAction(r.op.actionId, { error: operationErrorOfFault(fault, status.UNKNOWN) });
}

/**
 * Its interfaces cannot be made (a subnet with no address left, a port
 * taken since): a build fails with that fault; an unshelve stays shelved.
 */
async function noPorts(tx: Tx, inst: Instance, action: { id: number }, { fault, status: code }: PortFailure): Promise<void> {
  const unshelve = inst.vmState === "SHELVED_OFFLOADED";
  await tx.update(inst.uuid, { ...(unshelve ? {} : { vmState: "ERROR" as const }), taskState: null, fault });
  await tx.store.instantEvent({ actionId: action.id, event: "allocate_network", result: "Error", fault: fault.message });
  await tx.store.finishAction(action.id, { error: operationErrorOfFault(fault, code) });
}

/**
 * Nothing fits: a build fails; an unshelve stays shelved (Nova keeps it
 * SHELVED_OFFLOADED) with the fault.
 */
export async function noHost(tx: Tx, inst: Instance, action: { id: number }, fault: Fault): Promise<void> {
  const unshelve = inst.vmState === "SHELVED_OFFLOADED";
  await tx.update(inst.uuid, { ...(unshelve ? {} : { vmState: "ERROR" as const }), taskState: null, fault });
  await tx.store.instantEvent({ actionId: action.id, event: "schedule", result: "Error", fault: fault.message });
  await tx.store.finishAction(action.id, { error: operationErrorOfFault(fault, status.RESOURCE_EXHAUSTED) });
}

/**
 * Nova's alternates: after a retryable spawn failure (its claim already
 * released), claims the next alternate placement chose with the build and
 * spawns there, without a new placement pass. The claim is the same atomic
 * conditional UPDATE (up, enabled, fits). Members of a group with a hard
 * policy go back to placement instead, which checks the policy under the
 * group's lock. False when no alternate could be claimed.
 */
async function spawnOnAlternate(r: ResultContext): Promise<boolean> {
  const { inst, op, store, tx } = r;
  const left = inst.alternateHosts.filter((h) => !inst.triedHosts.includes(h));
  if (left.length === 0) return false;
  if (inst.serverGroupId) {
    const g = await store.getServerGroup(inst.serverGroupId);
    if (g && HARD_POLICIES.includes(g.policy)) return false;
  }
  const action = await store.runningAction(inst.uuid);
  if (!action || action.id !== op.actionId) return false;
  const resources = claimOf(inst.flavor, inst);
  for (let i = 0; i < left.length; i++) {
    const node = await store.getNodeByHost(left[i]!);
    if (!node || !(await store.claim(node.id, inst.uuid, resources, tx.upSince()))) continue;
    // The alternate's DHCP ports; a network with no address left for them rules it out.
    const bound = await store.bindServerPorts(inst, node.host);
    if (bound.failure) {
      await store.releaseAllocations(inst.uuid);
      continue;
    }
    const attempt = inst.attempt + 1;
    const spawning = await r.update({
      host: node.host,
      ...tx.task("SPAWNING"),
      attempt,
      triedHosts: [...inst.triedHosts, node.host],
      alternateHosts: left.slice(i + 1),
      powerState: "NOSTATE",
    });
    const details = `alternate host, attempt ${attempt} after ${op.host} failed`;
    await store.instantEvent({ actionId: op.actionId, event: "schedule", host: node.host, result: "Success", details });
    await spawn(tx, inst, spawning, { actionId: op.actionId, requestId: action.requestId, host: node.host, attempt, portless: bound.portless });
    await store.setActionStep(op.actionId, { deadline: spawning.taskDeadline, message: `attempt ${inst.attempt} on ${op.host} failed; trying ${node.host}` });
    return true;
  }
  return false;
}

export const results = {
  spawn: {
    tasks: ["SPAWNING"],
    apply: async (r) => {
      const { inst, op, store } = r;
      // A result from a host the build was since taken away from changes nothing.
      if (inst.host !== op.host) return;
      const unshelve = inst.vmState === "SHELVED_OFFLOADED";
      if (!r.error) {
        await r.succeed({
          vmState: "ACTIVE",
          powerState: r.power ?? "RUNNING",
          ...(unshelve ? { shelvedImageId: null } : { launchedAt: new Date() }),
        });
        // The shelved snapshot has served its purpose, as in Nova.
        if (unshelve && inst.shelvedImageId) await store.deleteImage(inst.shelvedImageId);
        if (!unshelve) {
          const seconds = Math.max(0, Date.now() - inst.createdAt.getTime()) / 1000;
          r.tx.afterCommit(() => r.tx.ctx.metrics?.createToActive.observe(seconds));
        }
        await rootInUse(store, inst);
        await store.recordBuildSuccess(op.host);
        return;
      }
      // The build failure weigher steers the next builds elsewhere until this host builds one. A
      // non-retryable failure (a bad image, an impossible request) is not the host's fault.
      if (r.error.retryable) await store.recordBuildFailure(op.host);
      await retryOrFail(r);
    },
  },
} as const satisfies ResultRules<"spawn">;

/**
 * An attempt failed (a spawn, or an export of the build's volumes): its
 * claim and its volumes' exports are given up; a retryable failure with
 * attempts left tries an alternate or goes back to placement; otherwise a
 * build fails and an unshelve stays shelved, with the failure as fault.
 */
async function retryOrFail(r: ResultContext): Promise<void> {
  const { inst, op, store, tx } = r;
  const error = r.error!;
  const unshelve = inst.vmState === "SHELVED_OFFLOADED";
  await store.releaseAllocations(inst.uuid);
  await endExports(tx, inst, op.actionId, (await store.getActionById(op.actionId))?.requestId ?? inst.requestId);
  if (error.retryable && inst.attempt < tx.ctx.maxAttempts) {
    if (await spawnOnAlternate(r)) return;
    await r.update({ host: null, ...tx.task(unshelve ? "UNSHELVING" : "SCHEDULING"), powerState: "NOSTATE" });
    await store.setActionStep(op.actionId, { message: `attempt ${inst.attempt} (${op.kind} on ${op.host}) failed; rescheduling` });
    return;
  }
  const fault = r.fault();
  const exhausted = error.retryable ? `; gave up after ${inst.attempt} attempts` : "";
  await r.update({ ...(unshelve ? {} : { vmState: "ERROR" as const }), taskState: null, host: null, powerState: "NOSTATE", fault: { ...fault, message: fault.message + exhausted } });
  await store.finishAction(op.actionId, { error: r.opError() });
}

/** Rows of op kinds other flows own, for the build's task (flows/index.ts joins them). */
export const sharedResults = {
  /** A volume is exported to the build's host: once all are, it spawns there. */
  export_volume: {
    tasks: ["SPAWNING"],
    apply: async (r) => {
      // Stale (of a host the build was since taken away from) or some still exporting: nothing yet.
      const state = await moveExported(r);
      if (state === "failed") return notExported(r);
      if (state === "ready") return spawnWithVolumes(r);
    },
  },
} as const satisfies ResultRules<"export_volume">;

export const timeouts = {
  SCHEDULING: { outcome: "the build failed", reap: (t) => t.end({ vmState: "ERROR" }) },
  SPAWNING: {
    outcome: "the build failed and the host will remove what it made",
    reap: async (t) => {
      const { inst } = t;
      // Whatever the host made, it destroys when it gets to it; its volumes' exports to it end.
      if (inst.host && t.actionId !== null) {
        await t.tx.dispatch({ instance: inst, host: inst.host, actionId: t.actionId, requestId: inst.requestId, args: { kind: "destroy" } });
        await endExports(t.tx, inst, t.actionId, inst.requestId);
      }
      await t.store.releaseAllocations(inst.uuid);
      // An unshelve stays shelved; a build fails.
      await t.end({ ...(inst.vmState === "SHELVED_OFFLOADED" ? {} : { vmState: "ERROR" as const }), host: null, powerState: "NOSTATE" });
    },
  },
} as const satisfies TimeoutRules<"SCHEDULING" | "SPAWNING">;
