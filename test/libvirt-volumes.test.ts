/**
 * Volumes on real guests through the whole stack: a volume host (an agent
 * with the file backend: qcow2 files in a pool directory, NBD over TLS from
 * one export daemon per exported volume) and two compute hosts with the
 * libvirt driver on the two libvirtds of `scripts/libvirtd-hosts.sh`, named
 * as their NBD client certificates are (NOVAMESH_LIBVIRT_A_NAME, _B_NAME).
 * CreateVolume makes the qcow2 file; bytes written into it on the volume
 * host are what the test guest on host A reads from its new disk vdb after
 * AttachVolume; ExtendVolume grows it online (the guest sees 2 GiB); a
 * live migration to host B (whose qemu runs in B's network namespace and
 * reaches the export over the hosts' underlay) takes it along through an
 * export made for B, where the guest, detached and attached again, reads
 * the same bytes; a second guest boots on host A from a volume made from
 * the test guest's image and, the data volume attached to it, reads the
 * same bytes, then live-migrates to host B with both (its root disk too),
 * is cold-migrated back to A (booting there with both, no disk handed
 * over), is shelved (no export left) and unshelved with both, and is
 * rebuilt from another image written over its root volume;
 * deleting the data volume and that server (its root volume with it,
 * delete_on_termination) leaves no file, export or daemon. The export daemons' server
 * certificate is issued by the hosts' CA (NOVAMESH_NBD_CA). Runs under
 * `npm run test:libvirt`.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, describe, test, type TestContext } from "node:test";
import { status } from "@grpc/grpc-js";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { BlockDeviceMapping, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { uriHost } from "../agent/drivers/libvirt/live-migration.js";
import { issue } from "../agent/volume/file/test-certs.js";
import { fileBackendSkip } from "../agent/volume/file/test-qemu.js";
import { uploadImageFile } from "../scripts/image-files.js";
import { registerTestGuest } from "../scripts/test-guest.js";
import { eventually, failure, settled, withOnlyHost } from "./harness.js";
import { removeDomains } from "./libvirt-domains.js";
import { stack } from "./stack.js";

const run = promisify(execFile);
const A = process.env.NOVAMESH_LIBVIRT_A;
const B = process.env.NOVAMESH_LIBVIRT_B;
const A_NAME = process.env.NOVAMESH_LIBVIRT_A_NAME;
const B_NAME = process.env.NOVAMESH_LIBVIRT_B_NAME;
const CA = process.env.NOVAMESH_NBD_CA;
const GUEST = process.env.NOVAMESH_TEST_GUEST;
const skip =
  A && B && A_NAME && B_NAME && CA && GUEST
    ? (fileBackendSkip() ?? false)
    : "NOVAMESH_LIBVIRT_A, NOVAMESH_LIBVIRT_B, NOVAMESH_LIBVIRT_A_NAME, NOVAMESH_LIBVIRT_B_NAME, NOVAMESH_NBD_CA and NOVAMESH_TEST_GUEST are not all set (npm run test:libvirt sets them)";
if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);

const GiB = 1024 ** 3;

/** An export daemon of the volume host (one per exported volume), as its files under the backend's state directory say. */
interface Daemon {
  volumeId: string;
  pid: number;
  /** Its exports: [client host, export id]. */
  exports: [string, string][];
}

