/**
 * Volume attachments (Nova's os-volume_attachments): attach exports the
 * volume from its volume host to the server's host only, then that host
 * hot-plugs it; detach unplugs it, then the export ends. One attach or
 * detach runs on a server at a time (its task), so the server's attachment
 * in "attaching" or "detaching" is the one its current action is about.
 * A server's deletion ends its attachments (releaseVolumes).
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Instance, Principal } from "../../domain/types.js";
import type { Volume, VolumeAttachment } from "../../domain/volume.js";
import { ROOT_DEVICE, volumeTarget } from "../../domain/volume.js";
import { failedPrecondition, notFound } from "../../errors.js";
import { isDuplicateKey } from "../../store/db.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext, Tx } from "../context.js";
import type { ActionRules, ResultContext, ResultRules, TimeoutRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { deleteWithServer } from "../volumes/delete.js";
import { settleExtendClaim } from "../volumes/extend.js";

/** As interfaces: while the guest runs, is paused or is shut off. */
const FROM = ["ACTIVE", "PAUSED", "STOPPED"] as const;

export const actions = {
  attach_volume: { from: FROM, task: "VOLUME_ATTACHING" },
  detach_volume: { from: FROM, task: "VOLUME_DETACHING" },
} as const satisfies ActionRules<"attach_volume" | "detach_volume">;

/** A volume of the server's project, locked, in `status`; otherwise NOT_FOUND or FAILED_PRECONDITION naming its status. */
export async function volumeFor(tx: Tx, inst: Instance, volumeId: string, status: Volume["status"], what: string): Promise<Volume> {
  const v = await tx.store.getVolume(volumeId, { lock: true });
  if (!v || v.status === "DELETED" || v.projectId !== inst.projectId) throw notFound("volume", volumeId);
  if (v.status !== status) {
    throw failedPrecondition(`cannot ${what} volume ${volumeId} while it is ${v.status}; it must be ${status}`, "WRONG_STATUS", { status: v.status });
  }
  return v;
}

export interface AttachVolumeRequest {
  readonly volumeId: string;
  /** "" for the first free device. */
  readonly device: string;
  readonly deleteOnTermination: boolean;
}

/** AttachVolume; the attachment's id, null for a repeated request (the caller looks it up). */
export async function attachVolume(
  ctx: ConductorContext,
  who: Principal,
  uuid: string,
  requestId: string,
  req: AttachVolumeRequest,
): Promise<Accepted & { attachmentId: string | null }> {
  const request = { volume_id: req.volumeId, device: req.device, delete_on_termination: req.deleteOnTermination };
  let attachmentId: string | null = null;
  const accepted = await act(ctx, who, uuid, requestId, "attach_volume", actions.attach_volume, request, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const v = await volumeFor(tx, inst, req.volumeId, "AVAILABLE", "attach");
    const taken = (await tx.store.attachmentsOf(inst.uuid)).find((a) => req.device && a.device === req.device);
    if (taken) throw failedPrecondition(`device ${req.device} of server ${uuid} holds volume ${taken.volumeId}`, "DEVICE_IN_USE", { device: req.device });
    attachmentId = randomUUID();
    try {
      await tx.store.insertAttachment({ id: attachmentId, volumeId: v.id, instanceUuid: inst.uuid, computeHost: inst.host, device: req.device, deleteOnTermination: req.deleteOnTermination });
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      throw failedPrecondition(`volume ${v.id} still has an attachment recorded`, "VOLUME_ATTACHED");
    }
    await tx.store.updateVolume(v.id, { status: "ATTACHING" });
    const busy = await tx.update(inst.uuid, tx.task("VOLUME_ATTACHING"));
    await tx.dispatch({ instance: busy, host: v.host, actionId, requestId, volume: volumeTarget(v), args: { kind: "export_volume", attachmentId, client: inst.host } });
    return { instance: busy };
  });
  return { ...accepted, attachmentId };
}

export function detachVolume(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, volumeId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "detach_volume", actions.detach_volume, { volume_id: volumeId }, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const a = (await tx.store.attachmentsOf(inst.uuid)).find((x) => x.volumeId === volumeId);
    if (!a) throw notFound("volume_attachment", volumeId);
    if (a.device === ROOT_DEVICE) throw failedPrecondition(`volume ${volumeId} is the root disk of server ${uuid}; it goes with the server`, "ROOT_VOLUME");
    await volumeFor(tx, inst, volumeId, "IN_USE", "detach");
    await tx.store.updateAttachment(a.id, { state: "detaching" });
    await tx.store.updateVolume(volumeId, { status: "DETACHING" });
    const busy = await tx.update(inst.uuid, tx.task("VOLUME_DETACHING"));
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "detach_volume", attachmentId: a.id } });
    return { instance: busy };
  });
}

