/**
 * Image bytes for hosts, through the controller (AgentService's
 * DownloadHostObject and UploadHostObject): a host reads what its servers
 * and ops need and writes the snapshots its ops make; another host, with
 * its own token, finds neither. Host A reads and writes with the agent's
 * own store (ControllerImageStore); host B's refusals are read as the gRPC
 * statuses a process holding its token would see.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import type { AgentServiceClient, DownloadHostObjectRequest, UploadHostObjectHeader } from "../gen/novamesh/agent/v1/agent.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { Image, ImageStatus, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { DriverError } from "../agent/drivers/errors.js";
import { ControllerImageStore } from "../agent/session/controller-image-store.js";
import { downloadImageFile, uploadImageFile } from "../scripts/image-files.js";
import { eventually, failure, settled } from "./harness.js";
import { code, RawAgent } from "./raw-agent.js";
import { testEnv } from "./stack.js";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

function bearer(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

/** DownloadHostObject as a raw call: the bytes, or the status it ended with. */
function download(client: AgentServiceClient, token: string, req: DownloadHostObjectRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const call = client.downloadHostObject(req, bearer(token));
    const parts: Buffer[] = [];
    call.on("data", (m: { part?: { $case: string; chunk?: Buffer } }) => {
      if (m.part?.$case === "chunk") parts.push(m.part.chunk!);
    });
    call.on("error", (err: ServiceError) => reject(err));
    call.on("end", () => resolve(Buffer.concat(parts)));
  });
}

/** UploadHostObject as a raw call with any header. */
function upload(client: AgentServiceClient, token: string, header: UploadHostObjectHeader, data: Buffer): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const call = client.uploadHostObject(bearer(token), (err, res) => (err ? reject(err) : resolve(res)));
    call.write({ part: { $case: "header", header } });
    for (let at = 0; at < data.length; at += 1024 * 1024) call.write({ part: { $case: "chunk", chunk: data.subarray(at, at + 1024 * 1024) } });
    call.end();
  });
}

const image = (imageId: string) => ({ object: { $case: "imageId" as const, imageId } });

