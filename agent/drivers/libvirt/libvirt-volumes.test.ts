/**
 * Volumes attached to a real guest on host A (`scripts/libvirtd-hosts.sh
 * up`; the test guest of `scripts/build-test-guest.sh`, which prints its
 * virtio disks on the console): a file backend (agent/volume/file) exports
 * a qcow2 volume over NBD with TLS to host A's certificate name, qemu opens
 * it with host A's client certificate (qemu.conf's nbd_tls_x509_cert_dir),
 * the guest sees the disk and what was written on it, and no longer after
 * the detach; an export made for host B is refused to host A. The volume
 * host is test-volume-host.ts's; libvirt-volume-moves.test.ts moves guests
 * with volumes to host B.
 * Runs under `npm run test:libvirt`; skipped when the hosts are not named.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import type { FileVolumeBackend } from "../../volume/file/file-backend.js";
import { driverContract } from "../contract.js";
import { DriverError, InstanceNotFoundError } from "../errors.js";
import type { LibvirtDriver } from "./libvirt-driver.js";
import { loadLibvirt, VIR_DOMAIN_XML_INACTIVE, type LibvirtConnection } from "./binding/index.js";
import { domainName, parseDisks } from "./domain-xml.js";
import { consoleLine as waitForLine, readyWaiter } from "./test-console.js";
import { A, A_NAME, B_NAME, GiB, GUEST, MiB, VolumeTestHost, volumeHostSkip as skip } from "./test-volume-host.js";

describe("libvirt driver: volumes over NBD with TLS on a real guest (qemu, host A)", { skip }, () => {
  let host: VolumeTestHost;
  let root: string;
  let backend: FileVolumeBackend;
  let driver: LibvirtDriver;
  let conn: LibvirtConnection;
  const spawned: string[] = [];
  /** The volume of each attachment the contract's tests made. */
  const contractVolumes = new Map<string, string>();

  const guest = () => host.guest();
  const volumeWith = (marker: string, sizeBytes?: number) => host.volumeWith(marker, sizeBytes);
  const exportTo = (volumeId: string, client: string) => host.exportTo(volumeId, client);

  /** Waits (≤ `seconds`) for a console line after `from` bytes that starts with `prefix` and satisfies `ok`. */
  const consoleLine = (id: string, from: number, prefix: string, ok: (line: string) => boolean, seconds: number) => waitForLine(driver, id, from, prefix, ok, seconds);

  /** The attachment ids of the domain's volume disks: live, and in its definition. */
  const xmlVolumes = async (id: string) => {
    const dom = await conn.lookupDomainByName(domainName(id));
    try {
      const ids = (xml: string) => parseDisks(xml).flatMap((d) => (d.attachmentId ? [`${d.target}=${d.attachmentId}`] : []));
      return { live: ids(await dom.getXMLDesc(0)), config: ids(await dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE)) };
    } finally {
      dom.free();
    }
  };

  /** A running guest whose first "disks" line (the root disk only) has been printed. */
  const bootGuest = async () => {
    const inst = guest();
    spawned.push(inst.id);
    await driver.spawn({ instance: inst });
    const first = await consoleLine(inst.id, 0, "novamesh-test-guest: disks", () => true, 40);
    assert.match(first.line, /^novamesh-test-guest: disks vda=\d+$/, "the guest starts with its root disk only");
    return { inst, from: first.length };
  };

  /** Waits (≤ 40 s) until the guest printed one more ready line than at the last call for this instance. */
  const guestUp = readyWaiter(40_000);

  before(async () => {
    // One port per exported volume: the contract's tests keep a volume exported per attachment until the end.
    host = await VolumeTestHost.start("nmvol-", 22000);
    ({ root, backend } = host);
    driver = host.driverOn(A_NAME!, A!, ".", { detachTimeoutSeconds: 20 });
    await driver.init();
    conn = await loadLibvirt().open(A!);
  });

  after(async () => {
    const failures: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${what}: ${String(err)}`);
      }
    };
    for (const id of spawned) await step(`destroying ${id}`, () => driver.destroy({ instanceId: id }));
    // A contract test that failed half way leaves its guest: any domain with files under this test's directory.
    await step("removing guests left behind", async () => {
      for (const dom of (await conn?.listAllDomains()) ?? []) {
        try {
          if (!(await dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE)).includes(root)) continue;
          if (await dom.isActive()) await dom.destroy();
          await dom.undefine();
        } finally {
          dom.free();
        }
      }
    });
    await step("closing the driver", () => driver?.close() ?? Promise.resolve());
    await step("closing the libvirt connection", () => conn?.close() ?? Promise.resolve());
    await step("stopping the export daemons", () => host?.close() ?? Promise.resolve());
    assert.deepEqual(failures, [], "every cleanup step worked");
  });

  // The contract's volume tests with real exports to host A: a blank volume for each attachment.
  driverContract(
    "libvirt (qemu, real guest and exports)",
    async (hostname) => host.driverOn(hostname, A!, `contract-${hostname}`),
    {
      only: "volumeAttach",
      guest,
      guestUp,
      // scripts/test-libvirt.sh runs this file beside others that start guests on host A.
      hostShared: true,
      volumeConnection: async (attachmentId) => {
        const volumeId = `vol-${randomBytes(4).toString("hex")}`;
        contractVolumes.set(attachmentId, volumeId);
        await backend.create(volumeId, "p1", 16 * MiB, { kind: "blank" });
        const e = await backend.export(volumeId, attachmentId, A_NAME!);
        return { host: e.host, port: e.port, exportName: e.exportName, tls: true };
      },
      growVolume: async (attachmentId, sizeBytes) => {
        const volumeId = contractVolumes.get(attachmentId);
        assert.ok(volumeId, `attachment ${attachmentId} has a volume`);
        await backend.extend(volumeId, sizeBytes);
      },
    },
  );

  test("a guest booted from a volume made from the test guest's disk: vda is the volume (the console says its size), no base image fetched nor overlay made; destroy leaves the volume", async (t: TestContext) => {
    const volumeId = `vol-${randomBytes(4).toString("hex")}`;
    const sizeBytes = 128 * MiB;
    assert.equal((await backend.create(volumeId, "p1", sizeBytes, { kind: "image", path: join(GUEST, "disk.qcow2"), format: "qcow2" })).sizeBytes, sizeBytes);
    const { attachmentId, connection } = await exportTo(volumeId, A_NAME!);
    // The volume's source image: never fetched (the store would make a blank disk for it); its kernel and ramdisk are.
    const inst = { ...guest(), image: { ...guest().image, id: "7e3f0000-0000-4000-8000-00000000001d" } };
    spawned.push(inst.id);
    const started = Date.now();
    await driver.spawn({ instance: inst, rootVolume: { attachmentId, connection } });
    const spawnedMs = Date.now() - started;
    const ready = await consoleLine(inst.id, 0, "novamesh-test-guest: ready", () => true, 60);
    const readyMs = Date.now() - started;
    const disks = await consoleLine(inst.id, 0, "novamesh-test-guest: disks", () => true, 30);
    t.diagnostic(`boot from a volume: spawn resolved after ${spawnedMs} ms, the guest printed "${ready.line}" ${readyMs} ms after the call began; "${disks.line}"`);
    assert.equal(disks.line, `novamesh-test-guest: disks vda=${sizeBytes}`, "the root disk is the volume, at its size");
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [{ attachmentId, device: "vda", connection }]);
    assert.deepEqual(await xmlVolumes(inst.id), { live: [`vda=${attachmentId}`], config: [`vda=${attachmentId}`] });
    const instances = join(root, "instances");
    assert.deepEqual((await readdir(join(instances, inst.id))).filter((f) => f !== "console.log"), [], "no local disk in the instance directory");
    assert.equal((await readdir(join(instances, "_base"))).includes(inst.image.id), false, "the volume's source image was not fetched");

    await guestUp(driver, inst.id); // counts the first boot's ready line
    await driver.reboot({ instanceId: inst.id, hard: true });
    await guestUp(driver, inst.id);
    const log = await driver.consoleOutput({ instanceId: inst.id, maxBytes: 1 << 20 });
    const again = await consoleLine(inst.id, log.lastIndexOf("novamesh-test-guest: ready"), "novamesh-test-guest: disks", () => true, 30);
    assert.equal(again.line, `novamesh-test-guest: disks vda=${sizeBytes}`, "after a hard reboot it boots from the volume again");

    const invalidState = (err: unknown) => err instanceof DriverError && err.code === "INVALID_STATE";
    await assert.rejects(driver.snapshot({ instanceId: inst.id, imageId: "7e3f0000-0000-4000-8000-00000000001e", imageName: "root" }), invalidState, "no local disk to snapshot");
    await assert.rejects(driver.rebuild({ instance: inst }), invalidState, "no local disk to rebuild");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "refused, it runs on");

    await driver.destroy({ instanceId: inst.id });
    await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
    assert.ok((await backend.list()).volumes.some((v) => v.id === volumeId), "the volume host still has the volume");
    assert.ok((await stat(join(root, "p1", `${volumeId}.qcow2`))).size > 0, "the volume's file is still there");
    await backend.unexport(volumeId, attachmentId);
  });

  test("a volume grown while attached: the guest held paused while its volume host serves it again, then told its new size, running again, the volume keeping what was written on it", async (t: TestContext) => {
    const { inst, from } = await bootGuest();
    const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
    const volumeId = await volumeWith(marker, GiB);
    const { attachmentId, connection } = await exportTo(volumeId, A_NAME!);
    await driver.attachVolume({ instanceId: inst.id, attachmentId, connection });
    const before = await consoleLine(inst.id, from, "novamesh-test-guest: disks", (l) => l.includes("vdb="), 30);
    assert.match(before.line, new RegExp(`^novamesh-test-guest: disks vda=\\d+ vdb=${GiB}$`));

    const started = Date.now();
    await driver.holdVolume({ instanceId: inst.id, attachmentId });
    assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED", "held while the volume host serves the volume again");
    const holding = Date.now();
    await backend.extend(volumeId, 2 * GiB);
    const served = Date.now();
    await driver.extendVolume({ instanceId: inst.id, attachmentId, sizeBytes: 2 * GiB });
    const took = Date.now();
    t.diagnostic(`extend: held in ${holding - started} ms, the volume host served it again in ${served - holding} ms, the hypervisor reconnected, took the size and resumed in ${took - served} ms; paused ${took - started} ms in all`);
    const after = await consoleLine(inst.id, before.length, "novamesh-test-guest: disks", () => true, 30);
    assert.match(after.line, new RegExp(`^novamesh-test-guest: disks vda=\\d+ vdb=${2 * GiB}$`), "the next disks line the guest prints has the new size");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "the hold ended");
    await driver.extendVolume({ instanceId: inst.id, attachmentId, sizeBytes: 2 * GiB });
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "again: still running");

    // Attached again, the guest reads the volume's first bytes over the export it reconnected to.
    await driver.detachVolume({ instanceId: inst.id, attachmentId });
    const gone = await consoleLine(inst.id, after.length, "novamesh-test-guest: disks", (l) => !l.includes("vdb="), 15);
    await driver.attachVolume({ instanceId: inst.id, attachmentId, connection });
    const head = await consoleLine(inst.id, gone.length, "novamesh-test-guest: disk vdb head=", () => true, 30);
    assert.ok(head.line.includes(marker), `the guest reads what was written before the extend: ${head.line}`);
    await driver.detachVolume({ instanceId: inst.id, attachmentId });
    await backend.unexport(volumeId, attachmentId);
  });

  test("a volume exported to host A: the guest sees it as vdb with its size and what was written on it; after the detach it is gone from the guest and the domain", async (t: TestContext) => {
    const { inst, from } = await bootGuest();
    const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
    const volumeId = await volumeWith(marker);
    const { attachmentId, connection } = await exportTo(volumeId, A_NAME!);

    let started = Date.now();
    const { device } = await driver.attachVolume({ instanceId: inst.id, attachmentId, connection });
    assert.equal(device, "vdb", "the first free device after the root disk");
    const head = await consoleLine(inst.id, from, "novamesh-test-guest: disk vdb head=", () => true, 30);
    t.diagnostic(`attach: the guest printed "${head.line}" ${Date.now() - started} ms after the call began`);
    assert.ok(head.line.includes(marker), `the guest reads what was written on the volume: ${head.line}`);
    const sizes = await consoleLine(inst.id, from, "novamesh-test-guest: disks", (l) => l.includes("vdb="), 30);
    assert.match(sizes.line, new RegExp(`^novamesh-test-guest: disks vda=\\d+ vdb=${64 * MiB}$`));
    assert.deepEqual(await xmlVolumes(inst.id), { live: [`vdb=${attachmentId}`], config: [`vdb=${attachmentId}`] });
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [{ attachmentId, device: "vdb", connection }]);
    assert.deepEqual(await driver.attachVolume({ instanceId: inst.id, attachmentId, connection, device: "vdc" }), { device: "vdb" }, "again: the same disk");

    started = Date.now();
    await driver.detachVolume({ instanceId: inst.id, attachmentId });
    t.diagnostic(`detach: resolved after ${Date.now() - started} ms`);
    const gone = await consoleLine(inst.id, sizes.length, "novamesh-test-guest: disks", (l) => !l.includes("vdb="), 15);
    assert.match(gone.line, /^novamesh-test-guest: disks vda=\d+$/);
    assert.deepEqual(await xmlVolumes(inst.id), { live: [], config: [] }, "neither the live XML nor the definition has the disk");
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), []);
    await driver.detachVolume({ instanceId: inst.id, attachmentId });
    await backend.unexport(volumeId, attachmentId); // qemu closed it: the volume host may end the export
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
  });

  test("an export made for host B is refused to host A: VOLUME_CONNECT_FAILED, and the guest and the domain get no disk", async (t: TestContext) => {
    const { inst, from } = await bootGuest();
    const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
    const volumeId = await volumeWith(marker);
    const forB = await exportTo(volumeId, B_NAME!);
    const started = Date.now();
    await assert.rejects(driver.attachVolume({ instanceId: inst.id, ...forB }), (err: unknown) => {
      assert.ok(err instanceof DriverError, String(err));
      assert.equal(err.code, "VOLUME_CONNECT_FAILED", err.message);
      assert.match(err.message, new RegExp(`${forB.connection.host}:${forB.connection.port}`), "names the export");
      t.diagnostic(`refused after ${Date.now() - started} ms: ${err.message}`);
      return true;
    });
    assert.deepEqual(await xmlVolumes(inst.id), { live: [], config: [] }, "nothing attached, live or in the definition");
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), []);

    // The same volume exported to host A instead (after B's export ends) attaches: what was refused was the identity.
    await backend.unexport(volumeId, forB.attachmentId);
    const forA = await exportTo(volumeId, A_NAME!);
    await driver.attachVolume({ instanceId: inst.id, ...forA });
    // The root disk's head line may come after `from` (the guest prints it just after its first disk list): not an attachment.
    const head = await consoleLine(inst.id, from, "novamesh-test-guest: disk ", (l) => !l.startsWith("novamesh-test-guest: disk vda "), 30);
    assert.equal(head.line.startsWith("novamesh-test-guest: disk vdb head="), true, `the first disk the guest saw is host A's attachment: ${head.line}`);
    assert.ok(head.line.includes(marker));
    await driver.detachVolume({ instanceId: inst.id, ...forA });
    await backend.unexport(volumeId, forA.attachmentId);
  });
});
