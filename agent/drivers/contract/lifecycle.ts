/**
 * The contract of an instance's life on one host: init and capacity, spawn,
 * destroy, power on and off, reboots, console output, pause and suspend.
 */
import assert from "node:assert/strict";
import { DriverError, InstanceNotFoundError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import { POWER_STATES } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function lifecycleContract(k: ContractKit): void {
  const { plain, testIf, withDriver, listed } = k;

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
}
