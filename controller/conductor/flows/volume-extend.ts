/**
 * Extending an attached volume online (Cinder's in-use extend with Nova's
 * `volume-extended` event), an action of the server it is attached to:
 * the extra size is claimed on the volume's pool, the volume EXTENDING and
 * the server in task VOLUME_EXTENDING. A running server's host first holds
 * the guest paused (hold_volume_disk: its pending disk requests complete),
 * so it makes no request while its volume host grows the volume and serves
 * it again at the new size (grow_volume, which closes the connection under
 * the disk); then the server's host reconnects the disk, takes the new
 * size and resumes the guest (extend_volume_disk). A shut-off server has
 * nothing to hold: it opens the volume at its new size when it starts.
 *
 * The volume is IN_USE, its claim recorded, while the guest is being held,
 * and EXTENDING once its host is asked to grow it. The volume host failing
 * leaves it IN_USE at its old size, the extra claim given back (and the
 * hold ended). Once it grew, the volume is at the new size whatever
 * happens on the server's host. A timeout (or the server's deletion)
 * keeps the larger size claimed if its host was asked to grow it (it may
 * have), else gives the claim back; the volume IN_USE with the fault, a
 * hold ended.
 */
import { status } from "@grpc/grpc-js";
import type { Instance, Principal } from "../../domain/types.js";
import type { Volume, VolumeAttachment } from "../../domain/volume.js";
import { volumeTarget } from "../../domain/volume.js";
import { GIB } from "../../domain/volume-ops.js";
import { ApiError, failedPrecondition, invalidArgument, notFound } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext, Tx } from "../context.js";
import type { ActionRules, ResultContext, ResultRules, TimeoutRules } from "../flow.js";
import { settleExtendClaim } from "../volumes/extend.js";
import { endWith, ofRunningAction, requestIdOf, volumeFor } from "./volumes.js";

export const actions = {
  // Not while paused: the hypervisor takes the new size by reconnecting, which a paused guest's disk does not do.
  extend_volume: { from: ["ACTIVE", "STOPPED"], task: "VOLUME_EXTENDING" },
} as const satisfies ActionRules<"extend_volume">;

/** ExtendVolume of a volume attached to server `uuid`. */
export function extendAttachedVolume(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, volumeId: string, newSizeGb: number): Promise<Accepted> {
  const request = { volume_id: volumeId, new_size_gb: newSizeGb };
  return act(ctx, who, uuid, requestId, "extend_volume", actions.extend_volume, request, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const a = (await tx.store.attachmentsOf(inst.uuid)).find((x) => x.volumeId === volumeId);
    if (!a) throw notFound("volume_attachment", volumeId);
    const v = await volumeFor(tx, inst, volumeId, "IN_USE", "extend");
    if (newSizeGb <= v.sizeGb) throw invalidArgument("new_size_gb", `must be larger than the volume's ${v.sizeGb} GiB`);
    await tx.store.checkQuota(v.projectId, { gigabytes: newSizeGb - v.sizeGb }, { fields: { gigabytes: "new_size_gb" } });
    const extra = (newSizeGb - v.sizeGb) * GIB;
    if (!(await tx.store.claimPoolBytes(v.host, v.pool, extra, ctx.volumeOversubscriptionRatio))) {
      throw new ApiError(status.RESOURCE_EXHAUSTED, `the volume's pool has no room for ${newSizeGb - v.sizeGb} more GiB`, {
        reason: "NO_VALID_POOL",
        metadata: { new_size_gb: String(newSizeGb) },
      });
    }
    // While the guest is being held the volume stays IN_USE, the claim recorded: EXTENDING once its host is asked to grow it.
    await tx.store.updateVolume(v.id, { status: held(inst) ? "IN_USE" : "EXTENDING", claimedGb: newSizeGb, fault: null });
    const busy = await tx.update(inst.uuid, tx.task("VOLUME_EXTENDING"));
    if (held(busy)) {
      await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "hold_volume_disk", attachmentId: a.id } });
    } else {
      await tx.dispatch({ instance: busy, host: v.host, actionId, requestId, volume: volumeTarget(v), args: grow(newSizeGb) });
    }
    return { instance: busy };
  });
}

/**
 * The server's attachment whose volume is being grown (its extend claim
 * recorded; one at a time: the server's task), with that volume locked.
 */
export async function extending(r: { store: Tx["store"]; inst: Instance }): Promise<{ a: VolumeAttachment; v: Volume } | null> {
  for (const a of await r.store.attachmentsOf(r.inst.uuid)) {
    const v = await r.store.getVolume(a.volumeId, { lock: true });
    // Held: IN_USE with the claim; asked to grow: EXTENDING (the claim folded into its size once grown).
    if (v && (v.status === "EXTENDING" || (v.status === "IN_USE" && v.claimedGb !== null))) return { a, v };
  }
  return null;
}