/** The server's attachment in `state` (the one its running attach or detach is about). */
async function current(r: { store: Tx["store"]; inst: Instance }, state: VolumeAttachment["state"]): Promise<VolumeAttachment | null> {
  return (await r.store.attachmentsOf(r.inst.uuid)).find((a) => a.state === state) ?? null;
}

/**
 * Whether a result is of the server's running action: a cleanup op of an
 * earlier attach (an unexport after it failed) may answer during a later
 * attach or detach, and must not move it.
 */
export async function ofRunningAction(r: ResultContext): Promise<boolean> {
  return (await r.store.runningAction(r.inst.uuid))?.id === r.op.actionId;
}

/**
 * A step's result cannot go on (what it was for is no longer recorded, or
 * a host answered success without what the step needs): a defect made
 * visible, so the task ends with a fault of the controller's naming it
 * rather than as a host's failure.
 */
export async function endWith(r: ResultContext, code: string, message: string): Promise<void> {
  const fault = { code, message, details: { op: r.op.kind, host: r.op.host }, createdAt: new Date().toISOString() };
  r.tx.afterCommit(() => r.tx.ctx.log.error({ server_id: r.inst.uuid, op_id: r.op.opId, request_id: r.op.requestId, op: r.op.kind }, message));
  await r.update({ taskState: null, fault });
  await r.store.finishAction(r.op.actionId, { error: operationErrorOfFault(fault, status.UNKNOWN) });
}

const attachmentGone = (r: ResultContext) => endWith(r, "ATTACHMENT_GONE", `the attachment ${r.op.kind} was for is no longer recorded`);

/** The request id ops of an action carry (a synthesized one when the action is unknown). */
export async function requestIdOf(tx: Tx, actionId: number | null, fallback: string): Promise<string> {
  return (actionId !== null ? (await tx.store.getActionById(actionId))?.requestId : undefined) ?? fallback;
}

/**
 * Ends export `exportId` of an attachment's volume on its volume host
 * (cleanup: whenever the host gets it); false when the volume is gone.
 */
export async function unexport(
  tx: Tx,
  inst: Instance,
  a: Pick<VolumeAttachment, "volumeId" | "exportId">,
  actionId: number,
  requestId: string,
): Promise<boolean> {
  const v = await tx.store.getVolume(a.volumeId);
  if (!v || v.status === "DELETED") return false;
  await tx.dispatch({ instance: inst, host: v.host, actionId, requestId, volume: volumeTarget(v), args: { kind: "unexport_volume", attachmentId: a.exportId } });
  return true;
}

/**
 * The attachment goes and its volume is AVAILABLE (its export ended, or
 * being ended). One caught growing (its server deleted meanwhile) has its
 * extend claim settled (settleExtendClaim); one still being made for a
 * server to boot from stays CREATING (its create's result makes it
 * AVAILABLE, or ERROR).
 */
export async function free(tx: Tx, a: VolumeAttachment): Promise<void> {
  await tx.store.deleteAttachment(a.id);
  const v = await tx.store.getVolume(a.volumeId, { lock: true });
  if (v?.status === "CREATING") return;
  const settled = v ? await settleExtendClaim(tx.conn, v) : {};
  await tx.store.updateVolume(a.volumeId, { status: "AVAILABLE", ...settled });
}

/** A detach that did not unplug: the attachment is attached again, its volume IN_USE. */
export async function reattach(store: Tx["store"], a: VolumeAttachment): Promise<void> {
  await store.updateAttachment(a.id, { state: "attached" });
  await store.updateVolume(a.volumeId, { status: "IN_USE" });
}

/**
 * The attach failed or timed out: the disk is unplugged if the server's
 * host was told to plug it, the export ends, the attachment goes, the
 * volume is AVAILABLE (detach and unexport are cleanup: they run whenever
 * their hosts get them).
 */
export async function undoAttach(tx: Tx, inst: Instance, a: VolumeAttachment, actionId: number): Promise<void> {
  const requestId = await requestIdOf(tx, actionId, `undo-${a.id}`);
  if (a.export && inst.host) await tx.dispatch({ instance: inst, host: inst.host, actionId, requestId, args: { kind: "detach_volume", attachmentId: a.id } });
  await unexport(tx, inst, a, actionId, requestId);
  await free(tx, a);
}

