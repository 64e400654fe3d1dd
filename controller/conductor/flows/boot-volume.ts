/**
 * Booting from a volume (Nova's block device mapping with source and
 * destination "volume", boot index 0): CreateServer reserves the volume —
 * ATTACHING, attached as vda to the new server — and the server shows the
 * volume's source image (whose kernel, ramdisk and command line a direct
 * kernel boot still takes). Once placement chose a host, the volume's host
 * exports it to that host (`export_volume` while SPAWNING, build.ts), then
 * the host spawns with its root disk opening that export; the spawn's
 * success makes the volume IN_USE. A spawn that fails and is tried
 * elsewhere ends that export first. A server that boots from a volume
 * cannot be imaged yet (BOOTED_FROM_VOLUME); a rebuild writes the image
 * over its root volume (volume-rebuild.ts); it moves (resize,
 * cold and live migration, evacuation, shelve) with its volumes.
 */
import { randomUUID } from "node:crypto";
import type { Fault, Flavor, Image, Instance, OperationError, Principal } from "../../domain/types.js";
import { INTERNAL_REQUEST_PREFIX } from "../../domain/types.js";
import type { VolumeAttachment } from "../../domain/volume.js";
import { ROOT_DEVICE } from "../../domain/volume.js";
import { failedPrecondition, invalidArgument, notFound } from "../../errors.js";
import type { PoolConnection } from "../../store/db.js";
import { attachmentsOfVolumes } from "../../store/volume-attachments.js";
import type { ConductorContext } from "../context.js";
import { Tx } from "../context.js";
import type { TimeoutRules } from "../flow.js";
import { makeVolume } from "../volumes/make.js";
import { exportForMove } from "./volume-moves.js";

/** The root disk a server is created with: an existing volume, or a new one made from an image for it (min_ram checked by the caller). */
export type RootVolumeRequest =
  | { readonly volumeId: string; readonly deleteOnTermination: boolean }
  | { readonly image: Image; readonly sizeGb: number; readonly volumeType: string; readonly deleteOnTermination: boolean };

/** A new server's root volume, reserved: the image the server shows, and whether it waits for the volume to be made (BLOCK_DEVICE_MAPPING). */
export interface ReservedRoot {
  readonly imageId: string;
  readonly waits: boolean;
}

/**
 * Reserves the root volume for new server `uuid` (named `name`, asking for
 * zone `zone`, "" for any) in its create transaction, before the server
 * row: an existing volume is locked; the image the server shows is the
 * volume's source image, or none. The source image's min_ram holds for
 * the flavor and its min_disk for the volume, as for a server built from
 * the image. A volume to be made from an image is made (makeRootVolume).
 */
export async function reserveRootVolume(tx: Tx, who: Principal, server: { uuid: string; name: string; zone: string }, root: RootVolumeRequest, flavor: Flavor): Promise<ReservedRoot> {
  const { uuid } = server;
  if ("image" in root) return makeRootVolume(tx, who, server, root);
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
  return { imageId: v.sourceImageId ?? "", waits: false };
}

/**
 * Makes the root volume of new server `uuid` from an image (Nova's block
 * device mapping from an image to a volume): a volume of the caller's,
 * named after the server, placed in the server's zone when it names one,
 * CREATING and attached to the server as vda from the start. The server
 * waits in BLOCK_DEVICE_MAPPING until the volume's host made it
 * (`rootVolumeMade`).
 */
async function makeRootVolume(tx: Tx, who: Principal, server: { uuid: string; name: string; zone: string }, root: Extract<RootVolumeRequest, { image: Image }>): Promise<ReservedRoot> {
  const { image, sizeGb, volumeType, deleteOnTermination } = root;
  const made = {
    requestId: `${INTERNAL_REQUEST_PREFIX}boot-${server.uuid}`,
    name: server.name,
    description: `root disk of server ${server.uuid}`,
    sizeGb,
    volumeType,
    zone: server.zone,
    image,
    snapshot: null,
  };
  const request = { image_id: image.id, size_gb: sizeGb, volume_type: volumeType, server_id: server.uuid };
  const { volume } = await makeVolume(tx.conn, tx.ctx, who, made, request, { volumeType: "block_device_mappings[0].volume_type", size: "block_device_mappings[0].volume_size_gb" });
  await tx.store.insertAttachment({ id: randomUUID(), volumeId: volume.id, instanceUuid: server.uuid, computeHost: "", device: ROOT_DEVICE, deleteOnTermination });
  return { imageId: image.id, waits: true };
}

