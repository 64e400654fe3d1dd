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
import type { Flavor, Instance, Principal } from "../../domain/types.js";
import type { VolumeAttachment } from "../../domain/volume.js";
import { ROOT_DEVICE } from "../../domain/volume.js";
import { failedPrecondition, invalidArgument, notFound } from "../../errors.js";
import type { Tx } from "../context.js";
import { exportForMove } from "./volume-moves.js";

/** The root disk a server is created with. */
export interface RootVolumeRequest {
  readonly volumeId: string;
  readonly deleteOnTermination: boolean;
}

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
 * Starts a build with volumes on `host` — a volume-booted one, or an
 * unshelve of a server with volumes attached: each volume is exported there
 * (volume-moves.ts; the spawn follows the exports, build.ts); false when it
 * has none.
 */
export async function exportVolumes(tx: Tx, inst: Instance, host: string, actionId: number, requestId: string): Promise<boolean> {
  const root = await rootAttachment(tx.store, inst);
  const v = root ? await tx.store.getVolume(root.volumeId) : null;
  if (root && (!v || v.status === "DELETED")) throw new Error(`the root volume ${root.volumeId} of server ${inst.uuid} is gone`);
  return (await exportForMove(tx, inst, host, actionId, requestId)) > 0;
}

/** The spawn succeeded: the root volume is IN_USE. */
export async function rootInUse(store: Tx["store"], inst: Instance): Promise<void> {
  const a = await rootAttachment(store, inst);
  if (!a) return;
  await store.updateAttachment(a.id, { state: "attached" });
  await store.updateVolume(a.volumeId, { status: "IN_USE", fault: null });
}
