/**
 * The contract of snapshot and rebuild, and of the calls added for them and
 * for migrations on an instance the driver does not have.
 */
import assert from "node:assert/strict";
import { InstanceNotFoundError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec } from "../types.js";
import type { ContractKit } from "./kit.js";

export function imagesContract(k: ContractKit): void {
  const { plain, testIf, withDriver, listed } = k;

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
        await assert.rejects(driver.liveMigrate({ instanceId, targetHost: "elsewhere", targetUri: "", volumes: [] }), InstanceNotFoundError);
        await assert.rejects(driver.postLiveMigration({ instanceId, sourceHost: "elsewhere" }), InstanceNotFoundError);
        await driver.rollbackLiveMigration({ instanceId });
      }
      assert.equal(await listed(driver, instanceId), undefined);
    }));
}
