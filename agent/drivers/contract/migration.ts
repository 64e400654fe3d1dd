/**
 * The contract of cold migration and resize: migrateDiskAndPowerOff,
 * finishMigration, confirm and revert, on two hosts and in place; with
 * volumes (where the driver has `volumeAttach` too), an instance's data
 * volume and its root volume open on the target at the exports given for
 * it (the suite's `migratingVolume`, as in the live migration test).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Driver } from "../driver.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec, VolumeConnection } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function migrationContract(k: ContractKit): void {
  const { testIf, withDriver, withTwo, listed, options } = k;

  testIf("coldMigration", "cold migration, confirmed: the source keeps a shut-off copy until confirm deletes it; bootsFromVolume for a local root disk is INVALID_STATE", () =>
    withTwo(async (source, target, targetHost) => {
      const inst = testInstance();
      await source.spawn({ instance: inst });
      await rejectsWith(source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0, bootsFromVolume: true }), "INVALID_STATE", false);
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING", "its root disk is local: refused before it was stopped");
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

  /** The two exports of a volume: the source host's, and the one made for the target (the suite's `migratingVolume`, else addresses nothing answers on). */
  const exportsOf = (attachmentId: string): Promise<{ source: VolumeConnection; target: VolumeConnection }> =>
    options.migratingVolume?.(attachmentId) ??
    Promise.resolve({
      source: { host: "192.0.2.1", port: 10809, exportName: attachmentId, tls: true },
      target: { host: "192.0.2.2", port: 10809, exportName: `${attachmentId}-target`, tls: true },
    });
  const volumesOf = async (driver: Driver, instanceId: string) =>
    (await driver.volumes({ instanceId })).map((v) => ({ attachmentId: v.attachmentId, device: v.device, connection: v.connection }));

  testIf("coldMigration", "cold migration of an instance with a data volume: the target's copy has the volume at the export given for it; reverted, the source's copy has it as before", () =>
    withTwo(async (source, target, targetHost) => {
      if (!source.capabilities.volumeAttach) return;
      const inst = testInstance();
      const data = `att-${randomBytes(6).toString("hex")}`;
      const { source: here, target: there } = await exportsOf(data);
      await source.spawn({ instance: inst });
      const { device } = await source.attachVolume({ instanceId: inst.id, attachmentId: data, connection: here, device: "vdc" });
      await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 });
      const resized: InstanceSpec = { ...inst, memoryMb: 1024 };
      const volumes = [{ attachmentId: data, device, connection: there }];
      await target.finishMigration({ instance: resized, sourceHost: "source", powerOn: true, volumes });
      assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await volumesOf(target, inst.id), [{ attachmentId: data, device: "vdc", connection: there }]);
      await target.finishMigration({ instance: resized, sourceHost: "source", powerOn: true, volumes });
      assert.deepEqual(await volumesOf(source, inst.id), [{ attachmentId: data, device: "vdc", connection: here }], "the source's copy keeps its own export");
      await target.destroy({ instanceId: inst.id }); // revert, target side
      await source.finishRevertMigration({ instanceId: inst.id, powerOn: true });
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await volumesOf(source, inst.id), [{ attachmentId: data, device: "vdc", connection: here }]);
      await source.destroy({ instanceId: inst.id });
    }));

  testIf("coldMigration", "cold migration of an instance booted from a volume: no disk handed over (bootsFromVolume, without it INVALID_STATE); the target boots from the root volume's export for it, taking no local disk; confirm removes the source's copy", () =>
    withTwo(async (source, target, targetHost) => {
      if (!source.capabilities.volumeAttach) return;
      const inst = testInstance();
      const [root, data] = [`att-${randomBytes(6).toString("hex")}`, `att-${randomBytes(6).toString("hex")}`];
      const [r, d] = [await exportsOf(root), await exportsOf(data)];
      await source.spawn({ instance: inst, rootVolume: { attachmentId: root, connection: r.source }, volumes: [{ attachmentId: data, device: "vdb", connection: d.source }] });
      await rejectsWith(source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0 }), "INVALID_STATE", false);
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING", "refused before it was stopped");
      await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0, bootsFromVolume: true });
      assert.equal(await listed(source, inst.id), "SHUTDOWN");
      await source.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost, timeoutSeconds: 0, bootsFromVolume: true });
      const freeDisk = (await target.report()).freeDiskGb;
      const resized: InstanceSpec = { ...inst, memoryMb: 1024 };
      const finish = { instance: resized, sourceHost: "source", powerOn: true, rootVolume: { attachmentId: root, connection: r.target }, volumes: [{ attachmentId: data, device: "vdb", connection: d.target }] };
      await target.finishMigration(finish);
      assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await volumesOf(target, inst.id), [
        { attachmentId: root, device: "vda", connection: r.target },
        { attachmentId: data, device: "vdb", connection: d.target },
      ]);
      assert.equal((await target.report()).freeDiskGb, freeDisk, "no local disk taken on the target");
      await target.finishMigration(finish);
      await rejectsWith(target.finishMigration({ ...finish, rootVolume: undefined }), "INSTANCE_EXISTS");
      await source.confirmMigration({ instanceId: inst.id });
      assert.equal(await listed(source, inst.id), undefined);
      assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
      await target.destroy({ instanceId: inst.id });
    }));

  // Gated on volumeAttach (one host: it also runs where only the volume tests do, on real guests).
  testIf("volumeAttach", "resize in place of an instance booted from a volume: the new copy boots from it; revert brings the old flavor back with its volumes", () =>
    withDriver(async (driver) => {
      if (!driver.capabilities.coldMigration) return;
      const self = "this-host";
      const inst = options.guest?.() ?? testInstance();
      const root = `att-${randomBytes(6).toString("hex")}`;
      const conn = await (options.volumeConnection?.(root) ?? exportsOf(root).then((e) => e.source));
      const rootVolume = { attachmentId: root, connection: conn };
      /** What this instance holds of the host's memory, by the report (not measured on a host other tests share). */
      const free0 = (await driver.report()).freeMemoryMb;
      const holds = async (memoryMb: number, why?: string) => {
        if (!options.hostShared) assert.equal(free0 - (await driver.report()).freeMemoryMb, memoryMb, why);
      };
      await driver.spawn({ instance: inst, rootVolume });
      await options.guestUp?.(driver, inst.id);
      await driver.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: self, timeoutSeconds: 0, bootsFromVolume: true });
      const bigger = { ...inst, memoryMb: inst.memoryMb * 2 };
      await driver.finishMigration({ instance: bigger, sourceHost: self, powerOn: true, rootVolume });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await holds(bigger.memoryMb);
      assert.deepEqual(await volumesOf(driver, inst.id), [{ attachmentId: root, device: "vda", connection: conn }]);
      await driver.destroy({ instanceId: inst.id }); // revert, target side
      await driver.finishRevertMigration({ instanceId: inst.id, powerOn: true });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await holds(inst.memoryMb, "the old flavor is back");
      assert.deepEqual(await volumesOf(driver, inst.id), [{ attachmentId: root, device: "vda", connection: conn }]);
      await driver.destroy({ instanceId: inst.id });
    }));
}