/** Whether the server's guest is held paused while its volume grows (it runs). */
const held = (inst: Instance) => inst.vmState === "ACTIVE";
const grow = (sizeGb: number) => ({ kind: "grow_volume", sizeBytes: sizeGb * GIB }) as const;

/** The server's host reconnects the disk at `sizeGb` and ends the hold (cleanup: whenever it gets it). */
export async function release(tx: Tx, inst: Instance, a: VolumeAttachment, sizeGb: number, actionId: number): Promise<void> {
  if (!inst.host) return;
  const requestId = await requestIdOf(tx, actionId, `extend-${a.id}`);
  await tx.dispatch({ instance: inst, host: inst.host, actionId, requestId, args: { kind: "extend_volume_disk", attachmentId: a.id, sizeBytes: sizeGb * GIB } });
}

/** The attachment and volume a step's result is about: null when the result is of no running action (nothing to do) or the volume is no longer being grown (the task ends, the defect named). */
async function stepOf(r: ResultContext): Promise<{ a: VolumeAttachment; v: Volume } | null> {
  if (!(await ofRunningAction(r))) return null;
  const found = await extending(r);
  if (!found) await endWith(r, "ATTACHMENT_GONE", `the volume ${r.op.kind} was growing is no longer extending`);
  return found;
}

/** The hold or the grow failed: nothing grew; the extra claim goes back, the volume IN_USE with the fault, a hold ends. */
async function giveUp(r: ResultContext, a: VolumeAttachment, v: Volume): Promise<void> {
  await r.store.releasePoolBytes(v.host, v.pool, ((v.claimedGb ?? v.sizeGb) - v.sizeGb) * GIB);
  await r.store.updateVolume(v.id, { status: "IN_USE", claimedGb: null, fault: r.fault() });
  if (held(r.inst)) await release(r.tx, r.inst, a, v.sizeGb, r.op.actionId);
  await r.fail({});
}

export const results = {
  hold_volume_disk: {
    tasks: ["VOLUME_EXTENDING"],
    apply: async (r) => {
      const found = await stepOf(r);
      if (!found) return;
      const { a, v } = found;
      // Whatever the hold did ends too.
      if (r.error) return giveUp(r, a, v);
      await r.store.updateVolume(v.id, { status: "EXTENDING" });
      const requestId = await requestIdOf(r.tx, r.op.actionId, `extend-${a.id}`);
      await r.dispatch(v.host, grow(v.claimedGb ?? v.sizeGb), r.inst, requestId, volumeTarget(v));
    },
  },
  grow_volume: {
    tasks: ["VOLUME_EXTENDING"],
    apply: async (r) => {
      const found = await stepOf(r);
      if (!found) return;
      const { a, v } = found;
      if (r.error) return giveUp(r, a, v);
      const size = v.claimedGb ?? v.sizeGb;
      // Grown: the volume is at its new size from now on, whatever the server's host does with it.
      await r.store.updateVolume(v.id, { sizeGb: size, claimedGb: null });
      const requestId = await requestIdOf(r.tx, r.op.actionId, `extend-${a.id}`);
      await r.dispatch(r.inst.host!, { kind: "extend_volume_disk", attachmentId: a.id, sizeBytes: size * GIB }, r.inst, requestId);
    },
  },
  extend_volume_disk: {
    tasks: ["VOLUME_EXTENDING"],
    apply: async (r) => {
      const found = await stepOf(r);
      if (!found) return;
      await r.store.updateVolume(found.v.id, { status: "IN_USE", fault: r.error ? r.fault() : null });
      return r.error ? r.fail({}) : r.succeed({});
    },
  },
} as const satisfies ResultRules<"hold_volume_disk" | "grow_volume" | "extend_volume_disk">;

export const timeouts = {
  VOLUME_EXTENDING: {
    outcome: "the volume is IN_USE, at the size asked once its volume host was asked to grow it (it may have), else at its old size; stop and start the server for the guest to see a new size",
    reap: async (t) => {
      const found = await extending(t);
      if (found) {
        const settled = await settleExtendClaim(t.tx.conn, found.v);
        await t.store.updateVolume(found.v.id, { status: "IN_USE", ...settled, fault: t.fault });
        const size = settled.sizeGb ?? found.v.sizeGb;
        if (held(t.inst) && t.actionId !== null) await release(t.tx, t.inst, found.a, size, t.actionId);
      }
      await t.end();
    },
  },
} as const satisfies TimeoutRules<"VOLUME_EXTENDING">;
