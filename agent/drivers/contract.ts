/**
 * The driver contract as tests: every driver runs this one suite, so the
 * fake and libvirt drivers promise the same things (see `driver.ts`).
 *
 *   driverContract("fake", async (host) => new FakeDriver({ hostname: host }));
 *
 * `makeDriver(host)` returns a fresh, uninitialised driver for host `host`
 * with room for a few small instances (1 vCPU, 512 MiB, 1 GiB each); the
 * suite calls `init()` and `close()`. Migration tests make two (a source
 * and a target host); drivers of different hosts must not share instances.
 * Tests of what `capabilities` says a driver cannot do are skipped.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Driver } from "./driver.js";
import { DriverError, InstanceNotFoundError } from "./errors.js";
import { testInstance } from "./test-instance.js";
import { POWER_STATES, type DriverCapabilities, type InstanceSpec } from "./types.js";

/** Asserts a rejection with this code and retryable flag. */
async function rejectsWith(promise: Promise<unknown>, code: string, retryable?: boolean): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof DriverError, `expected a DriverError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (retryable !== undefined) assert.equal(err.retryable, retryable, `${code} retryable`);
    return true;
  });
}

/** Options of {@link driverContract}. */
export interface ContractOptions {
  /**
   * Run only the tests of this capability (e.g. the live migration tests on
   * real hypervisors, where the rest already ran on a cheaper setup).
   */
  readonly only?: keyof DriverCapabilities;
}

/** Registers the contract tests of a driver with node:test. */
export function driverContract(name: string, makeDriver: (host: string) => Promise<Driver>, options: ContractOptions = {}): void {
  let hosts = 0;
  const host = (role: string) => `contract-${role}-${++hosts}`;

  async function withDriver(fn: (driver: Driver) => Promise<void>): Promise<void> {
    const driver = await makeDriver(host("host"));
    await driver.init();
    try {
      await fn(driver);
    } finally {
      await driver.close();
    }
  }

  /** A source and a target host. */
  async function withTwo(fn: (source: Driver, target: Driver, targetHost: string) => Promise<void>): Promise<void> {
    const targetHost = host("target");
    const source = await makeDriver(host("source"));
    const target = await makeDriver(targetHost);
    await Promise.all([source.init(), target.init()]);
    try {
      await fn(source, target, targetHost);
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }

  /** A test that runs only if the driver has `capability` (checked on a driver made for the purpose). */
  function testIf(capability: keyof DriverCapabilities, title: string, fn: () => Promise<void>): void {
    if (options.only !== undefined && options.only !== capability) return;
    test(title, async (t) => {
      const probe = await makeDriver(host("probe"));
      const has = probe.capabilities[capability];
      await probe.close();
      if (!has) {
        t.skip(`the driver has no ${capability}`);
        return;
      }
      await fn();
    });
  }

  /** A test every driver passes (none with `options.only`). */
  function plain(title: string, fn: () => Promise<void>): void {
    if (options.only === undefined) test(title, fn);
  }

  async function listed(driver: Driver, id: string): Promise<string | undefined> {
    const report = await driver.report();
    return report.instances.find((i) => i.serverId === id)?.powerState;
  }

  describe(`driver contract: ${name}`, () => {
    plain("init is idempotent and capacity, type and capabilities are reported", () =>
      withDriver(async (driver) => {
        await driver.init();
        const cap = await driver.capacity();
        assert.ok(cap.vcpus > 0 && cap.memoryMb > 0 && cap.diskGb > 0, `capacity ${JSON.stringify(cap)}`);
        assert.ok(driver.hypervisorType.length > 0);
        assert.equal(typeof driver.capabilities.softReboot, "boolean");
        const report = await driver.report();
        assert.ok(report.freeMemoryMb <= cap.memoryMb && report.freeDiskGb <= cap.diskGb);
        for (const i of report.instances) assert.ok(POWER_STATES.includes(i.powerState));
      }));

    plain("spawn leaves the instance RUNNING and listed in report with less free memory", () =>
      withDriver(async (driver) => {
        const before = await driver.report();
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        assert.equal(await listed(driver, inst.id), "RUNNING");
        const after = await driver.report();
        assert.ok(after.freeMemoryMb < before.freeMemoryMb, "free memory went down");
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("spawning the same running instance again is a no-op", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.spawn({ instance: inst });
        const report = await driver.report();
        assert.equal(report.instances.filter((i) => i.serverId === inst.id).length, 1);
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("a spawn that does not fit the host is refused, retryable, and leaves nothing behind", () =>
      withDriver(async (driver) => {
        const cap = await driver.capacity();
        const inst = testInstance({ memoryMb: cap.memoryMb * 100, diskGb: cap.diskGb * 100 });
        await assert.rejects(driver.spawn({ instance: inst }), (err: unknown) => {
          assert.ok(err instanceof DriverError, `got ${String(err)}`);
          assert.equal(err.retryable, true);
          return true;
        });
        assert.equal(await listed(driver, inst.id), undefined);
      }));

    plain("an aborted spawn rejects and leaves nothing behind", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await assert.rejects(driver.spawn({ instance: inst }, { signal: AbortSignal.abort() }), DriverError);
        assert.equal(await listed(driver, inst.id), undefined);
      }));

    plain("destroy removes the instance; destroying it again or an unknown one resolves", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.destroy({ instanceId: inst.id });
        assert.equal(await listed(driver, inst.id), undefined);
        await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
        await driver.destroy({ instanceId: inst.id });
        await driver.destroy({ instanceId: testInstance().id });
      }));

    plain("powerOff shuts the instance down, twice is fine, and powerOn starts it again", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        assert.equal(await listed(driver, inst.id), "SHUTDOWN");
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await driver.powerOn({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.powerOn({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("reboot keeps a running instance RUNNING; a hard reboot starts a shut-off one", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.reboot({ instanceId: inst.id, hard: true });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        if (driver.capabilities.softReboot) {
          await driver.reboot({ instanceId: inst.id, hard: false });
          assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        }
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await driver.reboot({ instanceId: inst.id, hard: true });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("a soft reboot of a shut-off instance fails and leaves it SHUTDOWN", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await assert.rejects(driver.reboot({ instanceId: inst.id, hard: false }), DriverError);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("power calls on an unknown instance throw InstanceNotFoundError", () =>
      withDriver(async (driver) => {
        const instanceId = testInstance().id;
        await assert.rejects(driver.powerState({ instanceId }), InstanceNotFoundError);
        await assert.rejects(driver.powerOn({ instanceId }), InstanceNotFoundError);
        await assert.rejects(driver.powerOff({ instanceId, timeoutSeconds: 0 }), InstanceNotFoundError);
        await assert.rejects(driver.reboot({ instanceId, hard: true }), InstanceNotFoundError);
        await assert.rejects(driver.reboot({ instanceId, hard: false }), InstanceNotFoundError);
      }));

    testIf("consoleLog", "consoleOutput returns at most maxBytes of text; an unknown instance throws InstanceNotFoundError", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        const whole = await driver.consoleOutput({ instanceId: inst.id, maxBytes: 100 * 1024 });
        assert.equal(typeof whole, "string");
        const small = await driver.consoleOutput({ instanceId: inst.id, maxBytes: 16 });
        assert.ok(Buffer.byteLength(small) <= 16, `${Buffer.byteLength(small)} bytes for maxBytes 16`);
        assert.ok(whole.endsWith(small), "the short answer is the end of the long one");
        await driver.destroy({ instanceId: inst.id });
        await assert.rejects(driver.consoleOutput({ instanceId: inst.id, maxBytes: 1024 }), InstanceNotFoundError);
      }));

    plain("instances of different ids are independent", () =>
      withDriver(async (driver) => {
        const a = testInstance();
        const b = testInstance();
        await Promise.all([driver.spawn({ instance: a }), driver.spawn({ instance: b })]);
        await driver.powerOff({ instanceId: a.id, timeoutSeconds: 0 });
        assert.equal(await driver.powerState({ instanceId: b.id }), "RUNNING");
        await driver.destroy({ instanceId: a.id });
        assert.equal(await listed(driver, b.id), "RUNNING");
        await driver.destroy({ instanceId: b.id });
      }));
    testIf("pause", "pause keeps a running instance PAUSED, twice is fine; unpause runs it again, twice is fine", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.pause({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED");
        assert.equal(await listed(driver, inst.id), "PAUSED");
        await driver.pause({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED");
        await driver.unpause({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.unpause({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("pause", "pause and unpause of a shut-off instance are a non-retryable INVALID_STATE and keep it SHUTDOWN", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await rejectsWith(driver.pause({ instanceId: inst.id }), "INVALID_STATE", false);
        await rejectsWith(driver.unpause({ instanceId: inst.id }), "INVALID_STATE", false);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("suspend", "suspend saves a running instance as SUSPENDED, twice is fine; resume runs it again, twice is fine", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.suspend({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SUSPENDED");
        assert.equal(await listed(driver, inst.id), "SUSPENDED");
        await driver.suspend({ instanceId: inst.id });
        await driver.resume({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.resume({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("suspend", "suspend of a paused or shut-off instance and resume of a shut-off one are INVALID_STATE", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await rejectsWith(driver.suspend({ instanceId: inst.id }), "INVALID_STATE", false);
        await rejectsWith(driver.resume({ instanceId: inst.id }), "INVALID_STATE", false);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        if (driver.capabilities.pause) {
          await driver.powerOn({ instanceId: inst.id });
          await driver.pause({ instanceId: inst.id });
          await rejectsWith(driver.suspend({ instanceId: inst.id }), "INVALID_STATE", false);
          assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED");
        }
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("powerOn starts a paused or suspended instance", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        if (driver.capabilities.pause) {
          await driver.pause({ instanceId: inst.id });
          await driver.powerOn({ instanceId: inst.id });
          assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        }
        if (driver.capabilities.suspend) {
          await driver.suspend({ instanceId: inst.id });
          await driver.powerOn({ instanceId: inst.id });
          assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        }
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("softReboot", "a soft reboot with a timeout that the guest honours leaves it RUNNING", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.reboot({ instanceId: inst.id, hard: false, timeoutSeconds: 30 });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("snapshot", "snapshot says what it stored and leaves the instance in its power state; again is fine", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        const imageId = testInstance().id;
        const info = await driver.snapshot({ instanceId: inst.id, imageId, imageName: "snap" });
        assert.match(info.checksum, /^[0-9a-f]{64}$/);
        assert.ok(Number.isInteger(info.sizeBytes) && info.sizeBytes > 0, `size ${info.sizeBytes}`);
        assert.ok(info.diskFormat.length > 0);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        const again = await driver.snapshot({ instanceId: inst.id, imageId, imageName: "snap" });
        assert.match(again.checksum, /^[0-9a-f]{64}$/);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("rebuild leaves a running or shut-off instance RUNNING, listed once", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        const rebuilt: InstanceSpec = { ...inst, image: { ...inst.image, id: testInstance().id, name: "other" } };
        await driver.rebuild({ instance: rebuilt });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await driver.rebuild({ instance: rebuilt });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        const report = await driver.report();
        assert.equal(report.instances.filter((i) => i.serverId === inst.id).length, 1);
        await driver.destroy({ instanceId: inst.id });
      }));

    plain("the new calls on an unknown instance throw InstanceNotFoundError; confirm and rollback resolve", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        const instanceId = inst.id;
        const cap = driver.capabilities;
        await assert.rejects(driver.rebuild({ instance: inst }), InstanceNotFoundError);
        if (cap.pause) {
          await assert.rejects(driver.pause({ instanceId }), InstanceNotFoundError);
          await assert.rejects(driver.unpause({ instanceId }), InstanceNotFoundError);
        }
        if (cap.suspend) {
          await assert.rejects(driver.suspend({ instanceId }), InstanceNotFoundError);
          await assert.rejects(driver.resume({ instanceId }), InstanceNotFoundError);
        }
        if (cap.snapshot) {
          await assert.rejects(driver.snapshot({ instanceId, imageId: testInstance().id, imageName: "x" }), InstanceNotFoundError);
        }
        if (cap.coldMigration) {
          await assert.rejects(driver.migrateDiskAndPowerOff({ instanceId, targetHost: "elsewhere", timeoutSeconds: 0 }), InstanceNotFoundError);
          await assert.rejects(driver.finishRevertMigration({ instanceId, powerOn: true }), InstanceNotFoundError);
          await driver.confirmMigration({ instanceId });
        }
        if (cap.liveMigration) {
          await assert.rejects(driver.liveMigrate({ instanceId, targetHost: "elsewhere", targetUri: "" }), InstanceNotFoundError);
          await assert.rejects(driver.postLiveMigration({ instanceId, sourceHost: "elsewhere" }), InstanceNotFoundError);
          await driver.rollbackLiveMigration({ instanceId });
        }
        assert.equal(await listed(driver, instanceId), undefined);
      }));

    testIf("coldMigration", "cold migration, confirmed: the source keeps a shut-off copy until confirm deletes it", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 });
        assert.equal(await listed(source, inst.id), "SHUTDOWN");
        await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 });
        await rejectsWith(source.powerOn({ instanceId: inst.id }), "INVALID_STATE");
        const resized: InstanceSpec = { ...inst, memoryMb: 1024 };
        const freeBefore = (await target.report()).freeMemoryMb;
        await target.finishMigration({ instance: resized, sourceHost: "source", powerOn: true });
        assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
        assert.equal(freeBefore - (await target.report()).freeMemoryMb, 1024, "the target runs the new flavor");
        await target.finishMigration({ instance: resized, sourceHost: "source", powerOn: true });
        await source.confirmMigration({ instanceId: inst.id });
        assert.equal(await listed(source, inst.id), undefined);
        await source.confirmMigration({ instanceId: inst.id });
        assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
        await target.destroy({ instanceId: inst.id });
      }));

    testIf("coldMigration", "cold migration, reverted: the target copy is destroyed and the source copy restored", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 });
        await target.finishMigration({ instance: { ...inst, memoryMb: 1024 }, sourceHost: "source", powerOn: false });
        assert.equal(await target.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await target.destroy({ instanceId: inst.id });
        await source.finishRevertMigration({ instanceId: inst.id, powerOn: true });
        assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
        await source.finishRevertMigration({ instanceId: inst.id, powerOn: true });
        await source.confirmMigration({ instanceId: inst.id });
        assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING", "confirm leaves a restored instance alone");
        await source.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await source.powerOn({ instanceId: inst.id });
        await source.destroy({ instanceId: inst.id });
      }));

    testIf("coldMigration", "finishMigration: another spec is INSTANCE_EXISTS; not fitting is retryable and leaves nothing", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 });
        await target.finishMigration({ instance: inst, sourceHost: "source", powerOn: false });
        await target.finishMigration({ instance: inst, sourceHost: "source", powerOn: true });
        assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING", "a second call with powerOn starts it");
        await rejectsWith(target.finishMigration({ instance: { ...inst, memoryMb: 2048 }, sourceHost: "source", powerOn: true }), "INSTANCE_EXISTS");
        await target.destroy({ instanceId: inst.id });
        await source.confirmMigration({ instanceId: inst.id });
        const cap = await target.capacity();
        const huge = testInstance({ memoryMb: cap.memoryMb * 100, diskGb: cap.diskGb * 100 });
        await rejectsWith(target.finishMigration({ instance: huge, sourceHost: "source", powerOn: true }), "INSUFFICIENT_RESOURCES", true);
        assert.equal(await listed(target, huge.id), undefined);
      }));

    testIf("coldMigration", "resize in place: confirm keeps the new copy; revert brings the old flavor back", () =>
      withDriver(async (driver) => {
        const self = "this-host";
        const inst = testInstance();
        const free0 = (await driver.report()).freeMemoryMb;
        await driver.spawn({ instance: inst });
        await driver.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: self, timeoutSeconds: 0 });
        await driver.finishMigration({ instance: { ...inst, memoryMb: 1024 }, sourceHost: self, powerOn: true });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        assert.equal(free0 - (await driver.report()).freeMemoryMb, 1024);
        await driver.destroy({ instanceId: inst.id }); // revert, target side
        await driver.finishRevertMigration({ instanceId: inst.id, powerOn: true });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        assert.equal(free0 - (await driver.report()).freeMemoryMb, 512, "the old flavor is back");

        await driver.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: self, timeoutSeconds: 0 });
        await driver.finishMigration({ instance: { ...inst, memoryMb: 1024 }, sourceHost: self, powerOn: true });
        await driver.confirmMigration({ instanceId: inst.id });
        assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
        assert.equal(free0 - (await driver.report()).freeMemoryMb, 1024, "confirm keeps the new flavor");
        await driver.destroy({ instanceId: inst.id });
      }));

    testIf("liveMigration", "live migration: incoming PAUSED on the target, progress to 100, gone from the source, RUNNING after post", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await target.preLiveMigration({ instance: inst, sourceHost: "source" });
        assert.equal(await listed(target, inst.id), "PAUSED");
        await target.preLiveMigration({ instance: inst, sourceHost: "source" });
        await rejectsWith(target.powerOn({ instanceId: inst.id }), "INVALID_STATE");
        const percents: number[] = [];
        await source.liveMigrate({
          instanceId: inst.id,
          targetHost,
          targetUri: target.migrationUri ?? "",
          onProgress: (percent) => percents.push(percent),
        });
        assert.ok(percents.length >= 2, `progress ${JSON.stringify(percents)}`);
        assert.deepEqual([...percents].sort((a, b) => a - b), percents, "progress does not go back");
        assert.equal(percents.at(-1), 100);
        assert.equal(await listed(source, inst.id), undefined);
        await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
        assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
        await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
        await rejectsWith(target.rollbackLiveMigration({ instanceId: inst.id }), "INVALID_STATE");
        assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING", "rollback does not touch a migrated instance");
        await target.destroy({ instanceId: inst.id });
      }));

    testIf("liveMigration", "a paused instance lands PAUSED", () =>
      withTwo(async (source, target, targetHost) => {
        if (!source.capabilities.pause) return;
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await source.pause({ instanceId: inst.id });
        await target.preLiveMigration({ instance: inst, sourceHost: "source" });
        await source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" });
        await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
        assert.equal(await target.powerState({ instanceId: inst.id }), "PAUSED");
        await target.destroy({ instanceId: inst.id });
      }));

    testIf("liveMigration", "an aborted live migration is non-retryable ABORTED, the source keeps running, rollback cleans the target", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await target.preLiveMigration({ instance: inst, sourceHost: "source" });
        await rejectsWith(
          source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" }, { signal: AbortSignal.abort() }),
          "ABORTED",
          false,
        );
        assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
        await target.rollbackLiveMigration({ instanceId: inst.id });
        assert.equal(await listed(target, inst.id), undefined);
        await target.rollbackLiveMigration({ instanceId: inst.id });
        await source.destroy({ instanceId: inst.id });
      }));

    testIf("liveMigration", "live migration of a shut-off instance is INVALID_STATE; a target that is full refuses, retryable", () =>
      withTwo(async (source, target, targetHost) => {
        const inst = testInstance();
        await source.spawn({ instance: inst });
        await source.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await rejectsWith(source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" }), "INVALID_STATE");
        assert.equal(await source.powerState({ instanceId: inst.id }), "SHUTDOWN");
        const cap = await target.capacity();
        const huge = testInstance({ memoryMb: cap.memoryMb * 100, diskGb: cap.diskGb * 100 });
        await rejectsWith(target.preLiveMigration({ instance: huge, sourceHost: "source" }), "INSUFFICIENT_RESOURCES", true);
        assert.equal(await listed(target, huge.id), undefined);
        await source.destroy({ instanceId: inst.id });
      }));
  });
}
