/**
 * The contract of booting from a volume (`SpawnOptions.rootVolume`, with
 * `capabilities.volumeAttach`): the instance runs with the volume as its
 * root disk vda, listed by `volumes()` like an attached volume, through a
 * stop and start and a hard reboot, and a rebuild on it (its volume host
 * re-imaged it); destroy removes the instance. A driver
 * without `volumeAttach` refuses such a spawn and makes nothing. The
 * export comes from the suite's `volumeConnection` option, as in the
 * volume tests.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Driver } from "../driver.js";
import { InstanceNotFoundError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec, VolumeConnection } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function bootVolumeContract(k: ContractKit): void {
  const { testIf, plain, withDriver, listed, options } = k;

  const newId = () => `att-${randomBytes(6).toString("hex")}`;
  const connection = (attachmentId: string): Promise<VolumeConnection> =>
    options.volumeConnection?.(attachmentId) ?? Promise.resolve({ host: "192.0.2.1", port: 10809, exportName: attachmentId, tls: true });
  const volumesOf = async (driver: Driver, instanceId: string) => (await driver.volumes({ instanceId })).map((v) => `${v.device}=${v.attachmentId}`);
  /** A running instance booted from a fresh volume. */
  const spawnedFromVolume = async (driver: Driver): Promise<{ inst: InstanceSpec; root: string; conn: VolumeConnection }> => {
    const inst = options.guest?.() ?? testInstance();
    const root = newId();
    const conn = await connection(root);
    await driver.spawn({ instance: inst, rootVolume: { attachmentId: root, connection: conn } });
    await options.guestUp?.(driver, inst.id);
    return { inst, root, conn };
  };

  testIf("volumeAttach", "a spawn from a volume runs with the volume as vda, listed by volumes() with its connection; the same spawn again resolves", () =>
    withDriver(async (driver) => {
      const { inst, root, conn } = await spawnedFromVolume(driver);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      assert.equal(await listed(driver, inst.id), "RUNNING", "the report lists it");
      assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [{ attachmentId: root, device: "vda", connection: conn }]);
      await driver.spawn({ instance: inst, rootVolume: { attachmentId: root, connection: conn } });
      assert.deepEqual(await volumesOf(driver, inst.id), [`vda=${root}`], "spawned once");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "an instance booted from a volume keeps it as vda through a stop and start and a hard reboot; another volume attaches as vdb; destroy removes the instance", () =>
    withDriver(async (driver) => {
      const { inst, root } = await spawnedFromVolume(driver);
      const other = newId();
      const { device } = await driver.attachVolume({ instanceId: inst.id, attachmentId: other, connection: await connection(other) });
      assert.equal(device, "vdb", "the first free device after the root volume");
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      assert.deepEqual(await volumesOf(driver, inst.id), [`vda=${root}`, `vdb=${other}`], "the definition holds both");
      await driver.powerOn({ instanceId: inst.id });
      await options.guestUp?.(driver, inst.id);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.reboot({ instanceId: inst.id, hard: true });
      await options.guestUp?.(driver, inst.id);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await volumesOf(driver, inst.id), [`vda=${root}`, `vdb=${other}`], "both, after a start and a hard reboot");
      await driver.destroy({ instanceId: inst.id });
      await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
      assert.equal(await listed(driver, inst.id), undefined, "the report no longer lists it");
    }));

  testIf("volumeAttach", "a rebuild of an instance booted from a volume defines it again on its root volume and the volumes given, from the new image, running; a rebuild on another root or without one is INVALID_STATE", () =>
    withDriver(async (driver) => {
      const { inst, root, conn } = await spawnedFromVolume(driver);
      const other = newId();
      const data = { attachmentId: other, device: "vdb", connection: await connection(other) };
      await rejectsWith(driver.rebuild({ instance: inst }), "INVALID_STATE", false);
      const stranger = newId();
      await rejectsWith(driver.rebuild({ instance: inst, rootVolume: { attachmentId: stranger, connection: await connection(stranger) } }), "INVALID_STATE", false);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "a refused rebuild changes nothing");
      let spawning = 0;
      const rebuilt = { ...inst, image: { ...inst.image, id: `${inst.image.id}-next`, name: "next" } };
      await driver.rebuild({ instance: rebuilt, rootVolume: { attachmentId: root, connection: conn }, volumes: [data], onSpawning: () => spawning++ });
      await options.guestUp?.(driver, inst.id);
      assert.equal(spawning, 1, "told once the instance is being created again");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await volumesOf(driver, inst.id), [`vda=${root}`, `vdb=${other}`]);
      await driver.destroy({ instanceId: inst.id });
    }));

  plain("a driver that cannot attach volumes refuses a spawn from a volume with NOT_SUPPORTED and creates nothing", () =>
    withDriver(async (driver) => {
      if (driver.capabilities.volumeAttach) return;
      const inst = testInstance();
      const root = newId();
      await rejectsWith(driver.spawn({ instance: inst, rootVolume: { attachmentId: root, connection: await connection(root) } }), "NOT_SUPPORTED", false);
      await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
    }));
}
