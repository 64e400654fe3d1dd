/**
 * Attached volumes following their server to another host (what Nova's
 * pre_live_migration, finish_resize and post_live_migration do with volume
 * connections): before the target gets the server, each volume's host
 * exports it to the target too — a second export of the one volume,
 * recorded as the attachment's `move` — and the target opens those exports
 * (a volume is never copied). Once the server stays on a host, the moves'
 * exports to it become the attachments' and the others end (`settleMoves`).
 * A move that does not happen ends the target's exports (`dropMoves`).
 */
import { randomUUID } from "node:crypto";
import type { AttachedVolume, HostVolumes, MigratingVolume } from "../../domain/ops.js";
import type { Fault, Instance } from "../../domain/types.js";
import type { VolumeAttachment } from "../../domain/volume.js";
import { ROOT_DEVICE, volumeTarget } from "../../domain/volume.js";
import type { Tx } from "../context.js";
import type { ResultContext } from "../flow.js";
import { unexport } from "./volumes.js";

/** Has every attached volume of `inst` exported to `target`; the number of exports asked for. */
export async function exportForMove(tx: Tx, inst: Instance, target: string, actionId: number, requestId: string): Promise<number> {
  let asked = 0;
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    const v = await tx.store.getVolume(a.volumeId);
    if (!v || v.status === "DELETED") continue;
    // A move an earlier migration left (it timed out) ends first.
    if (a.move) await unexport(tx, inst, { volumeId: a.volumeId, exportId: a.move.exportId }, actionId, requestId);
    const exportId = randomUUID();
    const args = { kind: "export_volume", attachmentId: exportId, client: target } as const;
    const opId = await tx.dispatch({ instance: inst, host: v.host, actionId, requestId, volume: volumeTarget(v), args });
    await tx.store.updateAttachment(a.id, { move: { host: target, exportId, opId, export: null } });
    asked++;
  }
  return asked;
}

/**
 * Records the result of a move's export: "ready" once every attachment
 * has its target's export, "waiting" while some have not, "failed" when
 * this one failed, "stale" when the result is of no move recorded now.
 */
export async function moveExported(r: ResultContext): Promise<"ready" | "waiting" | "failed" | "stale"> {
  const all = await r.store.attachmentsOf(r.inst.uuid);
  const a = all.find((x) => x.move?.opId === r.op.opId);
  if (!a?.move) return "stale";
  const made = r.outcome.volume?.export;
  if (r.error || !made) return "failed";
  await r.store.updateAttachment(a.id, { move: { ...a.move, export: made } });
  return all.every((x) => x.id === a.id || !x.move || x.move.export) ? "ready" : "waiting";
}

/**
 * The fault of a move's export answered without one (`moveExported`
 * "failed" with no host error): a defect made visible, logged, so the
 * move ends with a fault of the controller's naming the volume host.
 */
export function noExportFault(r: ResultContext): Fault {
  const message = `volume host ${r.op.host} answered export_volume without an export`;
  r.tx.afterCommit(() => r.tx.ctx.log.error({ server_id: r.inst.uuid, op_id: r.op.opId, request_id: r.op.requestId }, message));
  return { code: "NO_EXPORT", message, details: { op: r.op.kind, host: r.op.host }, createdAt: new Date().toISOString() };
}

/** Whether the move is still exporting its volumes to the target (the target has not been asked to prepare). */
export async function exportingForMove(tx: Tx, inst: Instance): Promise<boolean> {
  return (await tx.store.attachmentsOf(inst.uuid)).some((a) => a.move && !a.move.export);
}

/** What the source's copy needs: each attachment with the export its target opens. */
export async function movingVolumes(tx: Tx, inst: Instance): Promise<MigratingVolume[]> {
  return (await tx.store.attachmentsOf(inst.uuid)).flatMap((a) => (a.move?.export ? [{ attachmentId: a.id, export: a.move.export }] : []));
}

/**
 * The volumes a host creating the server opens: each attachment's export
 * for the target of its move (`via` "move"), or its own export ("export").
 * The root volume (vda) of a server booted from one is apart.
 */
export async function hostVolumes(tx: Tx, inst: Instance, via: "move" | "export"): Promise<HostVolumes> {
  const exportOf = (a: VolumeAttachment) => (via === "move" ? a.move?.export : a.export) ?? null;
  const volumes: AttachedVolume[] = [];
  let rootVolume: HostVolumes = {};
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    const made = exportOf(a);
    if (!made) continue;
    if (a.device === ROOT_DEVICE) rootVolume = { rootAttachmentId: a.id, rootExport: made };
    else volumes.push({ attachmentId: a.id, device: a.device, export: made });
  }
  return { ...rootVolume, ...(volumes.length > 0 ? { volumes } : {}) };
}

/**
 * The server stays on the host it is on now (`inst.host`): a move's
 * exports to that host become the attachments' and their own (the
 * source's) end; any other move's end. When a move completes (a live
 * migration's copy done, a resize confirmed, an evacuation or a build
 * spawned there), and when one is given up midway (a confirm, revert or
 * delete that failed, an evacuation taking over a resize).
 */
export async function settleMoves(tx: Tx, inst: Instance, actionId: number, requestId: string): Promise<void> {
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    if (!a.move) continue;
    if (a.move.host === inst.host && a.move.export) {
      if (a.export) await unexport(tx, inst, a, actionId, requestId);
      await tx.store.updateAttachment(a.id, { computeHost: a.move.host, exportId: a.move.exportId, export: a.move.export, move: null });
    } else {
      await unexport(tx, inst, { volumeId: a.volumeId, exportId: a.move.exportId }, actionId, requestId);
      await tx.store.updateAttachment(a.id, { move: null });
    }
  }
}

/** The move did not happen: the exports made (or being made) for its target end. */
export async function dropMoves(tx: Tx, inst: Instance, actionId: number, requestId: string): Promise<void> {
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    if (!a.move) continue;
    await unexport(tx, inst, { volumeId: a.volumeId, exportId: a.move.exportId }, actionId, requestId);
    await tx.store.updateAttachment(a.id, { move: null });
  }
}

/**
 * The server is off any host (shelved and offloaded, or a build's spawn
 * there failed or was given up): each attachment's exports end; the
 * volumes stay attached with no host until a build exports them to its
 * next one.
 */
export async function endExports(tx: Tx, inst: Instance, actionId: number, requestId: string): Promise<void> {
  await dropMoves(tx, inst, actionId, requestId);
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    if (!a.export) continue;
    await unexport(tx, inst, a, actionId, requestId);
    await tx.store.updateAttachment(a.id, { computeHost: "", export: null });
  }
}