/**
 * The volume made for a new server to boot from is done (`failure` null)
 * or failed: the server waiting for it (BLOCK_DEVICE_MAPPING) is placed
 * next, or fails with the volume's fault. The status the made volume
 * takes: ATTACHING while a server holds it, else AVAILABLE (its server was
 * deleted meanwhile).
 */
export async function rootVolumeMade(conn: PoolConnection, ctx: ConductorContext, volumeId: string, failure: { fault: Fault; error: OperationError } | null): Promise<"ATTACHING" | "AVAILABLE"> {
  const a = (await attachmentsOfVolumes(conn, [volumeId])).get(volumeId)?.find((x) => x.device === ROOT_DEVICE);
  if (!a) return "AVAILABLE";
  const tx = new Tx(conn, ctx);
  const inst = await tx.store.getInstance(a.instanceUuid, { lock: true });
  if (inst?.taskState === "BLOCK_DEVICE_MAPPING") {
    const action = await tx.store.runningAction(inst.uuid);
    if (failure) {
      await tx.update(inst.uuid, { vmState: "ERROR", taskState: null, fault: failure.fault });
      if (action) await tx.store.finishAction(action.id, { error: failure.error });
    } else {
      const placing = await tx.update(inst.uuid, tx.task("SCHEDULING"));
      if (action) await tx.store.setActionStep(action.id, { deadline: placing.taskDeadline, message: `its volume ${volumeId} is made; waiting for a host` });
    }
  }
  return "ATTACHING";
}

export const timeouts = {
  BLOCK_DEVICE_MAPPING: {
    outcome: "the volume it boots from was not made in time; the server is in ERROR (deleting it frees or deletes the volume)",
    reap: (t) => t.end({ vmState: "ERROR" }),
  },
} as const satisfies TimeoutRules<"BLOCK_DEVICE_MAPPING">;

/** The server's root volume attachment, if it boots from a volume. */
export async function rootAttachment(store: Tx["store"], inst: Instance): Promise<VolumeAttachment | null> {
  return (await store.attachmentsOf(inst.uuid)).find((a) => a.device === ROOT_DEVICE) ?? null;
}

/** Refuses an action a volume-booted server cannot take yet. */
export function refuseBootedFromVolume(inst: Instance, what: string): void {
  if (inst.bootsFromVolume) {
    throw failedPrecondition(`cannot ${what} server ${inst.uuid}: it boots from a volume`, "BOOTED_FROM_VOLUME");
  }
}

/**
 * Starts a build with volumes on `host` — a volume-booted one, or an
 * unshelve of a server with volumes attached: each volume is exported there
 * (volume-moves.ts; the spawn follows the exports, build.ts); false when it
 * has none.
 */
export async function exportVolumes(tx: Tx, inst: Instance, host: string, actionId: number, requestId: string): Promise<boolean> {
  if (inst.bootsFromVolume) {
    const root = await rootAttachment(tx.store, inst);
    const v = root ? await tx.store.getVolume(root.volumeId) : null;
    if (root && (!v || v.status === "DELETED")) throw new Error(`the root volume ${root.volumeId} of server ${inst.uuid} is gone`);
  }
  return (await exportForMove(tx, inst, host, actionId, requestId)) > 0;
}

/** The spawn succeeded: the root volume is IN_USE. */
export async function rootInUse(store: Tx["store"], inst: Instance): Promise<void> {
  if (!inst.bootsFromVolume) return;
  const a = await rootAttachment(store, inst);
  if (!a) return;
  await store.updateAttachment(a.id, { state: "attached" });
  await store.updateVolume(a.volumeId, { status: "IN_USE", fault: null });
}
