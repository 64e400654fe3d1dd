/**
 * The fake driver's lifecycle calls: create, start, stop, pause, suspend,
 * rebuild and remove a domain.
 */
import {
  DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS,
  type CallOptions,
  type InstanceOptions,
  type PowerOffOptions,
  type RebootOptions,
  type RebuildOptions,
  type SpawnOptions,
} from "../driver.js";
import { DriverError, SoftRebootTimeoutError } from "../errors.js";
import { ACTIVE_POWER_STATES } from "../types.js";
import { invalidState, sameInstance, type FakeHost } from "./fake-host.js";
import { wait } from "./faults.js";

export async function spawn(host: FakeHost, { instance }: SpawnOptions, call: CallOptions): Promise<void> {
  await host.ready("spawn", true, call, instance.id);
  const existing = host.state.domains.get(instance.id);
  if (existing) {
    if (existing.powerState === "RUNNING" && !existing.incoming && sameInstance(existing.instance, instance)) return;
    throw new DriverError(
      "INSTANCE_EXISTS",
      `instance ${instance.id} already exists on ${host.options.hostname} (${existing.powerState})`,
    );
  }
  host.checkFits(instance, { disk: true, memory: true }, "spawn");
  host.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: 1 });
  await host.persist();
}

export async function destroy(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  await host.ready("destroy", true, call, instanceId);
  if (!host.state.domains.delete(instanceId)) return;
  await host.persist();
}

export async function powerOn(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  await host.ready("powerOn", true, call, instanceId);
  const d = host.owned(instanceId, "power on");
  if (d.powerState === "RUNNING") return;
  if (!ACTIVE_POWER_STATES.has(d.powerState)) host.checkFits(d.instance, { memory: true }, "power on", instanceId);
  host.start(d);
  await host.persist();
}

export async function powerOff(host: FakeHost, { instanceId, timeoutSeconds }: PowerOffOptions, call: CallOptions): Promise<void> {
  await host.ready("powerOff", true, call, instanceId);
  const d = host.get(instanceId);
  if (d.powerState === "SHUTDOWN") return;
  host.owned(instanceId, "power off");
  await host.shutdownGuest(d, timeoutSeconds, call.signal);
  d.powerState = "SHUTDOWN";
  await host.persist();
}

export async function reboot(host: FakeHost, { instanceId, hard, timeoutSeconds }: RebootOptions, call: CallOptions): Promise<void> {
  if (!hard) host.require("softReboot", "reboot(soft)");
  await host.ready("reboot", true, call, instanceId);
  const d = host.owned(instanceId, hard ? "hard reboot" : "soft reboot");
  if (!hard) {
    if (d.powerState !== "RUNNING") throw invalidState(`cannot soft reboot instance ${instanceId}: it is ${d.powerState}`);
    if (host.injector.ignoresAcpi(instanceId)) {
      const seconds = timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
      await wait(seconds * 1000, call.signal);
      throw new SoftRebootTimeoutError(instanceId, seconds);
    }
  }
  if (!ACTIVE_POWER_STATES.has(d.powerState)) host.checkFits(d.instance, { memory: true }, "reboot", instanceId);
  host.start(d);
  await host.persist();
}

export async function pause(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("pause", "pause");
  await host.ready("pause", true, call, instanceId);
  const d = host.owned(instanceId, "pause");
  if (d.powerState === "PAUSED") return;
  if (d.powerState !== "RUNNING") throw invalidState(`cannot pause instance ${instanceId}: it is ${d.powerState}`);
  d.powerState = "PAUSED";
  await host.persist();
}

export async function unpause(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("pause", "unpause");
  await host.ready("unpause", true, call, instanceId);
  const d = host.owned(instanceId, "unpause");
  if (d.powerState === "RUNNING") return;
  if (d.powerState !== "PAUSED") throw invalidState(`cannot unpause instance ${instanceId}: it is ${d.powerState}`);
  d.powerState = "RUNNING";
  await host.persist();
}

export async function suspend(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("suspend", "suspend");
  await host.ready("suspend", true, call, instanceId);
  const d = host.owned(instanceId, "suspend");
  if (d.powerState === "SUSPENDED") return;
  if (d.powerState !== "RUNNING") throw invalidState(`cannot suspend instance ${instanceId}: it is ${d.powerState}`);
  d.powerState = "SUSPENDED";
  await host.persist();
}

export async function resume(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  host.require("suspend", "resume");
  await host.ready("resume", true, call, instanceId);
  const d = host.owned(instanceId, "resume");
  if (d.powerState === "RUNNING") return;
  if (d.powerState !== "SUSPENDED") throw invalidState(`cannot resume instance ${instanceId}: it is ${d.powerState}`);
  host.checkFits(d.instance, { memory: true }, "resume", instanceId);
  d.powerState = "RUNNING";
  await host.persist();
}

export async function rebuild(host: FakeHost, { instance, onSpawning }: RebuildOptions, call: CallOptions): Promise<void> {
  await host.ready("rebuild", true, call, instance.id);
  const d = host.owned(instance.id, "rebuild");
  host.checkFits(instance, { disk: true, memory: true }, "rebuild", instance.id);
  // Removing the old disk took the call's delay; building the new one takes it again.
  onSpawning?.();
  await wait(host.injector.delayMs("rebuild", true, instance.id), call.signal);
  host.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: d.boots + 1 });
  await host.persist();
}
