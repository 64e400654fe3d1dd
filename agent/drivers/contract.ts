/**
 * The driver contract as tests: every driver runs this one suite, so the
 * fake and libvirt drivers promise the same things (see `driver.ts`).
 *
 *   driverContract("fake", async () => new FakeDriver());
 *
 * `makeDriver` returns a fresh, uninitialised driver with room for a few
 * small instances (1 vCPU, 512 MiB, 1 GiB each); the suite calls `init()`
 * and `close()`.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Driver } from "./driver.js";
import { DriverError, InstanceNotFoundError } from "./errors.js";
import { testInstance } from "./test-instance.js";
import { POWER_STATES } from "./types.js";

/** Registers the contract tests of a driver with node:test. */
export function driverContract(name: string, makeDriver: () => Promise<Driver>): void {
  async function withDriver(fn: (driver: Driver) => Promise<void>): Promise<void> {
    const driver = await makeDriver();
    await driver.init();
    try {
      await fn(driver);
    } finally {
      await driver.close();
    }
  }

  async function listed(driver: Driver, id: string): Promise<string | undefined> {
    const report = await driver.report();
    return report.instances.find((i) => i.serverId === id)?.powerState;
  }

  describe(`driver contract: ${name}`, () => {
    test("init is idempotent and capacity, type and capabilities are reported", () =>
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

    test("spawn leaves the instance RUNNING and listed in report with less free memory", () =>
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

    test("spawning the same running instance again is a no-op", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.spawn({ instance: inst });
        const report = await driver.report();
        assert.equal(report.instances.filter((i) => i.serverId === inst.id).length, 1);
        await driver.destroy({ instanceId: inst.id });
      }));

    test("a spawn that does not fit the host is refused, retryable, and leaves nothing behind", () =>
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

    test("an aborted spawn rejects and leaves nothing behind", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await assert.rejects(driver.spawn({ instance: inst }, { signal: AbortSignal.abort() }), DriverError);
        assert.equal(await listed(driver, inst.id), undefined);
      }));

    test("destroy removes the instance; destroying it again or an unknown one resolves", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.destroy({ instanceId: inst.id });
        assert.equal(await listed(driver, inst.id), undefined);
        await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
        await driver.destroy({ instanceId: inst.id });
        await driver.destroy({ instanceId: testInstance().id });
      }));

    test("powerOff shuts the instance down, twice is fine, and powerOn starts it again", () =>
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

    test("reboot keeps a running instance RUNNING; a hard reboot starts a shut-off one", () =>
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

    test("a soft reboot of a shut-off instance fails and leaves it SHUTDOWN", () =>
      withDriver(async (driver) => {
        const inst = testInstance();
        await driver.spawn({ instance: inst });
        await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
        await assert.rejects(driver.reboot({ instanceId: inst.id, hard: false }), DriverError);
        assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
        await driver.destroy({ instanceId: inst.id });
      }));

    test("power calls on an unknown instance throw InstanceNotFoundError", () =>
      withDriver(async (driver) => {
        const instanceId = testInstance().id;
        await assert.rejects(driver.powerState({ instanceId }), InstanceNotFoundError);
        await assert.rejects(driver.powerOn({ instanceId }), InstanceNotFoundError);
        await assert.rejects(driver.powerOff({ instanceId, timeoutSeconds: 0 }), InstanceNotFoundError);
        await assert.rejects(driver.reboot({ instanceId, hard: true }), InstanceNotFoundError);
        await assert.rejects(driver.reboot({ instanceId, hard: false }), InstanceNotFoundError);
      }));

    test("instances of different ids are independent", () =>
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
  });
}
