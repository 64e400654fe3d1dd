/**
 * Images of a server: a snapshot into a new private image (queued until the
 * host stored it), and shelve / unshelve. Shelve snapshots the server,
 * removes it from its host and releases the capacity (offloaded at once);
 * unshelve waits for placement, and the build flow spawns the server from
 * its shelved image on the host placement chose. Attached volumes stay
 * attached (IN_USE) while it is offloaded, their exports ended; the build
 * exports them to the new host. A server booted from a volume is shelved
 * without a snapshot (its disk is the volume) and unshelved from it.
 */
import { refuseBootedFromVolume } from "./boot-volume.js";
import { endExports } from "./volume-moves.js";
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Instance, Principal } from "../../domain/types.js";
import { failedPrecondition } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext } from "../context.js";
import type { TxStore } from "../tx-store.js";
import type { ActionRules, ResultRules, TimeoutContext, TimeoutRules } from "../flow.js";

export const actions = {
  create_image: { from: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"], task: "IMAGE_SNAPSHOT" },
  shelve: { from: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED"], task: "SHELVING" },
  unshelve: { from: ["SHELVED_OFFLOADED"], task: "UNSHELVING", scheduled: true },
} as const satisfies ActionRules<"create_image" | "shelve" | "unshelve">;

/** Registers the image a snapshot will fill (queued), private to the server's project. */
async function queueImage(store: TxStore, inst: Instance, name: string, properties: Record<string, string>): Promise<string> {
  const id = randomUUID();
  const base = await store.getImage(inst.imageId, undefined);
  await store.insertImage({
    id,
    name,
    projectId: inst.projectId,
    status: "queued",
    visibility: "private",
    diskFormat: base?.diskFormat || "qcow2",
    containerFormat: "bare",
    sizeBytes: 0,
    checksum: "",
    minDiskGb: inst.flavor.diskGb,
    minRamMb: base?.minRamMb ?? 0,
    properties: { ...properties, instance_uuid: inst.uuid, base_image_ref: inst.imageId },
  });
  return id;
}

/** Snapshot into a new private image (queued until the host stored it). */
export function createImage(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, name: string, metadata: Record<string, string>): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "create_image", actions.create_image, { name, metadata }, async (tx, inst, actionId) => {
    refuseBootedFromVolume(inst, "make an image of");
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const imageId = await queueImage(tx.store, inst, name, { ...metadata, image_type: "snapshot" });
    await tx.store.setActionImage(actionId, imageId);
    const busy = await tx.update(uuid, tx.task("IMAGE_SNAPSHOT"));
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args: { kind: "snapshot", imageId, imageName: name } });
    return { instance: busy, imageId };
  });
}

/** Shelve: snapshot (none of a volume-booted server), remove from the host, release the capacity (offloaded at once). */
export function shelve(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "shelve", actions.shelve, {}, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const imageName = `${inst.name}-shelved`.slice(0, 255);
    const imageId = inst.bootsFromVolume ? "" : await queueImage(tx.store, inst, imageName, { image_type: "shelved" });
    if (imageId) await tx.store.setActionImage(actionId, imageId);
    const busy = await tx.update(uuid, { ...tx.task("SHELVING"), shelvedImageId: imageId || null });
    const args = { kind: "shelve", imageId, imageName, timeoutSeconds: ctx.powerOffTimeoutSeconds } as const;
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args });
    return { instance: busy };
  });
}

/** Unshelve: placement chooses a host, which spawns the server from its shelved image (the build flow). */
export function unshelve(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "unshelve", actions.unshelve, {}, async (tx, inst) => {
    // Offloaded, it held no cores or RAM: it takes them again.
    await tx.store.checkQuota(inst.projectId, { cores: inst.flavor.vcpus, ram: inst.flavor.ramMb });
    return { instance: await tx.update(uuid, { ...tx.task("UNSHELVING"), attempt: 0, triedHosts: [] }) };
  });
}