describe("image bytes for hosts, through the controller", () => {
  const env = testEnv();
  const dir = join(tmpdir(), `novamesh-host-images-${env.id}`);
  after(() => rm(dir, { recursive: true, force: true }));

  test("a host reads the image of its server and stores its snapshot; another host finds neither, and the owner downloads the snapshot", async () => {
    await mkdir(dir, { recursive: true });
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const address = env.address(ctl);
    const tokenOf = async (host: string) => (await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" })).secret;
    const [tokenA, tokenB] = [await tokenOf("compute-a"), await tokenOf("compute-b")];
    const a = new RawAgent(address, tokenA);
    const b = new RawAgent(address, tokenB);
    try {
      assert.equal(code(await a.hello("compute-a")), "helloAck");
      assert.equal(code(await b.hello("compute-b")), "helloAck");
      a.report([]);
      b.report([]);
      await admin.hosts.disableService({ host: "compute-b", reason: "the server goes to compute-a" });

      // The owner's private image, 2.5 MiB: three chunks, the last one partial.
      const owner = await env.as(ctl, "tenant");
      const data = randomBytes(2.5 * 1024 * 1024);
      await writeFile(join(dir, "base.img"), data);
      // Its kernel, a private image of its own that the base image's properties name.
      const kernelData = randomBytes(64 * 1024);
      await writeFile(join(dir, "kernel"), kernelData);
      const kernel = (await owner.images.registerImage({ image: Image.fromPartial({ name: "kernel", visibility: ImageVisibility.IMAGE_VISIBILITY_PRIVATE }), upload: true })).image!;
      await uploadImageFile(owner.images.raw, owner.images.metadata(), kernel.id, join(dir, "kernel"));
      const base = (
        await owner.images.registerImage({
          image: Image.fromPartial({ name: "private", visibility: ImageVisibility.IMAGE_VISIBILITY_PRIVATE, properties: { kernel_id: kernel.id } }),
          upload: true,
        })
      ).image!;
      await uploadImageFile(owner.images.raw, owner.images.metadata(), base.id, join(dir, "base.img"));
      const server = (await owner.servers.createServer({ name: "web", flavorId: "m1.tiny", imageId: base.id })).server!;
      const opOf = (kind: string) =>
        eventually(async () => (await env.sql<{ op_id: string; host: string }>("SELECT op_id, host FROM compute_ops WHERE instance_uuid = ? AND kind = ?", [server.id, kind]))[0], {
          what: `the ${kind} op`,
        });
      const spawn = await opOf("spawn");
      assert.equal(spawn.host, "compute-a");

      // Host A builds the server: it reads the image through the controller, checked.
      const storeA = new ControllerImageStore({ client: () => a.client, token: tokenA, host: "compute-a" });
      const got = await storeA.get(base.id, join(dir, "a-base"));
      assert.deepEqual(got, { sizeBytes: data.length, checksum: sha256(data) });
      assert.ok((await readFile(join(dir, "a-base"))).equals(data), "host A has the owner's bytes");
      assert.deepEqual(await storeA.get(kernel.id, join(dir, "a-kernel")), { sizeBytes: kernelData.length, checksum: sha256(kernelData) }, "and the kernel its image names");

      // Host B has no reason to read it: the same answer as for an image that does not exist.
      const notNeeded = await failure(download(b.client, tokenB, { host: "", object: image(base.id) }));
      const other = randomUUID();
      const nonexistent = await failure(download(b.client, tokenB, { host: "", object: image(other) }));
      assert.equal(notNeeded.code, status.NOT_FOUND);
      assert.equal(nonexistent.code, status.NOT_FOUND);
      assert.equal(notNeeded.reason, nonexistent.reason);
      assert.equal(notNeeded.message.replace(base.id, "<id>"), nonexistent.message.replace(other, "<id>"));
      assert.equal((await failure(download(b.client, tokenB, { host: "", object: image(kernel.id) }))).code, status.NOT_FOUND);
      const storeB = new ControllerImageStore({ client: () => b.client, token: tokenB, host: "compute-b" });
      await assert.rejects(storeB.get(base.id, join(dir, "b-base")), (err: DriverError) => err.code === "IMAGE_NOT_FOUND" && !err.retryable);
      // Nor can it ask as host A, and an admin token must say which host it acts for.
      const asA = await failure(download(b.client, tokenB, { host: "compute-a", object: image(base.id) }));
      assert.equal(asA.code, status.PERMISSION_DENIED);
      const unnamed = await failure(download(b.client, env.adminToken, { host: "", object: image(base.id) }));
      assert.equal(unnamed.code, status.INVALID_ARGUMENT);
      assert.deepEqual(unnamed.fields, ["host"]);
      const bad = await failure(download(a.client, tokenA, { host: "", object: image("not-a-uuid") }));
      assert.deepEqual([bad.code, bad.fields], [status.INVALID_ARGUMENT, ["object.image_id"]]);

      // Built and running on A, the server still needs its image there.
      a.result(spawn.op_id, server.id);
      await settled(owner, server.id, ServerStatus.SERVER_STATUS_ACTIVE);
      assert.deepEqual(await storeA.get(base.id, join(dir, "a-base-again")), got);

      // A snapshot: compute-a's op creates a queued private image.
      const snap = await owner.servers.createServerImage({ id: server.id, name: "web-snap", metadata: {} });
      const snapshotOp = await opOf("snapshot");
      const snapData = randomBytes(1.5 * 1024 * 1024);
      await writeFile(join(dir, "snap.qcow2"), snapData);
      const snapHeader = (host: string) => ({ host, object: image(snap.imageId), sizeBytes: snapData.length, checksum: sha256(snapData) });
      const statusOf = async () => (await owner.images.getImage({ id: snap.imageId })).image!.status;

      // Host B cannot write into it, and neither as host A.
      const intoA = await failure(upload(b.client, tokenB, snapHeader(""), snapData));
      assert.equal(intoA.code, status.NOT_FOUND);
      const posing = await failure(upload(b.client, tokenB, snapHeader("compute-a"), snapData));
      assert.equal(posing.code, status.PERMISSION_DENIED);
      assert.equal(await statusOf(), ImageStatus.IMAGE_STATUS_QUEUED, "B's attempts left the image waiting for its bytes");

      // Bytes that are not what A announced are not kept.
      const wrong = await failure(upload(a.client, tokenA, { ...snapHeader(""), checksum: sha256(data) }, snapData));
      assert.deepEqual([wrong.code, wrong.fields], [status.INVALID_ARGUMENT, ["header.checksum"]]);
      assert.equal(await statusOf(), ImageStatus.IMAGE_STATUS_QUEUED);

      // A stores it with the agent's store: the image is ACTIVE with those bytes.
      const put = await storeA.put(snap.imageId, join(dir, "snap.qcow2"));
      assert.deepEqual(put, { sizeBytes: snapData.length, checksum: sha256(snapData) });
      const active = (await owner.images.getImage({ id: snap.imageId })).image!;
      assert.deepEqual([active.status, active.sizeBytes, active.checksum], [ImageStatus.IMAGE_STATUS_ACTIVE, snapData.length, sha256(snapData)]);
      // The same bytes again (an op run again after a crash) succeed; other bytes are refused.
      assert.deepEqual(await storeA.put(snap.imageId, join(dir, "snap.qcow2")), put);
      const other2 = randomBytes(4096);
      const overwrite = await failure(upload(a.client, tokenA, { ...snapHeader(""), sizeBytes: other2.length, checksum: sha256(other2) }, other2));
      assert.deepEqual([overwrite.code, overwrite.reason], [status.FAILED_PRECONDITION, "IMAGE_NOT_QUEUED"]);

      a.result(snapshotOp.op_id, server.id, { sizeBytes: snapData.length, checksum: sha256(snapData), diskFormat: "qcow2" });
      const done = (await owner.operations.waitOperation({ name: snap.operation!.name, timeoutSeconds: 10 })).operation!;
      assert.equal(done.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(done.error));
      const fetched = join(dir, "owner-snap.qcow2");
      await downloadImageFile(owner.images.raw, owner.images.metadata(), snap.imageId, fetched);
      assert.ok((await readFile(fetched)).equals(snapData), "the owner downloads the bytes host A stored");

      // With the snapshot op done, not even host A may write into the image any more; B still reads nothing of it.
      const late = await failure(upload(a.client, tokenA, snapHeader(""), snapData));
      assert.equal(late.code, status.NOT_FOUND);
      assert.equal((await failure(download(b.client, tokenB, { host: "", object: image(snap.imageId) }))).code, status.NOT_FOUND);
    } finally {
      a.close();
      b.close();
    }
  });
  test("a cold migration's disk goes from its source to its target through the controller, and to no one else", async () => {
    await mkdir(dir, { recursive: true });
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const address = env.address(ctl);
    const tokenOf = async (host: string) => (await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" })).secret;
    const [tokenA, tokenB] = [await tokenOf("source-a"), await tokenOf("target-b")];
    const a = new RawAgent(address, tokenA);
    const b = new RawAgent(address, tokenB);
    try {
      assert.equal(code(await a.hello("source-a")), "helloAck");
      assert.equal(code(await b.hello("target-b")), "helloAck");
      a.report([]);
      b.report([]);
      await admin.hosts.disableService({ host: "target-b", reason: "the server goes to source-a" });
      const owner = await env.as(ctl, "tenant");
      const server = (await owner.servers.createServer({ name: "mover", flavorId: "m1.tiny", imageId: await env.image(ctl) })).server!;
      const opOf = (kind: string) =>
        eventually(async () => (await env.sql<{ op_id: string; host: string }>("SELECT op_id, host FROM compute_ops WHERE instance_uuid = ? AND kind = ?", [server.id, kind]))[0], {
          what: `the ${kind} op`,
        });
      a.result((await opOf("spawn")).op_id, server.id);
      await settled(owner, server.id, ServerStatus.SERVER_STATUS_ACTIVE);
      await admin.hosts.enableService({ host: "target-b" });

      await owner.servers.resizeServer({ id: server.id, flavorId: "m1.small" });
      const migrateDisk = await opOf("migrate_disk");
      assert.equal(migrateDisk.host, "source-a");
      const disk = randomBytes(1024 * 1024 + 17);
      await writeFile(join(dir, "disk"), disk);
      const key = `migration-${server.id}`;
      const storeA = new ControllerImageStore({ client: () => a.client, token: tokenA, host: "source-a" });
      const storeB = new ControllerImageStore({ client: () => b.client, token: tokenB, host: "target-b" });
      const disk$ = { object: { $case: "migrationServerId" as const, migrationServerId: server.id } };

      // Only the source, while its migrate_disk op runs, writes the disk; the target cannot read it yet.
      const early = await failure(download(b.client, tokenB, { host: "", object: disk$ }));
      assert.equal(early.code, status.NOT_FOUND);
      const forged = await failure(upload(b.client, tokenB, { host: "", object: disk$, sizeBytes: disk.length, checksum: sha256(disk) }, disk));
      assert.equal(forged.code, status.NOT_FOUND);
      assert.deepEqual(await storeA.put(key, join(dir, "disk")), { sizeBytes: disk.length, checksum: sha256(disk) });

      // The target reads it while its finish_migration op runs; the source no longer may.
      a.result(migrateDisk.op_id, server.id);
      const finish = await opOf("finish_migration");
      assert.equal(finish.host, "target-b");
      assert.deepEqual(await storeB.get(key, join(dir, "b-disk")), { sizeBytes: disk.length, checksum: sha256(disk) });
      assert.ok((await readFile(join(dir, "b-disk"))).equals(disk));
      await assert.rejects(storeA.get(key, join(dir, "a-disk")), (err: DriverError) => err.code === "IMAGE_NOT_FOUND");
      await storeB.delete(key);
      await assert.rejects(storeB.get(key, join(dir, "b-disk-again")), (err: DriverError) => err.code === "IMAGE_NOT_FOUND", "deleted once the target has it");

      b.result(finish.op_id, server.id);
      await settled(owner, server.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
      // With its ops done, the target may not delete any more either.
      await assert.rejects(storeB.delete(key), (err: DriverError) => err.code === "IMAGE_NOT_FOUND");
      // A host never deletes an image.
      await assert.rejects(storeA.delete(randomUUID()), (err: DriverError) => err.code === "NOT_SUPPORTED");
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("a kernel or ramdisk an image names", () => {
  const env = testEnv();
  const dir = join(tmpdir(), `novamesh-host-kernels-${env.id}`);
  after(() => rm(dir, { recursive: true, force: true }));

  test("is read by the host only when it is public or the server's project's own: naming another project's private image gains nothing", async () => {
    await mkdir(dir, { recursive: true });
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const token = (await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "compute-k", description: "" })).secret;
    const a = new RawAgent(env.address(ctl), token);
    try {
      assert.equal(code(await a.hello("compute-k")), "helloAck");
      a.report([]);
      // The victim's private image, with bytes.
      const victim = await env.as(ctl, "victim");
      await writeFile(join(dir, "secret"), randomBytes(4096));
      const secret = (await victim.images.registerImage({ image: Image.fromPartial({ name: "secret", visibility: ImageVisibility.IMAGE_VISIBILITY_PRIVATE }), upload: true })).image!;
      await uploadImageFile(victim.images.raw, victim.images.metadata(), secret.id, join(dir, "secret"));
      // The intruder's image names it as its ramdisk; the intruder boots a server of it on compute-k.
      const intruder = await env.as(ctl, "intruder");
      const own = (await intruder.images.registerImage({ image: Image.fromPartial({ name: "own", visibility: ImageVisibility.IMAGE_VISIBILITY_PRIVATE, properties: { ramdisk_id: secret.id } }), upload: true })).image!;
      await writeFile(join(dir, "own"), randomBytes(4096));
      await uploadImageFile(intruder.images.raw, intruder.images.metadata(), own.id, join(dir, "own"));
      const server = (await intruder.servers.createServer({ name: "probe", flavorId: "m1.tiny", imageId: own.id })).server!;
      await eventually(async () => (await env.sql("SELECT 1 FROM compute_ops WHERE instance_uuid = ? AND kind = 'spawn' AND host = 'compute-k'", [server.id])).length > 0, {
        what: "the spawn op on compute-k",
      });
      await download(a.client, token, { host: "", object: image(own.id) });
      const refused = await failure(download(a.client, token, { host: "", object: image(secret.id) }));
      assert.equal(refused.code, status.NOT_FOUND, "the victim's private image stays out of the intruder's server");
    } finally {
      a.close();
    }
  });
});