export const results = {
  export_volume: {
    tasks: ["VOLUME_ATTACHING"],
    apply: async (r) => {
      if (!(await ofRunningAction(r))) return;
      const a = await current(r, "attaching");
      if (!a) return attachmentGone(r);
      const exp = r.outcome.volume?.export;
      if (r.error || !exp) {
        await free(r.tx, a);
        return r.error ? r.fail({}) : endWith(r, "NO_EXPORT", `volume host ${r.op.host} answered export_volume without an export`);
      }
      await r.store.updateAttachment(a.id, { export: exp });
      const requestId = await requestIdOf(r.tx, r.op.actionId, `attach-${a.id}`);
      await r.dispatch(r.inst.host!, { kind: "attach_volume", attachmentId: a.id, volumeId: a.volumeId, export: exp, device: a.device }, r.inst, requestId);
    },
  },
  attach_volume: {
    tasks: ["VOLUME_ATTACHING"],
    apply: async (r) => {
      if (!(await ofRunningAction(r))) return;
      const a = await current(r, "attaching");
      if (!a) return attachmentGone(r);
      if (r.error) {
        // Not plugged: nothing to unplug, only the export to end.
        await undoAttach(r.tx, r.inst, { ...a, export: null }, r.op.actionId);
        return r.fail({});
      }
      await r.store.updateAttachment(a.id, { state: "attached", device: r.outcome.volume?.device || a.device });
      await r.store.updateVolume(a.volumeId, { status: "IN_USE", fault: null });
      return r.succeed({});
    },
  },
  detach_volume: {
    tasks: ["VOLUME_DETACHING"],
    apply: async (r) => {
      if (!(await ofRunningAction(r))) return;
      const a = await current(r, "detaching");
      if (!a) return attachmentGone(r);
      if (r.error) {
        // Still plugged: it stays attached.
        await reattach(r.store, a);
        return r.fail({});
      }
      // Unplugged: what is left is the export.
      const requestId = await requestIdOf(r.tx, r.op.actionId, `detach-${a.id}`);
      if (!(await unexport(r.tx, r.inst, a, r.op.actionId, requestId))) return attachmentGone(r);
      await r.store.updateAttachment(a.id, { state: "detached" });
    },
  },
  unexport_volume: {
    // Only a detach waits for it; after a failed attach or a delete it is cleanup.
    tasks: ["VOLUME_DETACHING"],
    apply: async (r) => {
      if (!(await ofRunningAction(r))) return;
      const a = await current(r, "detached");
      if (!a) return attachmentGone(r);
      if (r.error) return r.fail({});
      await free(r.tx, a);
      return r.succeed({});
    },
  },
} as const satisfies ResultRules<"export_volume" | "attach_volume" | "detach_volume" | "unexport_volume">;

export const timeouts = {
  VOLUME_ATTACHING: {
    outcome: "the volume is AVAILABLE again: its export is ended and the disk unplugged if it was plugged; attach it again",
    reap: async (t) => {
      const a = await current(t, "attaching");
      if (a) await undoAttach(t.tx, t.inst, a, t.actionId ?? (await t.store.runningAction(t.inst.uuid))?.id ?? 0);
      await t.end();
    },
  },
  VOLUME_DETACHING: {
    outcome: "a volume still plugged stays attached (IN_USE): detach it again; one already unplugged is AVAILABLE",
    reap: async (t) => {
      const plugged = await current(t, "detaching");
      if (plugged) await reattach(t.store, plugged);
      // Unplugged, only its export's end unconfirmed: detached (the unexport stays queued).
      const unplugged = await current(t, "detached");
      if (unplugged) await free(t.tx, unplugged);
      await t.end();
    },
  },
} as const satisfies TimeoutRules<"VOLUME_ATTACHING" | "VOLUME_DETACHING">;

/**
 * A deleted server's volumes: each export ends and the volume is AVAILABLE
 * again, or, attached with delete_on_termination, the volume is deleted
 * (its host ends the export with it).
 */
export async function releaseVolumes(tx: Tx, inst: Instance, actionId: number | null): Promise<void> {
  const requestId = await requestIdOf(tx, actionId, `release-${inst.uuid}`);
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    // An export made for a live migration's target ends too (a delete with the volume ends all its exports).
    if (a.move) await unexport(tx, inst, { volumeId: a.volumeId, exportId: a.move.exportId }, actionId ?? 0, requestId);
    if (a.deleteOnTermination && (await deleteWithServer(tx.conn, tx.ctx, a.volumeId, inst.uuid))) {
      await tx.store.deleteAttachment(a.id);
      continue;
    }
    await unexport(tx, inst, a, actionId ?? 0, requestId);
    await free(tx, a);
  }
}