export const results = {
  /** A snapshot was stored: the queued image is active; the server is as it was. */
  snapshot: {
    tasks: ["IMAGE_SNAPSHOT", "IMAGE_UPLOADING"],
    steps: ["IMAGE_SNAPSHOT", "IMAGE_UPLOADING"],
    apply: async (r) => {
      const imageId = (await r.store.getActionById(r.op.actionId))?.imageId ?? null;
      const stored = r.error ? null : r.outcome.snapshot;
      if (!stored) {
        if (imageId) await r.store.deleteImage(imageId);
        await r.update({ taskState: null, powerState: r.power });
        const lost = { code: status.UNKNOWN, reason: "SNAPSHOT_LOST", message: `the snapshot on ${r.op.host} reported no image data` };
        await r.store.finishAction(r.op.actionId, { error: r.error ? r.opError() : lost });
        return;
      }
      if (imageId) await r.store.activateImage(imageId, stored);
      await r.succeed({ powerState: r.power });
    },
  },
  /** Shelved: the snapshot is stored, the server is gone from its host and its capacity released. */
  shelve: {
    tasks: ["SHELVING", "SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"],
    steps: ["SHELVING", "SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"],
    apply: async (r) => {
      const { inst, outcome: o } = r;
      if (r.error) {
        if (inst.shelvedImageId) await r.store.deleteImage(inst.shelvedImageId);
        return r.fail({ powerState: r.power, shelvedImageId: null });
      }
      if (inst.shelvedImageId) {
        if (o.snapshot) await r.store.activateImage(inst.shelvedImageId, o.snapshot);
        // The host lost track of what it stored (a crash mid-shelve): without
        // data the image cannot be trusted; unshelve falls back to the base image.
        else await r.store.deleteImage(inst.shelvedImageId);
      }
      await r.store.releaseAllocations(inst.uuid);
      // Its volumes stay attached, exported to no host until it is unshelved.
      await endExports(r.tx, inst, r.op.actionId, (await r.store.getActionById(r.op.actionId))?.requestId ?? inst.requestId);
      await r.succeed({ vmState: "SHELVED_OFFLOADED", host: null, powerState: "NOSTATE", ...(o.snapshot ? {} : { shelvedImageId: null }) });
    },
  },
} as const satisfies ResultRules<"snapshot" | "shelve">;

/** The snapshot is abandoned and its image deleted; the server is unchanged. */
async function abandonSnapshot(t: TimeoutContext): Promise<void> {
  const image = t.actionId !== null ? (await t.store.getActionById(t.actionId))?.imageId : null;
  if (image) await t.store.deleteImage(image);
  await t.end();
}

/** The shelve is abandoned with its image; the server keeps its last known state. */
async function abandonShelve(t: TimeoutContext): Promise<void> {
  if (t.inst.shelvedImageId) await t.store.deleteImage(t.inst.shelvedImageId);
  await t.end({ shelvedImageId: null });
}

const snapshotTimeout = { outcome: "the snapshot was abandoned and its image deleted; the server is unchanged", reap: abandonSnapshot };
const shelveTimeout = { outcome: "the shelve was abandoned; the server keeps its last known state", reap: abandonShelve };

export const timeouts = {
  IMAGE_SNAPSHOT: snapshotTimeout,
  IMAGE_UPLOADING: snapshotTimeout,
  SHELVING: shelveTimeout,
  SHELVING_IMAGE_UPLOADING: shelveTimeout,
  SHELVING_OFFLOADING: shelveTimeout,
  UNSHELVING: { outcome: "the server stays shelved", reap: (t) => t.end() },
} as const satisfies TimeoutRules<"IMAGE_SNAPSHOT" | "IMAGE_UPLOADING" | "SHELVING" | "SHELVING_IMAGE_UPLOADING" | "SHELVING_OFFLOADING" | "UNSHELVING">;
