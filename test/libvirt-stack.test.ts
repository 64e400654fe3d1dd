/**
 * The whole stack on the libvirt driver: gRPC → scheduler → NATS → agent
 * processes running `--driver libvirt` against libvirt's test hypervisor
 * (one `test:///<node file>` per host, real qcow2 overlays by qemu-img),
 * getting and putting image bytes through the controller (AgentService),
 * which alone opens the JetStream object store bucket.
 */
import assert from "node:assert/strict";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { Image, ImageStatus, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { RebootType, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { connect, type NatsConnection, type ObjectStore } from "nats";
import { hashFile } from "../agent/drivers/libvirt/image-store.js";
import { createBlank, imageInfo } from "../agent/drivers/libvirt/qemu-img.js";
import { downloadImageFile, uploadImageFile } from "../scripts/image-files.js";
import { NATS_URL, assertCapacityExact, eventually, settled } from "./harness.js";
import { stack } from "./stack.js";

const NODE_XML = `<?xml version="1.0"?>
<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><active>8</active><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
</node>
`;

describe("the stack on the libvirt driver (libvirt test hypervisor)", () => {
  let imageId: string;
  let nc: NatsConnection;
  let bucket: ObjectStore;
  const fx = stack({
    name: "libvirt-stack",
    members: [],
    images: [],
    agents: ({ id, env, dir }) =>
      [`lv${id}-a`, `lv${id}-b`].map((host) => ({
        host,
        driverArgs: ["--driver", "libvirt", "--libvirt-uri", `test://${join(dir, `${host}.xml`)}`],
      })),
    beforeAgents: async () => {
      nc = await connect({ servers: NATS_URL });
      bucket = await nc.jetstream().views.os(env.imageBucket);
      // A base image: 64 MiB qcow2, registered with its SHA-256 and uploaded through the API into the controller's bucket.
      const base = join(dir, "base.qcow2");
      await createBlank(base, 64 * 1024 * 1024);
      const { checksum, sizeBytes } = await hashFile(base);
      const res = await admin.images.registerImage({
        image: Image.fromPartial({
          name: "blank",
          visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC,
          diskFormat: "qcow2",
          containerFormat: "bare",
          checksum,
          sizeBytes,
        }),
        upload: true,
      });
      imageId = res.image!.id;
      await uploadImageFile(admin.images.raw, admin.images.metadata(), imageId, base);
      for (const host of hosts) await writeFile(join(dir, `${host}.xml`), NODE_XML);
    },
    removeDir: true,
  });
  const { env, admin, dir, hosts } = fx;
  after(() => nc?.close());

  const instancesOf = (host: string) => join(dir, host, "instances");

  test("hosts report the node capacity libvirt gives and its hypervisor type", async () => {
    const hv = (await admin.hypervisors()).filter((h) => hosts.includes(h.hostname));
    assert.equal(hv.length, 2);
    for (const h of hv) {
      assert.equal(h.vcpus, 8);
      assert.equal(h.memoryMb, 16384);
      assert.equal(h.hypervisorType, "test");
    }
  });

  test("a server boots on a real qcow2 overlay, goes through its power actions, snapshots, resizes to the other host and is deleted without a trace", async () => {
    const created = (await admin.servers.createServer({ name: "lv-1", flavorId: "m1.small", imageId })).server!;
    const s = await settled(admin, created.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.ok(hosts.includes(s.host), `placed on ${s.host}`);
    const disk = await imageInfo(join(instancesOf(s.host), s.id, "disk"));
    assert.equal(disk.format, "qcow2");
    assert.equal(disk.virtualSizeBytes, 20 * 1024 ** 3, "m1.small's 20 GiB root disk");
    assert.equal(disk.backingFile, join(instancesOf(s.host), "_base", imageId));
    // The test hypervisor runs no guest, so its console log is empty, but the host answers for it.
    assert.equal((await admin.servers.getConsoleOutput({ id: s.id, length: 10 })).output, "");

    const act = async (call: () => Promise<unknown>, status: ServerStatus) => {
      await call();
      return settled(admin, s.id, status);
    };
    await act(() => admin.servers.stopServer({ id: s.id }), ServerStatus.SERVER_STATUS_SHUTOFF);
    await act(() => admin.servers.startServer({ id: s.id }), ServerStatus.SERVER_STATUS_ACTIVE);
    await act(() => admin.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT }), ServerStatus.SERVER_STATUS_ACTIVE);
    await act(() => admin.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_HARD }), ServerStatus.SERVER_STATUS_ACTIVE);
    await act(() => admin.servers.pauseServer({ id: s.id }), ServerStatus.SERVER_STATUS_PAUSED);
    await act(() => admin.servers.unpauseServer({ id: s.id }), ServerStatus.SERVER_STATUS_ACTIVE);
    await act(() => admin.servers.suspendServer({ id: s.id }), ServerStatus.SERVER_STATUS_SUSPENDED);
    await act(() => admin.servers.resumeServer({ id: s.id }), ServerStatus.SERVER_STATUS_ACTIVE);

    // Snapshot: the image bytes land in the store, the image record says their size and checksum, and they download through the API.
    const snap = await admin.servers.createServerImage({ id: s.id, name: "lv-1-snap" });
    const done = (await admin.operations.waitOperation({ name: snap.operation!.name, timeoutSeconds: 30 })).operation!;
    assert.equal(done.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(done.error));
    const image = (await admin.images.getImage({ id: snap.imageId })).image!;
    assert.equal(image.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    const fetched = join(dir, "snapshot.qcow2");
    const downloaded = await downloadImageFile(admin.images.raw, admin.images.metadata(), snap.imageId, fetched);
    assert.equal(downloaded.hasData, true);
    const stored = await hashFile(fetched);
    assert.deepEqual([image.sizeBytes, image.checksum], [stored.sizeBytes, stored.checksum]);
    assert.equal((await imageInfo(fetched)).backingFile, undefined, "the snapshot stands on its own");

    // Resize to the other host: the disk goes through the controller; confirm drops the source copy.
    const resize = await admin.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
    assert.ok(resize.operation);
    const resized = await settled(admin, s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE, 60_000);
    assert.notEqual(resized.host, s.host);
    assert.equal((await imageInfo(join(instancesOf(resized.host), s.id, "disk"))).virtualSizeBytes, 40 * 1024 ** 3, "grown to m1.medium's disk");
    await assertCapacityExact(env, admin);
    await admin.servers.confirmResize({ id: s.id });
    await settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await eventually(async () => !(await exists(join(instancesOf(s.host), s.id))), { what: "the source copy gone after confirm" });
    const left = await bucket.info(`migration-${s.id}`);
    assert.ok(left === null || left.deleted, "the migrated disk is not kept in the bucket");
    await assertCapacityExact(env, admin);

    await admin.servers.deleteServer({ id: s.id });
    await eventually(async () => (await admin.servers.listServers({})).servers.every((x) => x.id !== s.id), { what: "server deleted" });
    await eventually(async () => !(await exists(join(instancesOf(resized.host), s.id))), { what: "the instance directory removed" });
    const usage = await assertCapacityExact(env, admin);
    for (const h of hosts) assert.equal(usage.get(h)?.vms ?? 0, 0, `${h} holds nothing`);
    for (const h of hosts) {
      const left = (await readdir(instancesOf(h)).catch(() => [] as string[])).filter((n) => n !== "_base");
      assert.deepEqual(left, [], `${h} has no instance files left`);
    }
  });
});

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
