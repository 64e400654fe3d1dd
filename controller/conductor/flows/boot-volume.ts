/**
 * Booting from a volume (Nova's block device mapping with source and
 * destination "volume", boot index 0): CreateServer reserves the volume —
 * ATTACHING, attached as vda to the new server — and the server shows the
 * volume's source image (whose kernel, ramdisk and command line a direct
 * kernel boot still takes). Once placement chose a host, the volume's host
 * exports it to that host (`export_volume` while SPAWNING), then the host
 * spawns with its root disk opening that export; the spawn's success makes
 * the volume IN_USE. A spawn that fails and is tried elsewhere ends that
 * export first. A server that boots from a volume cannot be rebuilt or
 * imaged yet (BOOTED_FROM_VOLUME); its moves but live migration are
 * refused as for any server with volumes.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Flavor, Instance, Principal } from "../../domain/types.js";
import type { VolumeAttachment } from "../../domain/volume.js";
import { volumeTarget } from "../../domain/volume.js";
import { failedPrecondition, invalidArgument, notFound } from "../../errors.js";
import type { Tx } from "../context.js";
import type { ResultContext, ResultRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { unexport } from "./volumes.js";

/** The root disk a server is created with. */
export interface RootVolumeRequest {
  readonly volumeId: string;
  readonly deleteOnTermination: boolean;
}

/** The device a root volume is attached as. */
export const ROOT_DEVICE = "vda";

/**
 * Reserves the root volume for new server `uuid` in its create
 * transaction (before the server row: it locks the volume); the image the
 * server shows: the volume's source image, or none. The source image's
 * min_ram holds for the flavor and its min_disk for the volume, as for a
 * server built from the image.
 */
export async function reserveRootVolume(tx: Tx, who: Principal, uuid: string, root: RootVolumeRequest, flavor: Flavor): Promise<string> {
  const v = await tx.store.getVolume(root.volumeId, { lock: true });
  if (!v || v.status === "DELETED" || v.projectId !== who.projectId) throw notFound("volume", root.volumeId);
  if (v.status !== "AVAILABLE") {
    throw failedPrecondition(`cannot boot from volume ${v.id} while it is ${v.status}; it must be AVAILABLE`, "WRONG_STATUS", { status: v.status });
  }
  const image = v.sourceImageId ? await tx.store.getImage(v.sourceImageId, undefined) : null;
  if (image && flavor.ramMb < image.minRamMb) throw invalidArgument("flavor_id", `flavor RAM ${flavor.ramMb} MiB is below the volume's image's min_ram ${image.minRamMb} MiB`);
  if (image && v.sizeGb < image.minDiskGb) {
    throw invalidArgument("block_device_mappings[0].volume_id", `volume ${v.id} of ${v.sizeGb} GiB is below its image's min_disk ${image.minDiskGb} GiB`);
  }
  const id = randomUUID();
  await tx.store.insertAttachment({ id, volumeId: v.id, instanceUuid: uuid, computeHost: "", device: ROOT_DEVICE, deleteOnTermination: root.deleteOnTermination });
  await tx.store.updateVolume(v.id, { status: "ATTACHING" });
  return v.sourceImageId ?? "";
}

/** The server's root volume attachment, if it boots from a volume. */
export async function rootAttachment(store: Tx["store"], inst: Instance): Promise<VolumeAttachment | null> {
  return (await store.attachmentsOf(inst.uuid)).find((a) => a.device === ROOT_DEVICE) ?? null;
}

/** Refuses an action a volume-booted server cannot take yet. */
export async function refuseBootedFromVolume(tx: Tx, inst: Instance, what: string): Promise<void> {
  if (await rootAttachment(tx.store, inst)) {
    throw failedPrecondition(`cannot ${what} server ${inst.uuid}: it boots from a volume`, "BOOTED_FROM_VOLUME");
  }
}

/**
 * Starts a volume-booted build on `host`: its root volume is exported
 * there (the spawn follows the export); false when the server does not
 * boot from a volume.
 */
export async function exportRoot(tx: Tx, inst: Instance, host: string, actionId: number, requestId: string): Promise<boolean> {
  const a = await rootAttachment(tx.store, inst);
  if (!a) return false;
  const v = await tx.store.getVolume(a.volumeId);
  if (!v || v.status === "DELETED") throw new Error(`the root volume ${a.volumeId} of server ${inst.uuid} is gone`);
  // An export of its own for each host tried (an earlier host's may not have ended yet).
  const exportId = randomUUID();
  await tx.store.updateAttachment(a.id, { computeHost: host, export: null, exportId });
  const args = { kind: "export_volume", attachmentId: exportId, client: host } as const;
  await tx.dispatch({ instance: inst, host: v.host, actionId, requestId, volume: volumeTarget(v), args });
  return true;
}

/** A spawn on the root volume's host failed: that host's export ends (a retry exports it to the next). */
export async function dropRootExport(tx: Tx, inst: Instance, actionId: number, requestId: string): Promise<void> {
  const a = await rootAttachment(tx.store, inst);
  if (!a?.export) return;
  await unexport(tx, inst, a, actionId, requestId);
  await tx.store.updateAttachment(a.id, { export: null });
}

/** The spawn succeeded: the root volume is IN_USE. */
export async function rootInUse(store: Tx["store"], inst: Instance): Promise<void> {
  const a = await rootAttachment(store, inst);
  if (!a) return;
  await store.updateAttachment(a.id, { state: "attached" });
  await store.updateVolume(a.volumeId, { status: "IN_USE", fault: null });
}

/** Rows of op kinds other flows own, for the build's task (flows/index.ts joins them). */
export const sharedResults = {
  /** The root volume is exported to the build's host: it spawns there, its root disk opening the export. */
  export_volume: {
    tasks: ["SPAWNING"],
    apply: async (r: ResultContext) => {
      const a = await rootAttachment(r.store, r.inst);
      // Stale: of a host the build was since taken away from.
      if (!a || r.inst.host !== a.computeHost) return;
      const made = r.outcome.volume?.export;
      if (r.error || !made) {
        // The build fails (the volume stays attached to the server in ERROR; deleting it frees the volume).
        const fault = r.error
          ? r.fault()
          : { code: "NO_EXPORT", message: `volume host ${r.op.host} answered export_volume without an export`, details: { host: r.op.host }, createdAt: new Date().toISOString() };
        await r.store.releaseAllocations(r.inst.uuid);
        await r.update({ vmState: "ERROR", taskState: null, host: null, fault });
        return r.store.finishAction(r.op.actionId, { error: r.error ? r.opError() : operationErrorOfFault(fault, status.UNKNOWN) });
      }
      await r.store.updateAttachment(a.id, { export: made });
      const action = await r.store.getActionById(r.op.actionId);
      const args = { kind: "spawn", rootAttachmentId: a.id, rootExport: made } as const;
      await r.tx.dispatch({ instance: r.inst, host: r.inst.host, actionId: r.op.actionId, requestId: action?.requestId ?? r.inst.requestId, args, attempt: r.inst.attempt, imageId: r.inst.imageId });
    },
  },
} as const satisfies ResultRules<"export_volume">;
