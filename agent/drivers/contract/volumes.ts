/**
 * The contract of volume attachment (`capabilities.volumeAttach`): attach,
 * detach and extend on a running and a shut-off instance, device names,
 * idempotence, and attachments that stay through a stop and start. What
 * the instance has is read through `driver.volumes()`; the exports come
 * from the suite's `volumeConnection` option (default: an address nothing
 * answers on, fine for a driver that opens nothing), and grow through its
 * `growVolume` option.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { Driver } from "../driver.js";
import { InstanceNotFoundError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec, VolumeConnection } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function volumesContract(k: ContractKit): void {
  const { testIf, plain, withDriver, options } = k;

  /** The export of each attachment, made once. */
  const exports = new Map<string, Promise<VolumeConnection>>();
  const connection = (attachmentId: string): Promise<VolumeConnection> => {
    let made = exports.get(attachmentId);
    if (!made) {
      made = options.volumeConnection?.(attachmentId) ?? Promise.resolve({ host: "192.0.2.1", port: 10809, exportName: attachmentId, tls: true });
      exports.set(attachmentId, made);
    }
    return made;
  };
  const newId = () => `att-${randomBytes(6).toString("hex")}`;
  const spawned = async (driver: Driver): Promise<InstanceSpec> => {
    const inst = options.guest?.() ?? testInstance();
    await driver.spawn({ instance: inst });
    await options.guestUp?.(driver, inst.id);
    return inst;
  };
  const attach = async (driver: Driver, instanceId: string, attachmentId: string, device?: string) =>
    (await driver.attachVolume({ instanceId, attachmentId, connection: await connection(attachmentId), ...(device ? { device } : {}) })).device;
  const listed = async (driver: Driver, instanceId: string) =>
    (await driver.volumes({ instanceId })).map((v) => `${v.device}=${v.attachmentId}`);

  testIf("volumeAttach", "attachVolume gives the first free device after the root disk, or the one asked for; the same attachment again gets the same device", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const [a, b, c] = [newId(), newId(), newId()];
      assert.equal(await attach(driver, inst.id, a), "vdb");
      assert.equal(await attach(driver, inst.id, a), "vdb", "attached once");
      assert.equal(await attach(driver, inst.id, b, "vdd"), "vdd", "the device asked for, when free");
      assert.equal(await attach(driver, inst.id, c), "vdc");
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`, `vdc=${c}`, `vdd=${b}`]);
      const [conn] = (await driver.volumes({ instanceId: inst.id })).filter((v) => v.attachmentId === a);
      assert.deepEqual(conn?.connection, await connection(a), "the connection it was attached with");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "a spawn with volumes runs with them on their devices from the start, listed by volumes() with their connections; the next attach takes the first free device; bad volumes are INVALID_ARGUMENT and make nothing", () =>
    withDriver(async (driver) => {
      const inst = options.guest?.() ?? testInstance();
      const [a, b, c] = [newId(), newId(), newId()];
      const [ca, cb] = [await connection(a), await connection(b)];
      const bad = testInstance();
      const refused = [
        [{ attachmentId: a, device: "vda", connection: ca }],
        [{ attachmentId: a, device: "vdb", connection: ca }, { attachmentId: b, device: "vdb", connection: cb }],
        [{ attachmentId: a, device: "vdb", connection: ca }, { attachmentId: a, device: "vdc", connection: ca }],
        [{ attachmentId: a, device: "sdb", connection: ca }],
      ];
      for (const volumes of refused) await rejectsWith(driver.spawn({ instance: bad, volumes }), "INVALID_ARGUMENT", false);
      await assert.rejects(driver.powerState({ instanceId: bad.id }), InstanceNotFoundError);
      await driver.spawn({ instance: inst, volumes: [{ attachmentId: b, device: "vdd", connection: cb }, { attachmentId: a, device: "vdb", connection: ca }] });
      await options.guestUp?.(driver, inst.id);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(
        (await driver.volumes({ instanceId: inst.id })).map((v) => ({ attachmentId: v.attachmentId, device: v.device, connection: v.connection })),
        [
          { attachmentId: a, device: "vdb", connection: ca },
          { attachmentId: b, device: "vdd", connection: cb },
        ],
      );
      assert.equal(await attach(driver, inst.id, c), "vdc");
      await driver.destroy({ instanceId: inst.id });
      await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
    }));

  plain("a driver that cannot attach volumes refuses a spawn or a finishMigration with volumes with NOT_SUPPORTED and creates nothing", () =>
    withDriver(async (driver) => {
      if (driver.capabilities.volumeAttach) return;
      const inst = testInstance();
      const a = newId();
      const volumes = [{ attachmentId: a, device: "vdb", connection: await connection(a) }];
      await rejectsWith(driver.spawn({ instance: inst, volumes }), "NOT_SUPPORTED", false);
      await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
      if (!driver.capabilities.coldMigration) return;
      await rejectsWith(driver.finishMigration({ instance: inst, sourceHost: "source", powerOn: true, volumes }), "NOT_SUPPORTED", false);
      const rootVolume = { attachmentId: a, connection: await connection(a) };
      await rejectsWith(driver.finishMigration({ instance: inst, sourceHost: "source", powerOn: true, rootVolume }), "NOT_SUPPORTED", false);
      await assert.rejects(driver.powerState({ instanceId: inst.id }), InstanceNotFoundError);
    }));

  testIf("volumeAttach", "a device taken by another disk is DEVICE_IN_USE; a malformed attachment id or device INVALID_ARGUMENT; nothing is attached", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const a = newId();
      await attach(driver, inst.id, a, "vdb");
      await rejectsWith(attach(driver, inst.id, newId(), "vdb"), "DEVICE_IN_USE", false);
      await rejectsWith(attach(driver, inst.id, newId(), "vda"), "DEVICE_IN_USE", false);
      await rejectsWith(attach(driver, inst.id, newId(), "sdb"), "INVALID_ARGUMENT", false);
      const bad = { instanceId: inst.id, attachmentId: "ua-<x>'", connection: await connection(newId()) };
      await rejectsWith(driver.attachVolume(bad), "INVALID_ARGUMENT", false);
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`]);
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "detachVolume removes the disk from a running instance and frees its device; again, or an unknown attachment, resolves", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const [a, b, c] = [newId(), newId(), newId()];
      await attach(driver, inst.id, a);
      await attach(driver, inst.id, b);
      await driver.detachVolume({ instanceId: inst.id, attachmentId: a });
      assert.deepEqual(await listed(driver, inst.id), [`vdc=${b}`], "only the other volume is left");
      await driver.detachVolume({ instanceId: inst.id, attachmentId: a });
      await driver.detachVolume({ instanceId: inst.id, attachmentId: newId() });
      assert.equal(await attach(driver, inst.id, c), "vdb", "the freed device is handed out again");
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${c}`, `vdc=${b}`]);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "volumes attached or detached, running or shut off, are still so after a stop and start", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const [hot, cold] = [newId(), newId()];
      await attach(driver, inst.id, hot);
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${hot}`], "the definition has the hot-plugged volume");
      assert.equal(await attach(driver, inst.id, cold), "vdc");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN", "attaching does not start it");
      await driver.powerOn({ instanceId: inst.id });
      await options.guestUp?.(driver, inst.id);
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${hot}`, `vdc=${cold}`], "both, after a start");
      await driver.detachVolume({ instanceId: inst.id, attachmentId: hot });
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      await driver.detachVolume({ instanceId: inst.id, attachmentId: cold });
      await driver.powerOn({ instanceId: inst.id });
      assert.deepEqual(await listed(driver, inst.id), [], "neither, after the next start");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "a rebuild keeps the instance's volumes on their devices", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const [a, b] = [newId(), newId()];
      await attach(driver, inst.id, a);
      await attach(driver, inst.id, b, "vdd");
      await driver.rebuild({ instance: inst });
      await options.guestUp?.(driver, inst.id);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`, `vdd=${b}`]);
      await driver.detachVolume({ instanceId: inst.id, attachmentId: a });
      assert.deepEqual(await listed(driver, inst.id), [`vdd=${b}`]);
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "a suspended instance refuses volume changes with a non-retryable INVALID_STATE and keeps its volumes", () =>
    withDriver(async (driver) => {
      if (!driver.capabilities.suspend) return;
      const inst = await spawned(driver);
      const a = newId();
      await attach(driver, inst.id, a);
      await driver.suspend({ instanceId: inst.id });
      await rejectsWith(attach(driver, inst.id, newId()), "INVALID_STATE", false);
      await rejectsWith(driver.detachVolume({ instanceId: inst.id, attachmentId: a }), "INVALID_STATE", false);
      await driver.resume({ instanceId: inst.id });
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`], "the volume is still there after the resume");
      await driver.destroy({ instanceId: inst.id });
    }));

  const MiB = 1024 * 1024;
  /** As the controller has it done: held, grown on its volume host, then taken by the hypervisor. */
  const extend = async (driver: Driver, instanceId: string, attachmentId: string, sizeBytes: number) => {
    await driver.holdVolume({ instanceId, attachmentId });
    await options.growVolume?.(attachmentId, sizeBytes);
    await driver.extendVolume({ instanceId, attachmentId, sizeBytes });
  };

  testIf("volumeAttach", "extendVolume of a grown volume resolves on a running and a shut-off instance, again too, and changes nothing else; an unknown attachment is NOT_FOUND", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const [a, b] = [newId(), newId()];
      await attach(driver, inst.id, a);
      await attach(driver, inst.id, b);
      await extend(driver, inst.id, a, 32 * MiB);
      await driver.extendVolume({ instanceId: inst.id, attachmentId: a, sizeBytes: 32 * MiB });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "the guest keeps running");
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`, `vdc=${b}`]);
      await rejectsWith(driver.extendVolume({ instanceId: inst.id, attachmentId: newId(), sizeBytes: 32 * MiB }), "NOT_FOUND", false);
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      await extend(driver, inst.id, b, 48 * MiB);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN", "extending does not start it");
      await driver.powerOn({ instanceId: inst.id });
      await options.guestUp?.(driver, inst.id);
      assert.deepEqual(await listed(driver, inst.id), [`vdb=${a}`, `vdc=${b}`], "both, after a start");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "holdVolume pauses a running instance until extendVolume of that attachment, also at an unchanged size; a shut-off one stays so; an unknown attachment is NOT_FOUND", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const a = newId();
      await attach(driver, inst.id, a);
      await driver.holdVolume({ instanceId: inst.id, attachmentId: a });
      await driver.holdVolume({ instanceId: inst.id, attachmentId: a });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "PAUSED", "held");
      await rejectsWith(driver.holdVolume({ instanceId: inst.id, attachmentId: newId() }), "NOT_FOUND", false);
      // The volume host failed: the hold ends with no larger size to take.
      await driver.extendVolume({ instanceId: inst.id, attachmentId: a, sizeBytes: MiB });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "the hold ended");
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      await driver.holdVolume({ instanceId: inst.id, attachmentId: a });
      await extend(driver, inst.id, a, 40 * MiB);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN", "nothing to hold, nothing started");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("volumeAttach", "volume calls on an unknown instance throw InstanceNotFoundError", () =>
    withDriver(async (driver) => {
      const instanceId = testInstance().id;
      await assert.rejects(attach(driver, instanceId, newId()), InstanceNotFoundError);
      await assert.rejects(driver.detachVolume({ instanceId, attachmentId: newId() }), InstanceNotFoundError);
      await assert.rejects(driver.volumes({ instanceId }), InstanceNotFoundError);
      await assert.rejects(driver.extendVolume({ instanceId, attachmentId: newId(), sizeBytes: MiB }), InstanceNotFoundError);
      await assert.rejects(driver.holdVolume({ instanceId, attachmentId: newId() }), InstanceNotFoundError);
    }));
}
