/**
 * The contract of network interface hot-plug (`capabilities.interfaceHotplug`):
 * attach and detach on a running and a shut-off instance, idempotence, and
 * an interface that stays through a stop and start. What the instance has
 * is read through the suite's `interfaceMacs` option.
 */
import assert from "node:assert/strict";
import type { Driver } from "../driver.js";
import { InstanceNotFoundError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import type { InstanceSpec } from "../types.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function interfacesContract(k: ContractKit): void {
  const { testIf, withDriver, vif, options } = k;

  const macs = (driver: Driver, id: string): Promise<readonly string[]> => {
    if (!options.interfaceMacs) throw new Error("a driver with interfaceHotplug runs its contract with the interfaceMacs option");
    return options.interfaceMacs(driver, id);
  };
  /** Spawns an instance of the suite's guest and waits for it to be up. */
  const spawned = async (driver: Driver): Promise<InstanceSpec> => {
    const inst = options.guest?.() ?? testInstance();
    await driver.spawn({ instance: inst });
    await options.guestUp?.(driver, inst.id);
    return inst;
  };
  const count = (list: readonly string[], mac: string) => list.filter((m) => m === mac).length;

  testIf("interfaceHotplug", "attachInterface hot-plugs an interface into a running instance; the same MAC again changes nothing", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const before = await macs(driver, inst.id);
      const nic = vif();
      await driver.attachInterface({ instanceId: inst.id, vif: nic });
      assert.deepEqual(await macs(driver, inst.id), [...before, nic.mac], "the running instance has the new interface");
      await driver.attachInterface({ instanceId: inst.id, vif: nic });
      assert.equal(count(await macs(driver, inst.id), nic.mac), 1, "attached once");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("interfaceHotplug", "detachInterface removes the interface from a running instance; again, or an unknown MAC, resolves", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const before = await macs(driver, inst.id);
      const [a, b] = [vif(), vif()];
      await driver.attachInterface({ instanceId: inst.id, vif: a });
      await driver.attachInterface({ instanceId: inst.id, vif: b });
      await driver.detachInterface({ instanceId: inst.id, mac: a.mac });
      assert.deepEqual(await macs(driver, inst.id), [...before, b.mac], "only the other interface is left");
      await driver.detachInterface({ instanceId: inst.id, mac: a.mac });
      await driver.detachInterface({ instanceId: inst.id, mac: vif().mac });
      assert.deepEqual(await macs(driver, inst.id), [...before, b.mac]);
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("interfaceHotplug", "interfaces attached or detached, running or shut off, are still so after a stop and start", () =>
    withDriver(async (driver) => {
      const inst = await spawned(driver);
      const before = await macs(driver, inst.id);
      const [hot, cold] = [vif(), vif()];
      await driver.attachInterface({ instanceId: inst.id, vif: hot });
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      assert.deepEqual(await macs(driver, inst.id), [...before, hot.mac], "the definition has the hot-plugged interface");
      await driver.attachInterface({ instanceId: inst.id, vif: cold });
      assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN", "attaching does not start it");
      await driver.powerOn({ instanceId: inst.id });
      await options.guestUp?.(driver, inst.id);
      assert.deepEqual(await macs(driver, inst.id), [...before, hot.mac, cold.mac], "both, after a start");
      await driver.detachInterface({ instanceId: inst.id, mac: hot.mac });
      await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      await driver.detachInterface({ instanceId: inst.id, mac: cold.mac });
      await driver.powerOn({ instanceId: inst.id });
      assert.deepEqual(await macs(driver, inst.id), [...before], "neither, after the next start");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("interfaceHotplug", "a suspended instance refuses interface changes with a non-retryable INVALID_STATE and keeps its interfaces", () =>
    withDriver(async (driver) => {
      if (!driver.capabilities.suspend) return;
      const inst = await spawned(driver);
      const nic = vif();
      await driver.attachInterface({ instanceId: inst.id, vif: nic });
      await driver.suspend({ instanceId: inst.id });
      await rejectsWith(driver.attachInterface({ instanceId: inst.id, vif: vif() }), "INVALID_STATE", false);
      await rejectsWith(driver.detachInterface({ instanceId: inst.id, mac: nic.mac }), "INVALID_STATE", false);
      await driver.resume({ instanceId: inst.id });
      assert.ok((await macs(driver, inst.id)).includes(nic.mac), "the interface is still there after the resume");
      assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
      await driver.destroy({ instanceId: inst.id });
    }));

  testIf("interfaceHotplug", "interface calls on an unknown instance throw InstanceNotFoundError", () =>
    withDriver(async (driver) => {
      const instanceId = testInstance().id;
      const nic = vif();
      await assert.rejects(driver.attachInterface({ instanceId, vif: nic }), InstanceNotFoundError);
      await assert.rejects(driver.detachInterface({ instanceId, mac: nic.mac }), InstanceNotFoundError);
    }));
}