describe("a volume on real guests through the whole stack (file volume host, two libvirtds, qemu)", { skip }, () => {
  const uris = new Map<string, string>();
  const servers: string[] = [];
  let volumeHost = "";
  let stateDir = "";
  // Registered before the stack's hooks, so it runs before the stack's dir goes: no domain and no export daemon outlive a failed run.
  after(async () => {
    for (const uri of uris.values()) await removeDomains(uri, servers).catch((err) => console.error(`removing the domains on ${uri}:`, err));
    for (const d of await daemons().catch(() => [] as Daemon[])) {
      try {
        process.kill(d.pid, "SIGKILL");
        console.error(`killed the export daemon of volume ${d.volumeId} (pid ${d.pid}) left behind`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") console.error(`killing export daemon ${d.pid}:`, err);
      }
    }
  });
  let imageId: string;
  let kernelId: string;
  let ramdiskId: string;
  const fx = stack({
    name: "libvirt-volumes",
    controller: { reportIntervalSeconds: 3600, serviceDownTimeSeconds: 7200 },
    members: [],
    images: [],
    agents: ({ id, dir }) => {
      volumeHost = `vol${id}`;
      stateDir = join(dir, volumeHost, "volumes");
      const computes = ([[A_NAME!, A!], [B_NAME!, B!]] as const).map(([host, uri]) => {
        uris.set(host, uri);
        return { host, driverArgs: ["--driver", "libvirt", "--libvirt-uri", uri, "--live-migration-uri", uri] };
      });
      // Host B's qemu reaches this machine at A's underlay address (A's libvirtd listens there too); A's qemu as well.
      // Apart from the driver tests' export ports (22000-30199), which may run at the same time.
      const first = 31000 + (process.pid % 100) * 10;
      const volume = {
        host: volumeHost,
        driverArgs: [
          "--driver", "fake", "--vcpus", "1", "--memory-mb", "64", "--disk-gb", "1",
          "--volume-backend", "file", "--volume-pools", `p1=${join(dir, volumeHost, "pool")}:4G`,
          "--volume-tls-dir", join(dir, "volume-tls"), "--volume-address", uriHost(A!)!, "--volume-ports", `${first}-${first + 9}`,
        ],
      };
      return [...computes, volume];
    },
    beforeAgents: async () => {
      // The volume host's certificate from the CA the hosts' qemu trusts; its ca-cert.pem (that CA) verifies their client certificates.
      await issue(CA!, join(dir, "volume-tls"), "server", "/O=novamesh/CN=volume-host", `IP:${uriHost(A!)}`);
      ({ imageId, kernelId, ramdiskId } = await registerTestGuest(admin.images.raw, admin.images.metadata(), GUEST!, { name: `guest-${env.id}` }));
      await admin.flavors.createFlavor({
        flavor: { id: `lv.vol.${env.id}`, name: `lv.vol.${env.id}`, vcpus: 1, ramMb: 256, diskGb: 1, description: "", extraSpecs: {} },
      });
    },
    removeDir: true,
  });
  const { env, admin, dir } = fx;

  /** The export daemons running for volumes, with the exports each serves and the host each is for. */
  async function daemons(): Promise<Daemon[]> {
    const out: Daemon[] = [];
    for (const name of (await readdir(stateDir).catch(() => [] as string[])).filter((n) => n.startsWith("v-"))) {
      const at = join(stateDir, name);
      const { volumeId } = JSON.parse(await readFile(join(at, "daemon.json"), "utf8")) as { volumeId: string };
      const pid = Number((await readFile(join(at, "pid"), "utf8")).trim());
      const exports = JSON.parse((await readFile(join(at, "exports.json"), "utf8").catch(() => "[]")) as string) as { attachmentId: string; client: string }[];
      out.push({ volumeId, pid, exports: exports.map((e): [string, string] => [e.client, e.attachmentId]) });
    }
    return out;
  }
  /** Whether process `pid` is a running qemu-storage-daemon of this volume host (a zombie's command line is empty). */
  const alive = async (pid: number) => {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return "";
      throw err;
    });
    return cmdline.includes("qemu-storage-daemon") && cmdline.includes(stateDir);
  };

  const consoleOf = async (id: string) => (await admin.servers.getConsoleOutput({ id, length: 0 })).output;
  /** Waits (≤ 90 s) for a console line after the first `from` characters that starts with `prefix` and satisfies `ok`. */
  const consoleLine = async (id: string, from: number, prefix: string, ok: (line: string) => boolean, what: string) => {
    let last = "";
    try {
      return await eventually(async () => {
        last = await consoleOf(id);
        const line = last.slice(from).split("\n").map((l) => l.trim()).find((l) => l.startsWith(prefix) && ok(l));
        return line ? { line, length: last.length } : undefined;
      }, { what, timeoutMs: 90_000, intervalMs: 500 });
    } catch (err) {
      throw new Error(`${(err as Error).message}; the console ends with:\n${last.slice(-1500)}`);
    }
  };

  /** Boots the test guest on `host`; the console's length once it printed its root disk alone. */
  const bootOn = async (host: string, name: string) => {
    const s = await withOnlyHost(admin, host, async () => {
      const created = (await admin.servers.createServer({ name, flavorId: `lv.vol.${env.id}`, imageId })).server!;
      servers.push(created.id);
      return settled(admin, created.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    });
    assert.equal(s.host, host);
    const first = await consoleLine(s.id, 0, "novamesh-test-guest: disks", () => true, `${name} prints its disks`);
    assert.match(first.line, /^novamesh-test-guest: disks vda=\d+$/, "the guest starts with its root disk only");
    return { id: s.id, from: first.length };
  };

  const volume = async (id: string) => (await admin.volumes.getVolume({ id })).volume!;
  /** A raw disk image of 1 MiB that starts with `line`, booted with the test guest's kernel and initrd. */
  const markerImage = async (name: string, line: string): Promise<string> => {
    const file = join(dir, `${name}.raw`);
    await writeFile(file, Buffer.concat([Buffer.from(`${line}\n`), Buffer.alloc(1024 * 1024 - line.length - 1)]));
    const properties = { architecture: "x86_64", kernel_id: kernelId, ramdisk_id: ramdiskId, os_command_line: "console=ttyS0 quiet" };
    const image = Image.fromPartial({ name, diskFormat: "raw", containerFormat: "bare", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, properties });
    const made = (await admin.images.registerImage({ image, upload: true })).image!;
    await uploadImageFile(admin.images.raw, admin.images.metadata(), made.id, file);
    return made.id;
  };
  const succeeded = async (name: string) => {
    const op = (await admin.operations.waitOperation({ name, timeoutSeconds: 90 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
  };

  test("a volume made on the volume host is read by a guest on host A, grown online, live-migrated with it to host B and read there; a second guest booted from a volume on A reads it too, live-migrates to B with both, is cold-migrated back, shelved and unshelved with both, and rebuilt on its volume; all deleted", async (t: TestContext) => {
    const started = Date.now();
    // 1. A 1 GiB volume: a qcow2 file in the pool directory.
    const created = await admin.volumes.createVolume({ name: "data", sizeGb: 1, requestId: `data-${env.id}` });
    await succeeded(created.operation!.name);
    const volumeId = created.volume!.id;
    const made = await volume(volumeId);
    assert.deepEqual([made.status, made.sizeGb], [VolumeStatus.VOLUME_STATUS_AVAILABLE, 1]);
    const file = join(dir, volumeHost, "pool", `${volumeId}.qcow2`);
    const info = JSON.parse((await run("qemu-img", ["info", "-U", "--output=json", file], { timeout: 30_000 })).stdout) as { format: string; "virtual-size": number };
    assert.deepEqual([info.format, info["virtual-size"]], ["qcow2", GiB], "the volume host holds a 1 GiB qcow2 file");

    // Written on the volume host, into the file while it is not exported.
    const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
    const head = join(dir, "marker.bin");
    await writeFile(head, Buffer.concat([Buffer.from(`${marker}\n`), Buffer.alloc(511 - marker.length)]));
    await run("qemu-io", ["-f", "qcow2", "-c", `write -s ${head} 0 512`, file], { timeout: 30_000 });

    // 2. Attached to a guest on host A: vdb, 1 GiB, with the marker.
    const onA = await bootOn(A_NAME!, "vol-a");
    const att = await admin.servers.attachVolume({ id: onA.id, volumeId, requestId: `att-a-${env.id}` });
    await succeeded(att.operation!.name);
    const inUse = await volume(volumeId);
    assert.equal(inUse.status, VolumeStatus.VOLUME_STATUS_IN_USE);
    assert.deepEqual(inUse.attachments.map((a) => [a.id, a.serverId, a.device]), [[att.attachmentId, onA.id, "vdb"]]);
    const seenA = await consoleLine(onA.id, onA.from, "novamesh-test-guest: disks", (l) => l.includes(" vdb="), "the guest on A sees vdb");
    assert.match(seenA.line, new RegExp(`^novamesh-test-guest: disks vda=\\d+ vdb=${GiB}$`));
    const headA = await consoleLine(onA.id, onA.from, "novamesh-test-guest: disk vdb head=", () => true, "the guest on A reads vdb");
    assert.ok(headA.line.includes(marker), `the guest on A reads what the volume host wrote: ${headA.line}`);
    assert.deepEqual(
      (await daemons()).map((d) => [d.volumeId, d.exports]),
      [[volumeId, [[A_NAME, att.attachmentId]]]],
      "one export, made for host A",
    );
    t.diagnostic(`attached on ${A_NAME} and read ${Date.now() - started} ms into the test`);

    // Grown online to 2 GiB: the running guest is told its new size.
    const growing = Date.now();
    const grow = await admin.volumes.extendVolume({ id: volumeId, newSizeGb: 2, requestId: `grow-a-${env.id}` });
    assert.equal(grow.operation!.name, `servers/${onA.id}/operations/grow-a-${env.id}`);
    await succeeded(grow.operation!.name);
    const grownA = await consoleLine(onA.id, headA.length, "novamesh-test-guest: disks", (l) => l.includes(` vdb=${2 * GiB}`), "the guest on A sees vdb grown");
    assert.match(grownA.line, new RegExp(`^novamesh-test-guest: disks vda=\\d+ vdb=${2 * GiB}$`));
    assert.deepEqual([(await volume(volumeId)).status, (await volume(volumeId)).sizeGb], [VolumeStatus.VOLUME_STATUS_IN_USE, 2]);
    const grownFile = JSON.parse((await run("qemu-img", ["info", "-U", "--output=json", file], { timeout: 30_000 })).stdout) as { "virtual-size": number };
    assert.equal(grownFile["virtual-size"], 2 * GiB, "the file on the volume host grew");
    t.diagnostic(`grown online in ${Date.now() - growing} ms (operation to the guest's new size)`);

    // 3. Live-migrated to host B with the volume attached: B opens it through an export made for B, nothing is copied.
    const migrating = Date.now();
    const lm = await admin.servers.liveMigrateServer({ id: onA.id, host: B_NAME!, requestId: `lm-${env.id}` });
    await succeeded(lm.operation!.name);
    assert.equal((await admin.servers.getServer({ id: onA.id })).server!.host, B_NAME);
    const afterMove = await volume(volumeId);
    assert.deepEqual([afterMove.status, afterMove.attachments.map((a) => [a.id, a.serverId, a.device])], [VolumeStatus.VOLUME_STATUS_IN_USE, [[att.attachmentId, onA.id, "vdb"]]]);
    await eventually(async () => (await daemons()).every((d) => d.exports.every(([client]) => client === B_NAME)), { what: "A's export ended", timeoutMs: 30_000 });
    const movedExports = await daemons();
    assert.deepEqual(movedExports.map((d) => [d.volumeId, d.exports.map(([client]) => client)]), [[volumeId, [B_NAME]]], "one export, made for host B");
    assert.notEqual(movedExports[0]!.exports[0]![1], att.attachmentId, "B's own export, not A's");
    t.diagnostic(`live-migrated with the volume attached in ${Date.now() - migrating} ms`);

    // 4. The migrated guest reads the volume through B: detached (gone from the guest, the export ended), attached again, its bytes seen.
    const det = await admin.servers.detachVolume({ id: onA.id, volumeId });
    await succeeded(det.operation!.name);
    assert.deepEqual([(await volume(volumeId)).status, (await volume(volumeId)).attachments.length], [VolumeStatus.VOLUME_STATUS_AVAILABLE, 0]);
    const goneB = await consoleLine(onA.id, 0, "novamesh-test-guest: disks", (l) => !l.includes(" vdb="), "vdb gone from the guest, now on B");
    assert.match(goneB.line, /^novamesh-test-guest: disks vda=\d+$/);
    assert.deepEqual(await daemons(), [], "no export is left after the detach");
    const attB = await admin.servers.attachVolume({ id: onA.id, volumeId, deleteOnTermination: true, requestId: `att-b-${env.id}` });
    await succeeded(attB.operation!.name);
    const headB = await consoleLine(onA.id, goneB.length, "novamesh-test-guest: disk vdb head=", () => true, "the guest on B reads vdb");
    assert.ok(headB.line.includes(marker), `the migrated guest reads what the volume host wrote: ${headB.line}`);
    const forB = await daemons();
    assert.deepEqual(forB.map((d) => [d.volumeId, d.exports]), [[volumeId, [[B_NAME, attB.attachmentId]]]], "one export, made for host B only");
    assert.ok(await alive(forB[0]!.pid), "the volume's export daemon runs");
    t.diagnostic(`read again on ${B_NAME} ${Date.now() - started} ms into the test`);

    // 5. A second guest, booted from a volume made from the test guest's image, on host A: the data volume, detached from the
    // guest on B and attached to it, shows the same bytes.
    const rootMade = await admin.volumes.createVolume({ name: "root", sizeGb: 1, imageId, requestId: `root-${env.id}` });
    await succeeded(rootMade.operation!.name);
    const rootId = rootMade.volume!.id;
    const booting = Date.now();
    const fromVolume = await withOnlyHost(admin, A_NAME!, async () => {
      const c = (await admin.servers.createServer({ name: "vol-boot", flavorId: `lv.vol.${env.id}`, blockDeviceMappings: [BlockDeviceMapping.fromPartial({ volumeId: rootId, bootIndex: 0, deleteOnTermination: true })] })).server!;
      servers.push(c.id);
      return settled(admin, c.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    });
    assert.deepEqual([fromVolume.host, fromVolume.imageId], [A_NAME, imageId], "on A, showing the volume's source image");
    const bootedDisks = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disks", () => true, "the guest booted from the volume prints its disks");
    assert.match(bootedDisks.line, new RegExp(`^novamesh-test-guest: disks vda=${GiB}$`), "its root disk is the 1 GiB volume");
    assert.deepEqual((await volume(rootId)).attachments.map((a) => [a.serverId, a.device]), [[fromVolume.id, "vda"]]);
    t.diagnostic(`booted from a volume in ${Date.now() - booting} ms`);
    await succeeded((await admin.servers.detachVolume({ id: onA.id, volumeId })).operation!.name);
    const attBoot = await admin.servers.attachVolume({ id: fromVolume.id, volumeId, deleteOnTermination: true, requestId: `att-boot-${env.id}` });
    await succeeded(attBoot.operation!.name);
    const headBoot = await consoleLine(fromVolume.id, bootedDisks.length, "novamesh-test-guest: disk vdb head=", () => true, "the second guest reads vdb");
    assert.ok(headBoot.line.includes(marker), `a second guest, on host A, reads what the volume host wrote: ${headBoot.line}`);

    // Live-migrated to B with both volumes, its root disk among them: it runs on there, booted from the volume.
    const movingBoot = Date.now();
    await succeeded((await admin.servers.liveMigrateServer({ id: fromVolume.id, host: B_NAME!, requestId: `lm-boot-${env.id}` })).operation!.name);
    assert.equal((await admin.servers.getServer({ id: fromVolume.id })).server!.host, B_NAME);
    t.diagnostic(`the volume-booted guest live-migrated with its two volumes in ${Date.now() - movingBoot} ms`);

    // Cold-migrated back to A: no disk is handed over; A boots it from its root volume with the data volume there from the start.
    const cold = Date.now();
    await succeeded((await admin.servers.migrateServer({ id: fromVolume.id, host: A_NAME!, requestId: `cm-boot-${env.id}` })).operation!.name);
    assert.equal((await settled(admin, fromVolume.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE, 120_000)).host, A_NAME);
    const bootedOnA = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disks", () => true, "the cold-migrated guest prints its disks on A");
    assert.match(bootedOnA.line, new RegExp(`^novamesh-test-guest: disks vda=${GiB} vdb=${2 * GiB}$`), "booted on A with both volumes");
    const headOnA = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disk vdb head=", () => true, "the cold-migrated guest reads vdb");
    assert.ok(headOnA.line.includes(marker), `the guest cold-migrated to A reads the data volume: ${headOnA.line}`);
    await succeeded((await admin.servers.confirmResize({ id: fromVolume.id, requestId: `cm-confirm-${env.id}` })).operation!.name);
    await eventually(async () => (await daemons()).every((d) => d.exports.every(([client]) => client === A_NAME)), { what: "B's exports ended at the confirm", timeoutMs: 30_000 });
    assert.deepEqual((await daemons()).map((d) => d.exports.length), [1, 1], "one export of each volume, for host A");
    t.diagnostic(`cold-migrated with its two volumes, booted and read in ${Date.now() - cold} ms`);

    // Shelved (no snapshot: its disk is the volume) and unshelved: no export while it is offloaded; its new host boots it with both.
    const shelving = Date.now();
    await succeeded((await admin.servers.shelveServer({ id: fromVolume.id, requestId: `shelve-boot-${env.id}` })).operation!.name);
    await eventually(async () => ((await daemons()).length === 0 ? true : undefined), { what: "no export while shelved", timeoutMs: 30_000 });
    assert.deepEqual((await volume(rootId)).attachments.map((a) => [a.serverId, a.device]), [[fromVolume.id, "vda"]], "still attached while shelved");
    await succeeded((await admin.servers.unshelveServer({ id: fromVolume.id, requestId: `unshelve-boot-${env.id}` })).operation!.name);
    const unshelved = await settled(admin, fromVolume.id, ServerStatus.SERVER_STATUS_ACTIVE, 120_000);
    const bootedAgain = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disks", () => true, "the unshelved guest prints its disks");
    assert.match(bootedAgain.line, new RegExp(`^novamesh-test-guest: disks vda=${GiB} vdb=${2 * GiB}$`), "unshelved with both volumes");
    assert.deepEqual((await daemons()).map((d) => d.exports.map(([client]) => client)), [[unshelved.host], [unshelved.host]], "exported to its new host only");
    t.diagnostic(`shelved and unshelved on ${unshelved.host} in ${Date.now() - shelving} ms`);

    // Rebuilt from another image (the guest's kernel, a disk that starts with a marker): its volume host writes that image over
    // the root volume, its host boots it again from the volume, whose first bytes the guest prints.
    const rebuilding = Date.now();
    const rebuiltMarker = `novamesh-rebuilt-${randomBytes(4).toString("hex")}`;
    const nextImage = await markerImage(`guest-next-${env.id}`, rebuiltMarker);
    await succeeded((await admin.servers.rebuildServer({ id: fromVolume.id, imageId: nextImage, requestId: `rebuild-boot-${env.id}` })).operation!.name);
    const rebuiltHead = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disk vda head=", (l) => l.includes(rebuiltMarker), "the rebuilt guest's root volume holds the new image");
    assert.ok(rebuiltHead.line.includes(rebuiltMarker));
    const rebuiltData = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disk vdb head=", (l) => l.includes(marker), "the rebuilt guest still reads its data volume");
    assert.ok(rebuiltData.line.includes(marker));
    assert.equal((await volume(rootId)).sourceImageId, nextImage, "the root volume's source image is the new one");
    t.diagnostic(`rebuilt on its volume in ${Date.now() - rebuilding} ms`);
    await succeeded((await admin.servers.detachVolume({ id: fromVolume.id, volumeId })).operation!.name);
    const onlyRoot = await consoleLine(fromVolume.id, 0, "novamesh-test-guest: disks", (l) => !l.includes(" vdb="), "the volume-booted guest, now on B, lists its root alone");
    assert.match(onlyRoot.line, new RegExp(`^novamesh-test-guest: disks vda=${GiB}$`));

    // 6. The data volume deleted; the server deleted, its root volume with it; their files, exports and daemons gone.
    await succeeded((await admin.volumes.deleteVolume({ id: volumeId, requestId: `delete-data-${env.id}` })).operation!.name);
    await admin.servers.deleteServer({ id: fromVolume.id });
    for (const id of [volumeId, rootId]) {
      await eventually(async () => (await failure(admin.volumes.getVolume({ id }))).code === status.NOT_FOUND, { what: `volume ${id} deleted with its server`, timeoutMs: 90_000 });
    }
    assert.deepEqual((await readdir(join(dir, volumeHost, "pool"))).filter((n) => n.startsWith(volumeId) || n.startsWith(rootId)), [], "their files are gone from the pool");
    assert.deepEqual(await daemons(), [], "no export is left");
    assert.equal(await alive(forB[0]!.pid), false, "the data volume's export daemon has stopped");
    await admin.servers.deleteServer({ id: onA.id });
    await eventually(async () => (await admin.servers.listServers({})).servers.every((s) => s.id !== onA.id && s.id !== fromVolume.id), { what: "the servers deleted", timeoutMs: 60_000 });
    t.diagnostic(`done ${Date.now() - started} ms into the test`);
  });
});
