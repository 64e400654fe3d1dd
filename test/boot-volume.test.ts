/**
 * Booting from a volume through the whole stack (real MariaDB, NATS,
 * controller; fake hypervisors and a fake volume host, each in its own
 * process): CreateServer with a block device mapping reserves the volume,
 * its host exports it to the host placement chose, that host boots with it
 * as vda; the server shows the volume's source image; deleting the server
 * frees the volume, or deletes it with delete_on_termination; a live
 * migration takes the root volume along; a rebuild writes the image over
 * the volume (its host stops the server, the volume host re-images it, the
 * host boots it again); images are refused;
 * bad mappings are refused naming the field.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { uploadImageFile } from "../scripts/image-files.js";
import { BlockDeviceMapping, ServerStatus, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { eventually, failure } from "./harness.js";
import { fakeVolumeHost } from "./agents.js";
import { stack } from "./stack.js";

describe("boot from volume", () => {
  const fx = stack({
    name: "boot-volume",
    controller: { serviceDownTimeSeconds: 30 },
    members: ["alice", "bob"],
    flavor: "m1.tiny",
    agents: ({ id }) => [
      { host: `bv${id}-a` },
      { host: `bv${id}-b` },
      fakeVolumeHost(`bvv${id}`),
    ],
  });
  const { alice, bob, admin, agents: hosts, settled, dir } = fx;
  const [A, B] = fx.hosts as [string, string];

  const wait = async (name: string) => (await admin.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
  /** A public raw image with bytes (volumes are made from it), registered once. */
  let imageId = "";
  const image = async (): Promise<string> => (imageId ||= await uploaded("bv-image"));
  async function uploaded(name: string, minRamMb = 0, o: { firstByte?: number; minDiskGb?: number } = {}): Promise<string> {
    const file = join(dir, `${name}.img`);
    const bytes = randomBytes(256 * 1024);
    if (o.firstByte !== undefined) bytes[0] = o.firstByte;
    await writeFile(file, bytes);
    const image = Image.fromPartial({ name, diskFormat: "raw", containerFormat: "bare", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, minRamMb, minDiskGb: o.minDiskGb ?? 0 });
    const made = (await admin.images.registerImage({ image, upload: true })).image!;
    await uploadImageFile(admin.images.raw, admin.images.metadata(), made.id, file);
    return made.id;
  }
  const volume = async (id: string) => (await alice.volumes.getVolume({ id })).volume!;
  /** A volume made from the environment's image. */
  async function bootable(name: string, from?: string): Promise<string> {
    const c = await alice.volumes.createVolume({ name, sizeGb: 1, imageId: from ?? (await image()), requestId: `create-${name}` });
    assert.equal((await wait(c.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    return c.volume!.id;
  }
  const boot = (name: string, volumeId: string, deleteOnTermination = false) =>
    alice.servers.createServer({ name, flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId, bootIndex: 0, deleteOnTermination })] });

  test("a server boots from a volume made from an image: the volume is its vda, opened through an export made for its host, and it shows the image", async () => {
    const vol = await bootable("bv-root");
    const created = (await boot("bv-1", vol)).server!;
    assert.equal((await volume(vol)).status, VolumeStatus.VOLUME_STATUS_ATTACHING, "reserved at once");
    const s = await settled(created.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(s.imageId, await image(), "the server shows the volume's source image");
    const v = await volume(vol);
    assert.deepEqual([v.status, v.attachments.map((a) => [a.serverId, a.device])], [VolumeStatus.VOLUME_STATUS_IN_USE, [[s.id, "vda"]]]);
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(
      action!.events.map((e) => e.name),
      ["schedule", "volume_export", "compute_spawn"],
    );
    const host = (await admin.servers.getServer({ id: s.id })).server!.host;
    const hv = (await admin.hypervisors()).find((h) => h.hostname === host)!;
    assert.deepEqual([hv.runningVms, hv.vcpusUsed, hv.localGbUsed], [1, 1, 0], "it takes a vCPU and no local disk on its host");
    const disks = (await hosts.domains(host))[s.id]?.volumes ?? [];
    assert.deepEqual(disks.map((d) => [d.attachmentId, d.device]), [[v.attachments[0]!.id, "vda"]], "the hypervisor boots it from the volume");

    // Its root disk is not detached; it is not imaged (yet); stopped and started it keeps its disk.
    const detach = await failure(alice.servers.detachVolume({ id: s.id, volumeId: vol }));
    assert.deepEqual([detach.code, detach.reason], [status.FAILED_PRECONDITION, "ROOT_VOLUME"]);
    assert.equal((await failure(alice.servers.createServerImage({ id: s.id, name: "snap" }))).reason, "BOOTED_FROM_VOLUME");
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    await alice.servers.startServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(((await hosts.domains(host))[s.id]?.volumes ?? []).map((d) => d.device), ["vda"]);

    // Live-migrated, the root volume goes along: the target opens it through its own export.
    const target = host === A ? B : A;
    assert.equal((await wait((await admin.servers.liveMigrateServer({ id: s.id, host: target })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const moved = ((await hosts.domains(target))[s.id]?.volumes ?? []).map((d) => [d.device, d.connection.exportName !== d.attachmentId]);
    assert.deepEqual(moved, [["vda", true]]);

    // Deleted without delete_on_termination: the volume is AVAILABLE again, and boots another server.
    await alice.servers.deleteServer({ id: s.id });
    await eventually(async () => (await volume(vol)).status === VolumeStatus.VOLUME_STATUS_AVAILABLE, { what: "the root volume freed" });
    const again = await settled((await boot("bv-2", vol, true)).server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await alice.servers.deleteServer({ id: again.id });
    await eventually(async () => (await failure(alice.volumes.getVolume({ id: vol }))).code === status.NOT_FOUND, { what: "deleted with its server" });
  });

  test("a server booted from a volume is rebuilt from another image: its host stops it, the volume host writes the image over the volume, it boots from it again with its other volume; the image must fit", async () => {
    const vol = await bootable("bv-rebuilt");
    const s = await settled((await boot("bv-rebuild", vol)).server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const data = await alice.volumes.createVolume({ name: "bv-data", sizeGb: 1, requestId: "create-bv-data" });
    assert.equal((await wait(data.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const att = await alice.servers.attachVolume({ id: s.id, volumeId: data.volume!.id });
    assert.equal((await wait(att.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const before = (await hosts.domains(s.host))[s.id]!;

    const next = await uploaded("bv-next", 0, { firstByte: 0x5a });
    const op = await wait((await alice.servers.rebuildServer({ id: s.id, imageId: next, requestId: "rebuild-bv" })).operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
    const rebuilt = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(rebuilt.imageId, next, "the server shows the new image");
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(action!.events.map((e) => `${e.name}:${e.result}`), ["compute_stop:Success", "volume_reimage:Success", "compute_rebuild:Success"]);
    // The volume host wrote the image over the volume (the fake backend keeps the first byte of its content).
    const volumes = JSON.parse(await readFile(join(dir, `bvv${fx.env.id}`, "volumes", "volumes.json"), "utf8")) as { volumes: { id: string; content: Record<string, number> }[] };
    assert.deepEqual(volumes.volumes.find((v) => v.id === vol)?.content, { "0": 0x5a });
    assert.equal((await volume(vol)).sourceImageId, next, "the volume's source image is the new one");
    const after = (await hosts.domains(s.host))[s.id]!;
    assert.deepEqual(after.volumes?.map((d) => [d.device, d.attachmentId]), before.volumes?.map((d) => [d.device, d.attachmentId]), "the same root and data volumes");
    assert.equal(after.boots, before.boots + 1, "booted again");
    assert.equal(after.instance.image.id, next, "from the new image's kernel");

    // The image must fit the volume; the server stays as it was.
    const big = await uploaded("bv-too-big", 0, { minDiskGb: 2 });
    const tooBig = await failure(alice.servers.rebuildServer({ id: s.id, imageId: big }));
    assert.deepEqual([tooBig.code, tooBig.fields], [status.INVALID_ARGUMENT, ["image_id"]]);
    assert.equal((await alice.servers.getServer({ id: s.id })).server!.imageId, next);
    await alice.servers.deleteServer({ id: s.id });

    // Booted from a blank volume, a server has no image to rebuild from unless one is named.
    const blank = await alice.volumes.createVolume({ name: "bv-blank", sizeGb: 1, requestId: "create-bv-blank" });
    assert.equal((await wait(blank.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const fromBlank = await settled((await boot("bv-blank", blank.volume!.id, true)).server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const unnamed = await failure(alice.servers.rebuildServer({ id: fromBlank.id }));
    assert.deepEqual([unnamed.code, unnamed.fields], [status.INVALID_ARGUMENT, ["image_id"]]);
    assert.equal((await wait((await alice.servers.rebuildServer({ id: fromBlank.id, imageId: next })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    await alice.servers.deleteServer({ id: fromBlank.id });
  });

  test("a server boots from a volume made from an image for it: it waits in BLOCK_DEVICE_MAPPING while the volume is made, then is placed and boots from it; the volume goes with it (delete_on_termination)", async () => {
    const img = await image();
    const created = await alice.servers.createServer({
      name: "bv-made",
      flavorId: "m1.tiny",
      blockDeviceMappings: [BlockDeviceMapping.fromPartial({ imageId: img, volumeSizeGb: 2, bootIndex: 0, deleteOnTermination: true })],
      requestId: "bv-made",
    });
    assert.equal(created.server!.taskState, TaskState.TASK_STATE_BLOCK_DEVICE_MAPPING, "it waits for its volume first");
    const s = await settled(created.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(s.imageId, img);
    const made = (await alice.volumes.listVolumes({})).volumes.filter((v) => v.attachments.some((a) => a.serverId === s.id));
    assert.equal(made.length, 1, "one volume made for it");
    const [root] = made as [NonNullable<(typeof made)[0]>];
    assert.deepEqual(
      [root.name, root.sizeGb, root.sourceImageId, root.status, root.attachments.map((a) => a.device)],
      ["bv-made", 2, img, VolumeStatus.VOLUME_STATUS_IN_USE, ["vda"]],
    );
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(action!.events.map((e) => e.name), ["schedule", "volume_export", "compute_spawn"]);
    assert.deepEqual(((await hosts.domains(s.host))[s.id]?.volumes ?? []).map((d) => d.device), ["vda"]);
    // The same request again is the same server, not a second volume.
    assert.equal((await alice.servers.createServer({ name: "bv-made", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ imageId: img, volumeSizeGb: 2, bootIndex: 0, deleteOnTermination: true })], requestId: "bv-made" })).server!.id, s.id);
    assert.equal((await alice.volumes.listVolumes({})).volumes.filter((v) => v.name === "bv-made").length, 1);
    await alice.servers.deleteServer({ id: s.id });
    await eventually(async () => (await failure(alice.volumes.getVolume({ id: root.id }))).code === status.NOT_FOUND, { what: "its volume deleted with it" });

    // Deleted while its volume is still being made (kept: no delete_on_termination): the volume ends AVAILABLE.
    const quick = (await alice.servers.createServer({ name: "bv-quick", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ imageId: img, bootIndex: 0 })] })).server!;
    await alice.servers.deleteServer({ id: quick.id });
    const kept = await eventually(async () => (await alice.volumes.listVolumes({})).volumes.find((v) => v.name === "bv-quick" && v.status === VolumeStatus.VOLUME_STATUS_AVAILABLE), { what: "the volume made for a deleted server AVAILABLE" });
    assert.deepEqual([kept.sizeGb, kept.attachments.length], [1, 0], "the image's size, rounded up to a GiB; attached to nothing");
  });

  test("bad mappings, a volume in use or of another project are refused, naming the field or the state; nothing is reserved", async () => {
    const vol = await bootable("bv-bad");
    const both = await failure(alice.servers.createServer({ name: "x", flavorId: "m1.tiny", imageId: fx.imageId, blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId: vol, bootIndex: 0, deleteOnTermination: false })] }));
    assert.deepEqual([both.code, both.fields], [status.INVALID_ARGUMENT, ["image_id"]]);
    const index = await failure(alice.servers.createServer({ name: "x", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId: vol, bootIndex: 1, deleteOnTermination: false })] }));
    assert.deepEqual([index.code, index.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].boot_index"]]);
    const id = await failure(alice.servers.createServer({ name: "x", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId: "nope", bootIndex: 0, deleteOnTermination: false })] }));
    assert.deepEqual([id.code, id.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].volume_id"]]);
    const fromImage = (m: Partial<BlockDeviceMapping>) => alice.servers.createServer({ name: "x", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ bootIndex: 0, ...m })] });
    const img = await image();
    const twoSources = await failure(fromImage({ volumeId: vol, imageId: img }));
    assert.deepEqual([twoSources.code, twoSources.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].image_id"]]);
    const sized = await failure(fromImage({ volumeId: vol, volumeSizeGb: 3 }));
    assert.deepEqual([sized.code, sized.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].volume_size_gb"]]);
    const tooSmall = await failure(fromImage({ imageId: await uploaded("bv-2g", 0, { minDiskGb: 2 }), volumeSizeGb: 1 }));
    assert.deepEqual([tooSmall.code, tooSmall.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].volume_size_gb"]]);
    const noType = await failure(fromImage({ imageId: img, volumeType: "no-such-type" }));
    assert.deepEqual([noType.code, noType.fields], [status.INVALID_ARGUMENT, ["block_device_mappings[0].volume_type"]]);
    const huge = await failure(fromImage({ imageId: img, volumeSizeGb: 10_000 }));
    assert.deepEqual([huge.code, huge.reason], [status.RESOURCE_EXHAUSTED, "NO_VALID_POOL"]);
    assert.equal((await failure(fromImage({ imageId: "00000000-0000-4000-8000-000000000000" }))).code, status.NOT_FOUND);
    assert.equal((await alice.volumes.listVolumes({})).volumes.filter((v) => v.name === "x").length, 0, "no volume is left by a refused create");
    const none = await failure(alice.servers.createServer({ name: "x", flavorId: "m1.tiny" }));
    assert.deepEqual([none.code, none.fields], [status.INVALID_ARGUMENT, ["image_id"]]);
    assert.equal((await failure(bob.servers.createServer({ name: "x", flavorId: "m1.tiny", blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId: vol, bootIndex: 0, deleteOnTermination: false })] }))).code, status.NOT_FOUND);
    assert.equal((await volume(vol)).status, VolumeStatus.VOLUME_STATUS_AVAILABLE, "nothing reserved");
    // The volume's image asks for more memory than the flavor has.
    const big = await bootable("bv-big", await uploaded("bv-big-image", 4096));
    const small = await failure(boot("bv-small", big));
    assert.deepEqual([small.code, small.fields], [status.INVALID_ARGUMENT, ["flavor_id"]]);
    assert.equal((await volume(big)).status, VolumeStatus.VOLUME_STATUS_AVAILABLE);

    const first = await settled((await boot("bv-first", vol)).server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const taken = await failure(boot("bv-second", vol));
    assert.deepEqual([taken.code, taken.reason, taken.metadata.status], [status.FAILED_PRECONDITION, "WRONG_STATUS", "IN_USE"]);
    await alice.servers.deleteServer({ id: first.id });
  });
});
