/**
 * The libvirt driver's live migration on two real libvirtds running qemu
 * (`scripts/libvirtd-hosts.sh up`): the contract's live migration tests, and
 * an abort in the middle of a copy. Runs when NOVAMESH_LIBVIRT_A and
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
import { DriverError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import { DirectoryImageStore } from "./image-store.js";
import { BlankingStore } from "./test-image-store.js";
import { LibvirtDriver } from "./libvirt-driver.js";

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
        { instanceId: inst.id, targetHost: "abort-target", targetUri: target.migrationUri!, onProgress },
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
