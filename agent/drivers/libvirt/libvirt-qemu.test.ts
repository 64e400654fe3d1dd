/**
 * The libvirt driver's live migration on two real libvirtds running qemu
 * (`scripts/libvirtd-hosts.sh up`): the contract's live migration tests, and
 * an abort in the middle of a copy; and interface hot-plug on host A: the
 * contract's interface tests and what a real guest (the test guest of
 * `scripts/build-test-guest.sh`, in NOVAMESH_TEST_GUEST) sees of it. Runs when NOVAMESH_LIBVIRT_A and
 * NOVAMESH_LIBVIRT_B name the two daemons (`npm run test:libvirt` sets them);
 * skipped otherwise. The rest of the contract runs on libvirt's test
 * hypervisor in libvirt-driver.test.ts.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { driverContract } from "../contract.js";
import type { Driver } from "../driver.js";
import { DriverError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec } from "../types.js";
import { loadLibvirt, VIR_DOMAIN_XML_INACTIVE, type LibvirtConnection } from "./binding/index.js";
import { domainName, parseInterfaces } from "./domain-xml.js";
import { DirectoryImageStore } from "./image-store.js";
import { BlankingStore } from "./test-image-store.js";
import { LibvirtDriver } from "./libvirt-driver.js";
import { consoleLine, readyWaiter } from "./test-console.js";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const A = process.env.NOVAMESH_LIBVIRT_A;
const B = process.env.NOVAMESH_LIBVIRT_B;
const skip = A && B ? false : "NOVAMESH_LIBVIRT_A and NOVAMESH_LIBVIRT_B are not set (npm run test:libvirt starts two libvirtds)";
if (skip && process.env.NOVAMESH_LIBVIRT_REQUIRED === "1") throw new Error(skip);

let root: string;
let store: BlankingStore;
let made = 0;

/**
 * Awaits the cleanup steps of a test that may have failed; a step that fails
 * is a diagnostic of the test, so it neither hides the test's own error nor
 * goes unseen.
 */
async function cleanUp(t: TestContext, steps: Promise<unknown>[]): Promise<void> {
  for (const r of await Promise.allSettled(steps)) {
    if (r.status === "rejected") t.diagnostic(`cleanup failed: ${String(r.reason)}`);
  }
}

/** A driver on A or B in turn, each with an instances path of its own. */
async function makeHost(hostname: string, extra: { bandwidthMiBs?: number } = {}): Promise<LibvirtDriver> {
  const uri = ++made % 2 === 1 ? A! : B!;
  return new LibvirtDriver({
    hostname,
    uri,
    liveMigrationUri: uri,
    instancesPath: join(root, `${hostname}-${made}`, "instances"),
    imageStore: store,
    diskGb: 20,
    allocationRatio: { memoryMb: 1, diskGb: 1 },
    imageCacheMinAgeSeconds: 0,
    shutdownRetrySeconds: 1,
    shutdownTimeoutSeconds: 3, // the firmware ignores ACPI: forced off after 3 s
    liveMigrationPollMs: 100,
    liveMigrationBandwidthMiBs: extra.bandwidthMiBs,
  });
}

