/**
 * The contract of cold migration and resize: migrateDiskAndPowerOff,
 * finishMigration, confirm and revert, on two hosts and in place.
 */
import assert from "node:assert/strict";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function migrationContract(k: ContractKit): void {
  const { testIf, withDriver, withTwo, listed } = k;

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
}
