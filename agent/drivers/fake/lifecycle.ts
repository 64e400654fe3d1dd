/**
 * The fake driver's lifecycle calls: create, start, stop, pause, suspend,
 * rebuild and remove a domain.
 */
import {
  DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS,
  type CallOptions,
  type InstanceOptions,
  type InterfaceOptions,
  type PowerOffOptions,
  type RebootOptions,
  type RebuildOptions,
  type SpawnOptions,
} from "../driver.js";
import { DriverError, SoftRebootTimeoutError } from "../errors.js";
import { ACTIVE_POWER_STATES, type InstanceSpec, type PowerState } from "../types.js";
import { initialVolumes, invalidState, rootVolumeOf, sameInstance, type FakeHost } from "./fake-host.js";
import { wait } from "./faults.js";

/**
 * A spawn; one from a volume has the root volume as its attachment on vda
 * (and takes no local disk); its other volumes are attached from the start.
 */
export async function spawn(host: FakeHost, { instance, rootVolume, volumes }: SpawnOptions, call: CallOptions): Promise<void> {
  const attached = initialVolumes(host, instance.id, rootVolume ? "spawn from a volume" : "spawn with volumes", rootVolume, volumes);
  await host.ready("spawn", true, call, instance.id);
  const existing = host.state.domains.get(instance.id);
  if (existing) {
    const sameRoot = rootVolumeOf(existing)?.attachmentId === rootVolume?.attachmentId;
    if (existing.powerState === "RUNNING" && !existing.incoming && sameInstance(existing.instance, instance) && sameRoot) return;
    throw new DriverError(
      "INSTANCE_EXISTS",
      `instance ${instance.id} already exists on ${host.options.hostname} (${existing.powerState})`,
    );
  }
  host.checkFits(rootVolume ? { ...instance, diskGb: 0 } : instance, { disk: true, memory: true }, "spawn");
  host.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: 1, ...(attached ? { volumes: attached } : {}) });
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

/**
 * A change of power state the guest makes at once, `from` → `to` (already
 * `to`: nothing to do). Leaving an inactive state needs the memory back.
 */
async function switchPowerState(
  host: FakeHost,
  method: "pause" | "unpause" | "suspend" | "resume",
  capability: "pause" | "suspend",
  [from, to]: readonly [PowerState, PowerState],
  instanceId: string,
  call: CallOptions,
): Promise<void> {
  host.require(capability, method);
  await host.ready(method, true, call, instanceId);
  const d = host.owned(instanceId, method);
  if (d.powerState === to) return;
  if (d.powerState !== from) throw invalidState(`cannot ${method} instance ${instanceId}: it is ${d.powerState}`);
  if (!ACTIVE_POWER_STATES.has(from)) host.checkFits(d.instance, { memory: true }, method, instanceId);
  d.powerState = to;
  await host.persist();
}

export function pause(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  return switchPowerState(host, "pause", "pause", ["RUNNING", "PAUSED"], instanceId, call);
}

export function unpause(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  return switchPowerState(host, "unpause", "pause", ["PAUSED", "RUNNING"], instanceId, call);
}

export function suspend(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  return switchPowerState(host, "suspend", "suspend", ["RUNNING", "SUSPENDED"], instanceId, call);
}

export function resume(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<void> {
  return switchPowerState(host, "resume", "suspend", ["SUSPENDED", "RUNNING"], instanceId, call);
}

/**
 * A rebuild: a new local disk from the image, its volumes kept (Nova's
 * rebuild keeps them); one booted from a volume (re-imaged by its volume
 * host) is defined again on the root volume and volumes given.
 */
export async function rebuild(host: FakeHost, { instance, onSpawning, rootVolume, volumes }: RebuildOptions, call: CallOptions): Promise<void> {
  const given = initialVolumes(host, instance.id, "rebuild from a volume", rootVolume, volumes);
  await host.ready("rebuild", true, call, instance.id);
  const d = host.owned(instance.id, "rebuild");
  const root = rootVolumeOf(d);
  if (root?.attachmentId !== rootVolume?.attachmentId) {
    const has = root ? `boots from volume attachment ${root.attachmentId}` : "boots from a local disk";
    throw invalidState(`cannot rebuild instance ${instance.id} ${rootVolume ? `on volume attachment ${rootVolume.attachmentId}` : "from its image alone"}: it ${has}`);
  }
  host.checkFits(rootVolume ? { ...instance, diskGb: 0 } : instance, { disk: true, memory: true }, "rebuild", instance.id);
  // Removing the old disk took the call's delay; building the new one takes it again.
  onSpawning?.();
  await wait(host.injector.delayMs("rebuild", true, instance.id), call.signal);
  const kept = rootVolume ? given : d.volumes;
  host.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: d.boots + 1, ...(kept ? { volumes: kept } : {}) });
  await host.persist();
}

/** A suspended instance's saved memory has its devices as they were: its interfaces do not change. */
function notSuspended<D extends { powerState: PowerState; instance: InstanceSpec }>(d: D, what: string): D {
  if (d.powerState === "SUSPENDED") throw invalidState(`cannot ${what} instance ${d.instance.id}: it is SUSPENDED (resume it first)`);
  return d;
}

/** Adds the interface to the domain's spec (a running guest gets it at once, as a hot-plug). */
export async function attachInterface(host: FakeHost, { instanceId, vif }: InterfaceOptions, call: CallOptions): Promise<void> {
  host.require("interfaceHotplug", "attachInterface");
  await host.ready("attachInterface", true, call, instanceId);
  const d = notSuspended(host.owned(instanceId, "attachInterface"), "attach an interface to");
  const vifs = d.instance.vifs ?? [];
  if (vifs.some((v) => v.mac === vif.mac)) return;
  (d as { instance: InstanceSpec }).instance = { ...d.instance, vifs: [...vifs, { ...vif }] };
  await host.persist();
}

/** Removes the interface with `mac` from the domain's spec. */
export async function detachInterface(host: FakeHost, { instanceId, mac }: InstanceOptions & { mac: string }, call: CallOptions): Promise<void> {
  host.require("interfaceHotplug", "detachInterface");
  await host.ready("detachInterface", true, call, instanceId);
  const d = notSuspended(host.owned(instanceId, "detachInterface"), "detach an interface from");
  const vifs = d.instance.vifs ?? [];
  if (!vifs.some((v) => v.mac === mac)) return;
  (d as { instance: InstanceSpec }).instance = { ...d.instance, vifs: vifs.filter((v) => v.mac !== mac) };
  await host.persist();
}
