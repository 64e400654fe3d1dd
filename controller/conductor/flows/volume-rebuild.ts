/**
 * Rebuild of a server booted from a volume (Nova's rebuild of a
 * volume-backed server, which re-images the root volume through Cinder):
 * its host stops the guest (`power_off`); the root volume's host writes the
 * image over the volume's content (`reimage_volume`: size, snapshots and
 * exports kept); its host defines the server again from the image (kernel,
 * ramdisk, command line) with its root disk and attached volumes opening
 * their exports, and starts it (`rebuild`, whose result rebuild.ts takes).
 * All under the task REBUILDING. A step that fails leaves the server in
 * ERROR, its volumes attached (rebuild it again, or delete it).
 */
import { status } from "@grpc/grpc-js";
import type { Image, Instance } from "../../domain/types.js";
import { GIB } from "../../domain/volume-ops.js";
import type { VolumeAttachment } from "../../domain/volume.js";
import { volumeTarget } from "../../domain/volume.js";
import { failedPrecondition, invalidArgument } from "../../errors.js";
import type { Step } from "../act.js";
import type { Tx } from "../context.js";
import type { ResultContext, ResultRules } from "../flow.js";
import { operationErrorOfFault } from "../flow.js";
import { rootAttachment } from "./boot-volume.js";
import { hostVolumes } from "./volume-moves.js";
import { ofRunningAction } from "./volumes.js";

/**
 * Starts the rebuild of a volume-booted server from `image` (null: the
 * image it shows, its root volume's source): the image must fit the root
 * volume and the flavor; the guest is stopped first.
 */
export async function rebuildFromVolume(tx: Tx, inst: Instance & { host: string }, root: VolumeAttachment, image: Image | null, name: string | null, o: { actionId: number; requestId: string }): Promise<Step> {
  // Its own image, when none is named, as the server's project may use it now.
  const from = image ?? (inst.imageId ? await tx.store.getImage(inst.imageId, inst.projectId) : null);
  if (!from) {
    const why = inst.imageId ? `the server's image ${inst.imageId} is gone` : "the server boots from a volume made from no image";
    throw invalidArgument("image_id", `is required: ${why}; name the image to write over its root volume`);
  }
  if (from.status !== "active") throw invalidArgument("image_id", `image ${from.id} is ${from.status}, not active`);
  if (from.diskFormat !== "qcow2" && from.diskFormat !== "raw") throw invalidArgument("image_id", `image ${from.id} is ${from.diskFormat}; a volume takes a qcow2 or raw image`);
  const v = await tx.store.getVolume(root.volumeId);
  if (!v || v.status === "DELETED") throw failedPrecondition(`the root volume ${root.volumeId} of server ${inst.uuid} is gone`, "ROOT_VOLUME_GONE", { volume_id: root.volumeId });
  const needGb = Math.max(from.minDiskGb, Math.ceil(from.sizeBytes / GIB));
  if (v.sizeGb < needGb) throw invalidArgument("image_id", `image ${from.id} needs ${needGb} GiB; the server's root volume ${v.id} has ${v.sizeGb} GiB`);
  if (inst.flavor.ramMb < from.minRamMb) throw invalidArgument("image_id", `the server's RAM ${inst.flavor.ramMb} MiB is below the image's min_ram ${from.minRamMb} MiB`);
  const busy = await tx.update(inst.uuid, { ...tx.task("REBUILDING"), imageId: from.id, ...(name ? { name } : {}) });
  await tx.dispatch({ ...o, instance: busy, host: inst.host, args: { kind: "power_off", timeoutSeconds: tx.ctx.powerOffTimeoutSeconds } });
  await tx.store.setActionStep(o.actionId, { message: "stopping the server" });
  return { instance: busy };
}

/** The request id of the action a result belongs to. */
async function requestIdOf(r: ResultContext): Promise<string> {
  return (await r.store.getActionById(r.op.actionId))?.requestId ?? r.inst.requestId;
}

export const results = {
  /** The root volume holds the image now: the server's host builds the server from it. */
  reimage_volume: {
    tasks: ["REBUILDING"],
    apply: async (r) => {
      const root = await rootAttachment(r.store, r.inst);
      // Of an earlier rebuild (one a delete interrupted): this one's steps go on without it.
      if (!root || !r.inst.host || !(await ofRunningAction(r))) return;
      if (r.error) return r.fail({ vmState: "ERROR" });
      await r.store.updateVolume(root.volumeId, { sourceImageId: r.inst.imageId });
      await r.store.setActionStep(r.op.actionId, { message: `building the server on ${r.inst.host}` });
      const args = { kind: "rebuild", recreate: false, ...(await hostVolumes(r.tx, r.inst, "export")) } as const;
      await r.dispatch(r.inst.host, args, r.inst, await requestIdOf(r));
    },
  },
} as const satisfies ResultRules<"reimage_volume">;

/** Rows of op kinds other flows own, for this flow's task (flows/index.ts joins them). */
export const sharedResults = {
  /** The guest is stopped: the root volume's host writes the image over it. */
  power_off: {
    tasks: ["REBUILDING"],
    apply: async (r) => {
      const root = await rootAttachment(r.store, r.inst);
      if (!root || !(await ofRunningAction(r))) return;
      if (r.error) return r.fail({ vmState: "ERROR", powerState: r.power });
      const v = await r.store.getVolume(root.volumeId);
      const image = await r.store.getImage(r.inst.imageId, undefined);
      if (!v || v.status === "DELETED" || !image) {
        const gone = !image ? `image ${r.inst.imageId}` : `root volume ${root.volumeId}`;
        const fault = { code: "REBUILD_SOURCE_GONE", message: `the ${gone} went away during the rebuild`, details: {}, createdAt: new Date().toISOString() };
        await r.update({ vmState: "ERROR", taskState: null, powerState: r.power, fault });
        return r.store.finishAction(r.op.actionId, { error: operationErrorOfFault(fault, status.FAILED_PRECONDITION) });
      }
      await r.update({ powerState: r.power ?? "SHUTDOWN" });
      await r.store.setActionStep(r.op.actionId, { message: `writing image ${image.id} over root volume ${v.id}` });
      const args = { kind: "reimage_volume", image: { id: image.id, name: image.name, diskFormat: image.diskFormat, checksum: image.checksum } } as const;
      await r.dispatch(v.host, args, r.inst, await requestIdOf(r), volumeTarget(v));
    },
  },
} as const satisfies ResultRules<"power_off">;
