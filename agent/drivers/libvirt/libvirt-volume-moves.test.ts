/**
 * Guests with volumes moving from host A to host B on real hypervisors
 * (`scripts/libvirtd-hosts.sh up`; the test guest, which prints its virtio
 * disks, and the first bytes of each, on the console), with the volume
 * host of test-volume-host.ts: a volume is never copied, the guest on B
 * opens the export made for B. A live migration; a cold migration of a
 * guest with a data volume (the target defines it with the volume); a
 * cold migration of a guest booted from a volume (no disk handed over: B
 * boots it from its root volume). Confirm removes A's copy.
 * Runs under `npm run test:libvirt`; skipped when the hosts are not named.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { rejectsWith } from "../contract/kit.js";
import { DriverError, InstanceNotFoundError } from "../errors.js";
import { loadLibvirt, VIR_DOMAIN_XML_INACTIVE, type LibvirtConnection } from "./binding/index.js";
import { domainName, parseDisks } from "./domain-xml.js";
import type { Driver } from "../driver.js";
import type { LibvirtDriverOptions } from "./libvirt-driver.js";
import { consoleLine as waitForLine } from "./test-console.js";
import { A, A_NAME, B, B_NAME, GUEST, MiB, VolumeTestHost, volumeHostSkip as skip } from "./test-volume-host.js";

describe("libvirt driver: guests with volumes move from host A to host B (qemu, NBD with TLS)", { skip }, () => {
  let host: VolumeTestHost;

  before(async () => {
    host = await VolumeTestHost.start("nmmove-", 26100);
  });

  after(async () => {
    await host?.close();
  });

  /** A driver on each host, their instances under `<dir>-A` and `<dir>-B` (migrating live when `live`), and a connection to B. */
  /** After a test: the guest gone from both hosts, B's connection and the drivers closed (each step tried, failures reported). */
  const cleanUpPair = (t: TestContext, p: { source: Driver; target: Driver; connB: { close(): Promise<unknown> } }, instanceId: string) =>
    cleanUp(t, [
      ["destroying the guest on B", () => p.target.destroy({ instanceId })],
      ["destroying the guest on A", () => p.source.destroy({ instanceId })],
      ["closing B's connection", () => p.connB.close()],
      ["closing the drivers", () => Promise.all([p.source.close(), p.target.close()])],
    ]);
  const pair = async (dir: string, extra: Partial<LibvirtDriverOptions>, live = false) => {
    const on = (hostname: string, uri: string) => host.driverOn(hostname, uri, `${dir}-${hostname}`, { ...extra, ...(live ? { liveMigrationUri: uri } : {}) });
    const source = on(A_NAME!, A!);
    const target = on(B_NAME!, B!);
    await Promise.all([source.init(), target.init()]);
    const connB: LibvirtConnection = await loadLibvirt().open(B!);
    return { source, target, connB };
  };

  /** The attachment and NBD source of the domain's disk `target`, live and in its definition, on the host of `conn`. */
  const diskOn = async (conn: LibvirtConnection, instanceId: string, target: string) => {
    const dom = await conn.lookupDomainByName(domainName(instanceId));
    const [live, config] = await Promise.all([dom.getXMLDesc(0), dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE)]).finally(() => dom.free());
    const disk = (xml: string) => {
      const d = parseDisks(xml).find((x) => x.target === target);
      return [d?.attachmentId, d?.nbd];
    };
    return { live: disk(live), config: disk(config) };
  };

  /** Runs each cleanup step, saying which failed (an instance already gone is no failure). */
  const cleanUp = async (t: TestContext, steps: readonly (readonly [string, () => Promise<unknown>])[]) => {
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (err) {
        if (!(err instanceof DriverError && err.code === "NOT_FOUND")) t.diagnostic(`cleanup: ${what} failed: ${String(err)}`);
      }
    }
  };

  /** Whether the image store holds the disk a cold migration hands over. */
  const migratingDiskStored = (instanceId: string) =>
    stat(join(host.root, "store", `migration-${instanceId}`)).then(
      () => true,
      () => false,
    );

  test("a guest with a volume live-migrates from A to B: B's disk opens the export made for B (the volume is not copied), the guest reads its data there, and A's export can end", { timeout: 240_000 }, async (t: TestContext) => {
    const { source, target, connB } = await pair("lm", { detachTimeoutSeconds: 20, liveMigrationPollMs: 200 }, true);
    const inst = host.guest();
    const instanceId = inst.id;
    try {
      await source.spawn({ instance: inst });
      const first = await waitForLine(source, instanceId, 0, "novamesh-test-guest: disks", () => true, 40);
      const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
      const volumeId = await host.volumeWith(marker);
      const onA = await host.exportTo(volumeId, A_NAME!);
      await source.attachVolume({ instanceId, ...onA });
      const headA = await waitForLine(source, instanceId, first.length, "novamesh-test-guest: disk vdb head=", () => true, 30);
      assert.ok(headA.line.includes(marker), `the guest on A reads the volume: ${headA.line}`);

      // The volume host exports the volume to B as well, under a new export id, while A's export serves on.
      const moveId = `move-${randomBytes(4).toString("hex")}`;
      const onB = await host.backend.export(volumeId, moveId, B_NAME!);
      assert.equal(onB.port, onA.connection.port, "the volume's one daemon serves both hosts");
      await target.preLiveMigration({ instance: inst, sourceHost: A_NAME! });
      const volumes = [{ attachmentId: onA.attachmentId, export: { host: onB.host, port: onB.port, exportName: onB.exportName } }];
      const started = Date.now();
      await source.liveMigrate({ instanceId, targetHost: B_NAME!, targetUri: target.migrationUri!, volumes });
      t.diagnostic(`live migration A → B of a 256 MiB guest with a 64 MiB volume attached: ${Date.now() - started} ms`);
      await target.postLiveMigration({ instanceId, sourceHost: A_NAME! });
      assert.equal(await target.powerState({ instanceId }), "RUNNING");

      const there = { host: onB.host, port: onB.port, exportName: moveId };
      assert.deepEqual(await diskOn(connB, instanceId, "vdb"), { live: [onA.attachmentId, there], config: [onA.attachmentId, there] }, "the running guest's vdb and its definition on B open B's export");

      // A's export ends; the guest on B keeps the volume through its own.
      await host.backend.unexport(volumeId, onA.attachmentId);
      const left = (await host.backend.list()).exports.filter((e) => e.volumeId === volumeId).map((e) => [e.attachmentId, e.client]);
      assert.deepEqual(left, [[moveId, B_NAME]]);
      const connection = { ...there, tls: true } as const;
      assert.deepEqual(await target.volumes({ instanceId }), [{ attachmentId: onA.attachmentId, device: "vdb", connection }]);
      // Detached and attached again on B, the guest prints the volume's first bytes: the same volume, read through B's export.
      await target.detachVolume({ instanceId, attachmentId: onA.attachmentId });
      const gone = await waitForLine(target, instanceId, 0, "novamesh-test-guest: disks", (l) => !l.includes("vdb="), 30);
      await target.attachVolume({ instanceId, attachmentId: onA.attachmentId, connection });
      const headB = await waitForLine(target, instanceId, gone.length, "novamesh-test-guest: disk vdb head=", () => true, 30);
      assert.ok(headB.line.includes(marker), `the guest on B reads what the volume held: ${headB.line}`);
      await target.detachVolume({ instanceId, attachmentId: onA.attachmentId });
      await host.backend.unexport(volumeId, moveId);
    } finally {
      await cleanUpPair(t, { source, target, connB }, instanceId);
    }
  });

  test("a guest spawned with a data volume cold-migrates from A to B: B defines it with the volume's export made for B, the guest there reads what was on it; confirm removes A's copy", { timeout: 180_000 }, async (t: TestContext) => {
    const { source, target, connB } = await pair("cold", {});
    const inst = host.guest();
    const instanceId = inst.id;
    try {
      const marker = `novamesh-volume-${randomBytes(4).toString("hex")}`;
      const volumeId = await host.volumeWith(marker);
      const onA = await host.exportTo(volumeId, A_NAME!);
      const started = Date.now();
      await source.spawn({ instance: inst, volumes: [{ device: "vdb", ...onA }] });
      const headA = await waitForLine(source, instanceId, 0, "novamesh-test-guest: disk vdb head=", () => true, 40);
      assert.ok(headA.line.includes(marker), `the guest on A has the volume from its boot: ${headA.line}`);
      const bootedA = Date.now();
      await source.migrateDiskAndPowerOff({ instanceId, targetHost: B_NAME!, timeoutSeconds: 10 });
      assert.equal(await source.powerState({ instanceId }), "SHUTDOWN");
      const handedOver = Date.now();
      const onB = await host.exportTo(volumeId, B_NAME!, `move-${randomBytes(4).toString("hex")}`);
      await target.finishMigration({ instance: { ...inst, memoryMb: 288 }, sourceHost: A_NAME!, powerOn: true, volumes: [{ attachmentId: onA.attachmentId, device: "vdb", connection: onB.connection }] });
      const headB = await waitForLine(target, instanceId, 0, "novamesh-test-guest: disk vdb head=", () => true, 40);
      t.diagnostic(`cold migration A → B with a data volume: the guest on A read it ${bootedA - started} ms after the spawn began; stopped and handed over in ${handedOver - bootedA} ms; the guest on B read it ${Date.now() - handedOver} ms later`);
      assert.ok(headB.line.includes(marker), `the guest on B reads what the volume held: ${headB.line}`);
      const there = { host: onB.connection.host, port: onB.connection.port, exportName: onB.connection.exportName };
      assert.deepEqual(await diskOn(connB, instanceId, "vdb"), { live: [onA.attachmentId, there], config: [onA.attachmentId, there] });
      assert.deepEqual(await target.volumes({ instanceId }), [{ attachmentId: onA.attachmentId, device: "vdb", connection: onB.connection }]);
      assert.equal(await migratingDiskStored(instanceId), false, "B took the handed-over disk out of the image store");

      await source.confirmMigration({ instanceId });
      await assert.rejects(source.powerState({ instanceId }), InstanceNotFoundError);
      await host.backend.unexport(volumeId, onA.attachmentId);
      assert.equal(await target.powerState({ instanceId }), "RUNNING");
      await target.destroy({ instanceId });
      await host.backend.unexport(volumeId, onB.attachmentId);
    } finally {
      await cleanUpPair(t, { source, target, connB }, instanceId);
    }
  });

  test("a guest booted from a volume cold-migrates from A to B with bootsFromVolume: no disk handed over, B boots it from the root volume's export made for B with no local disk; confirm removes A's copy, the volume stays", { timeout: 180_000 }, async (t: TestContext) => {
    const { source, target, connB } = await pair("cold-root", {});
    // The volume's source image: never fetched (the store would make a blank disk for it); its kernel and ramdisk are.
    const inst = { ...host.guest(), image: { ...host.guest().image, id: "7e3f0000-0000-4000-8000-00000000001d" } };
    const instanceId = inst.id;
    try {
      const volumeId = `vol-${randomBytes(4).toString("hex")}`;
      const sizeBytes = 128 * MiB;
      await host.backend.create(volumeId, "p1", sizeBytes, { kind: "image", path: join(GUEST, "disk.qcow2"), format: "qcow2" });
      const onA = await host.exportTo(volumeId, A_NAME!);
      const started = Date.now();
      await source.spawn({ instance: inst, rootVolume: onA });
      const disksA = await waitForLine(source, instanceId, 0, "novamesh-test-guest: disks", () => true, 40);
      assert.equal(disksA.line, `novamesh-test-guest: disks vda=${sizeBytes}`);
      const bootedA = Date.now();
      await rejectsWith(source.migrateDiskAndPowerOff({ instanceId, targetHost: B_NAME!, timeoutSeconds: 10 }), "INVALID_STATE", false);
      assert.equal(await source.powerState({ instanceId }), "RUNNING", "without bootsFromVolume: refused, still running");
      await source.migrateDiskAndPowerOff({ instanceId, targetHost: B_NAME!, timeoutSeconds: 10, bootsFromVolume: true });
      assert.equal(await source.powerState({ instanceId }), "SHUTDOWN");
      assert.equal(await migratingDiskStored(instanceId), false, "no disk handed over through the image store");
      const handedOver = Date.now();

      const onB = await host.exportTo(volumeId, B_NAME!, `move-${randomBytes(4).toString("hex")}`);
      await target.finishMigration({ instance: { ...inst, memoryMb: 288 }, sourceHost: A_NAME!, powerOn: true, rootVolume: { attachmentId: onA.attachmentId, connection: onB.connection } });
      const disksB = await waitForLine(target, instanceId, 0, "novamesh-test-guest: disks", () => true, 40);
      t.diagnostic(`cold migration A → B of a volume-booted guest: up on A ${bootedA - started} ms after the spawn began; on B "${disksB.line}" ${Date.now() - handedOver} ms after A handed over`);
      assert.equal(disksB.line, `novamesh-test-guest: disks vda=${sizeBytes}`, "B boots it from the volume");
      const there = { host: onB.connection.host, port: onB.connection.port, exportName: onB.connection.exportName };
      assert.deepEqual(await diskOn(connB, instanceId, "vda"), { live: [onA.attachmentId, there], config: [onA.attachmentId, there] });
      assert.deepEqual(await target.volumes({ instanceId }), [{ attachmentId: onA.attachmentId, device: "vda", connection: onB.connection }]);
      const instancesB = join(host.root, `cold-root-${B_NAME}`, "instances");
      assert.deepEqual((await readdir(join(instancesB, instanceId))).filter((f) => f !== "console.log"), [], "no local disk on B");
      assert.equal((await readdir(join(instancesB, "_base"))).includes(inst.image.id), false, "the volume's source image was not fetched");

      await source.confirmMigration({ instanceId });
      await assert.rejects(source.powerState({ instanceId }), InstanceNotFoundError);
      await host.backend.unexport(volumeId, onA.attachmentId);
      assert.equal(await target.powerState({ instanceId }), "RUNNING");
      await target.destroy({ instanceId });
      assert.ok((await host.backend.list()).volumes.some((v) => v.id === volumeId), "the volume host still has the volume");
      await host.backend.unexport(volumeId, onB.attachmentId);
    } finally {
      await cleanUpPair(t, { source, target, connB }, instanceId);
    }
  });
});