describe("libvirt driver on two libvirtds (qemu)", { skip }, () => {
  before(async () => {
    root = await mkdtemp(join(tmpdir(), "novamesh-libvirt-qemu-"));
    store = new BlankingStore(new DirectoryImageStore(join(root, "store")));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
    root = undefined!;
    store = undefined!;
  });

  driverContract("libvirt (qemu, live migration)", (hostname) => makeHost(hostname), { only: "liveMigration" });

  test("an abort in the middle of a copy cancels the libvirt job: ABORTED, the source runs on, rollback leaves the target empty", async (t) => {
    // Capped at 1 MiB/s, so the copy outlasts the first progress poll.
    const source = await makeHost("abort-source", { bandwidthMiBs: 1 });
    const target = await makeHost("abort-target");
    await Promise.all([source.init(), target.init()]);
    const inst = testInstance({ memoryMb: 256 });
    try {
      await source.spawn({ instance: inst });
      await target.preLiveMigration({ instance: inst, sourceHost: "abort-source" });
      const ctl = new AbortController();
      const percents: number[] = [];
      const started = Date.now();
      // Aborted at the first progress of the copy itself (libvirt's job statistics), while the job runs.
      const onProgress = (p: number, message: string) => {
        percents.push(p);
        if (/copied/.test(message)) ctl.abort(new Error("operator cancelled"));
      };
      const migrating = source.liveMigrate(
        { instanceId: inst.id, targetHost: "abort-target", targetUri: target.migrationUri!, volumes: [], onProgress },
        { signal: ctl.signal },
      );
      await assert.rejects(migrating, (err: unknown) => {
        assert.ok(err instanceof DriverError, String(err));
        assert.equal(err.code, "ABORTED", err.message);
        assert.equal(err.retryable, false);
        return true;
      });
      assert.ok(Date.now() - started < 30_000, "the abort ended the job, it did not run to its end");
      assert.ok(!percents.includes(100), `no 100% progress: ${JSON.stringify(percents)}`);
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
      await target.rollbackLiveMigration({ instanceId: inst.id });
      assert.equal((await target.report()).instances.find((i) => i.serverId === inst.id), undefined);
      const left = await readdir(join(root, `abort-target-${made}`, "instances"));
      assert.deepEqual(left.filter((n) => n !== "_base"), [], "no overlay left on the target");
      await source.destroy({ instanceId: inst.id });
    } finally {
      // A failed run leaves no running guest on either daemon.
      await cleanUp(t, [source.destroy({ instanceId: inst.id }), target.destroy({ instanceId: inst.id })]);
      await Promise.all([source.close(), target.close()]);
    }
  });

  test("a live migration of an instance without an image (it boots from a volume) is prepared with no local disk: its memory held, no disk; rollback leaves nothing", async (t) => {
    const target = await makeHost("volume-target");
    const dir = join(root, `volume-target-${made}`, "instances");
    await target.init();
    const base = testInstance({ memoryMb: 256 });
    const inst = { ...base, image: { ...base.image, id: "", checksum: "" } };
    try {
      const before = await target.report();
      await target.preLiveMigration({ instance: inst, sourceHost: "volume-source" });
      assert.deepEqual(await readdir(join(dir, inst.id)), ["novamesh.json"], "no overlay in the instance directory");
      const prepared = await target.report();
      assert.equal(prepared.instances.find((i) => i.serverId === inst.id)?.powerState, "PAUSED", "the incoming instance is reported");
      assert.equal(prepared.freeDiskGb, before.freeDiskGb, "no disk held");
      assert.equal(prepared.freeMemoryMb, before.freeMemoryMb - 256, "its memory held");
      await target.rollbackLiveMigration({ instanceId: inst.id });
      assert.equal((await target.report()).instances.find((i) => i.serverId === inst.id), undefined);
      assert.deepEqual((await readdir(dir)).filter((n) => n !== "_base"), [], "nothing left on the target");
    } finally {
      await cleanUp(t, [target.rollbackLiveMigration({ instanceId: inst.id })]);
      await target.close();
    }
  });
});

describe("libvirt driver when libvirtd restarts (qemu)", { skip }, () => {
  before(async () => {
    root ??= await mkdtemp(join(tmpdir(), "novamesh-libvirt-qemu-"));
    store ??= new BlankingStore(new DirectoryImageStore(join(root, "store")));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test("calls go on after host A's libvirtd restarts: the driver reconnects, the guest ran on", async (t) => {
    made = 0; // the next driver is on A
    const driver = await makeHost("restart");
    await driver.init();
    const inst = testInstance({ memoryMb: 256 });
    try {
      await driver.spawn({ instance: inst });
      await promisify(execFile)("bash", [join(REPO, "scripts/libvirtd-hosts.sh"), "restart-a"]);
      // The first call after the restart may meet the dead connection (a retryable HYPERVISOR_UNAVAILABLE); the next reconnects.
      let report: Awaited<ReturnType<LibvirtDriver["report"]>> | undefined;
      for (let i = 0; i < 20 && !report; i++) {
        report = await driver.report().catch((err: unknown) => {
          assert.ok(err instanceof DriverError && err.code === "HYPERVISOR_UNAVAILABLE" && err.retryable, String(err));
          return undefined;
        });
        if (!report) await new Promise((r) => setTimeout(r, 500));
      }
      assert.ok(report, "the driver reconnected");
      assert.equal(report.instances.find((i) => i.serverId === inst.id)?.powerState, "RUNNING", "the guest kept running through the restart");
      await driver.pause({ instanceId: inst.id });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED");
      await driver.destroy({ instanceId: inst.id });
    } finally {
      await cleanUp(t, [driver.destroy({ instanceId: inst.id })]);
      await driver.close();
    }
  });
});

const GUEST = process.env.NOVAMESH_TEST_GUEST ?? "/tmp/novamesh-test-guest";
const run = promisify(execFile);

describe("libvirt driver: interface hot-plug (qemu, host A)", { skip }, () => {
  const kernelId = "7e3f0000-0000-4000-8000-00000000000a";
  const ramdiskId = "7e3f0000-0000-4000-8000-00000000000b";
  // A Linux bridge of the test's own, removed after.
  const bridge = `nmhp${process.pid % 100000}`;
  let conn: LibvirtConnection;

  /** The test guest, booted directly from its kernel and initramfs, announcing its NICs on the console. */
  const guest = (): InstanceSpec => {
    const base = testInstance({ memoryMb: 256 });
    return testInstance({
      memoryMb: 256,
      image: {
        ...base.image,
        id: "7e3f0000-0000-4000-8000-00000000000c", // a blank root disk (BlankingStore): the guest never reads it
        properties: { kernel_id: kernelId, ramdisk_id: ramdiskId, os_command_line: "console=ttyS0 quiet novamesh.tick=0" },
      },
    });
  };

  const driverOn = (hostname: string, extra: { detachTimeoutSeconds?: number } = {}) =>
    new LibvirtDriver({
      hostname,
      uri: A!,
      instancesPath: join(root, `${hostname}-${++made}`, "instances"),
      imageStore: store,
      diskGb: 20,
      allocationRatio: { memoryMb: 1, diskGb: 1 },
      imageCacheMinAgeSeconds: 0,
      shutdownRetrySeconds: 1,
      shutdownTimeoutSeconds: 5,
      detachTimeoutSeconds: extra.detachTimeoutSeconds,
    });

  /** The MACs of the domain's interfaces, as libvirt has them: live while it runs, else its definition. */
  const interfaceMacs = async (_driver: Driver, id: string): Promise<string[]> => {
    const dom = await conn.lookupDomainByName(domainName(id));
    try {
      const xml = await dom.getXMLDesc((await dom.isActive()) ? 0 : VIR_DOMAIN_XML_INACTIVE);
      return parseInterfaces(xml).map((i) => i.mac);
    } finally {
      dom.free();
    }
  };
  const definitionMacs = async (id: string): Promise<string[]> => {
    const dom = await conn.lookupDomainByName(domainName(id));
    try {
      return parseInterfaces(await dom.getXMLDesc(VIR_DOMAIN_XML_INACTIVE)).map((i) => i.mac);
    } finally {
      dom.free();
    }
  };

  /** Waits (≤ 30 s) until the guest printed one more ready line than at the last call for this instance. */
  const guestUp = readyWaiter(30_000);

  /** Waits (≤ `seconds`) for a "nics" line on the console, after `from` bytes, that satisfies `ok`. */
  const nicsLine = (driver: Driver, id: string, from: number, ok: (line: string) => boolean, seconds: number) =>
    consoleLine(driver, id, from, "novamesh-test-guest: nics", ok, seconds);

  before(async () => {
    root = await mkdtemp(join(tmpdir(), "novamesh-libvirt-qemu-"));
    store = new BlankingStore(new DirectoryImageStore(join(root, "store")));
    await store.put(kernelId, join(GUEST, "vmlinuz"));
    await store.put(ramdiskId, join(GUEST, "initrd.img"));
    await run("ip", ["link", "add", bridge, "type", "bridge"]);
    await run("ip", ["link", "set", bridge, "up"]);
    conn = await loadLibvirt().open(A!);
  });
  after(async () => {
    await conn?.close();
    await run("ip", ["link", "del", bridge]);
    await rm(root, { recursive: true, force: true });
  });

  driverContract("libvirt (qemu, real guest)", async (hostname) => driverOn(hostname), {
    only: "interfaceHotplug",
    bridge,
    guest,
    guestUp,
    interfaceMacs,
  });

  test("the guest sees a hot-plugged NIC with its MAC, and no longer after the detach", async (t) => {
    const driver = driverOn("nic-guest");
    await driver.init();
    const inst = guest();
    const vif = { portId: "p-1", mac: "fa:16:3e:4e:1c:01", bridge, tap: `tapnm${process.pid % 100000}`, mtu: 1450 };
    try {
      await driver.spawn({ instance: inst });
      await guestUp(driver, inst.id);
      const first = await nicsLine(driver, inst.id, 0, () => true, 10);
      assert.equal(first.line, "novamesh-test-guest: nics none", "the guest starts without a NIC");
      await assert.rejects(driver.attachInterface({ instanceId: inst.id, vif: { ...vif, mac: "FA-16-3E" } }), (err: unknown) => {
        assert.ok(err instanceof DriverError && err.code === "INVALID_INTERFACE" && !err.retryable, String(err));
        return true;
      });

      let started = Date.now();
      await driver.attachInterface({ instanceId: inst.id, vif });
      const plugged = await nicsLine(driver, inst.id, first.length, (l) => l.includes(vif.mac), 20);
      t.diagnostic(`attach: the guest listed "${plugged.line}" ${Date.now() - started} ms after the call began`);
      assert.match(plugged.line, new RegExp(`^novamesh-test-guest: nics eth\\d+=${vif.mac}$`));
      const { stdout: master } = await run("ip", ["-o", "link", "show", vif.tap]);
      assert.match(master, new RegExp(`master ${bridge}\\b`), "the tap is on the bridge");
      assert.match(master, /mtu 1450\b/);

      started = Date.now();
      await driver.detachInterface({ instanceId: inst.id, mac: vif.mac });
      t.diagnostic(`detach: resolved after ${Date.now() - started} ms`);
      assert.deepEqual(await interfaceMacs(driver, inst.id), [], "gone from the live XML");
      assert.deepEqual(await definitionMacs(inst.id), [], "and from the definition");
      const unplugged = await nicsLine(driver, inst.id, plugged.length, (l) => !l.includes(vif.mac), 10);
      assert.equal(unplugged.line, "novamesh-test-guest: nics none");
      await assert.rejects(run("ip", ["link", "show", vif.tap]), "the tap is gone");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    } finally {
      await cleanUp(t, [driver.destroy({ instanceId: inst.id })]);
      await driver.close();
    }
  });

  test("a guest that does not release the NIC (firmware only): DETACH_TIMEOUT, retryable, gone from the definition; gone after a stop", async (t) => {
    const driver = driverOn("nic-firmware", { detachTimeoutSeconds: 3 });
    await driver.init();
    const inst = testInstance({ memoryMb: 256 }); // a blank disk: the guest sits in the firmware, which ignores ACPI eject
    const vif = { portId: "p-2", mac: "fa:16:3e:4e:1c:02", bridge, tap: `tapfw${process.pid % 100000}`, mtu: 1450 };
    try {
      await driver.spawn({ instance: inst });
      await driver.attachInterface({ instanceId: inst.id, vif });
      assert.deepEqual(await interfaceMacs(driver, inst.id), [vif.mac]);
      for (const attempt of [1, 2]) {
        const started = Date.now();
        await assert.rejects(driver.detachInterface({ instanceId: inst.id, mac: vif.mac }), (err: unknown) => {
          assert.ok(err instanceof DriverError, String(err));
          assert.equal(err.code, "DETACH_TIMEOUT", err.message);
          assert.equal(err.retryable, true);
          return true;
        });
        const ms = Date.now() - started;
        t.diagnostic(`detach attempt ${attempt}: DETACH_TIMEOUT after ${ms} ms`);
        assert.ok(ms >= 3000 && ms < 15_000, `bounded by the timeout: ${ms} ms`);
        assert.deepEqual(await definitionMacs(inst.id), [], "the definition no longer has it");
        assert.deepEqual(await interfaceMacs(driver, inst.id), [vif.mac], "the running guest still has it");
      }
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 1 });
      await driver.detachInterface({ instanceId: inst.id, mac: vif.mac });
      await driver.powerOn({ instanceId: inst.id });
      assert.deepEqual(await interfaceMacs(driver, inst.id), [], "the next start has no such NIC");
      await driver.destroy({ instanceId: inst.id });
    } finally {
      await cleanUp(t, [driver.destroy({ instanceId: inst.id })]);
      await driver.close();
    }
  });
});
