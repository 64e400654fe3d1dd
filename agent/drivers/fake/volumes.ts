/**
 * Volume attachments of the fake hypervisor: recorded on the domain (and
 * persisted with it), devices handed out as the libvirt driver does. The
 * fake opens no export: a refused connection is a fault injected into
 * "attachVolume". A hold pauses a running instance (recorded on the
 * domain); an extend records the size it was given on the attachment and
 * resumes an instance held for it.
 */
import type { AttachVolumeOptions, CallOptions, DetachVolumeOptions, ExtendVolumeOptions, HoldVolumeOptions, InstanceOptions } from "../driver.js";
import { DriverError } from "../errors.js";
import type { AttachedVolume } from "../types.js";
import { checkAttachment, pickDevice } from "../volume-devices.js";
import type { FakeDomain } from "./domain-store.js";
import { invalidState, type FakeHost } from "./fake-host.js";

/** A suspended instance's saved memory has its devices as they were: its disks do not change. */
function notSuspended(d: FakeDomain, what: string): FakeDomain {
  if (d.powerState === "SUSPENDED") throw invalidState(`cannot ${what} instance ${d.instance.id}: it is SUSPENDED (resume it first)`);
  return d;
}

export async function attachVolume(host: FakeHost, o: AttachVolumeOptions, call: CallOptions): Promise<{ device: string }> {
  host.require("volumeAttach", "attachVolume");
  checkAttachment(o);
  await host.ready("attachVolume", true, call, o.instanceId);
  const d = notSuspended(host.owned(o.instanceId, "attachVolume"), "attach a volume to");
  const volumes = d.volumes ?? [];
  const had = volumes.find((v) => v.attachmentId === o.attachmentId);
  if (had) return { device: had.device };
  const used = new Map<string, string | undefined>([["vda", undefined], ...volumes.map((v) => [v.device, v.attachmentId] as const)]);
  const device = pickDevice(used, o.attachmentId, o.device);
  d.volumes = [...volumes, { attachmentId: o.attachmentId, device, connection: { ...o.connection } }];
  await host.persist();
  return { device };
}

export async function detachVolume(host: FakeHost, { instanceId, attachmentId }: DetachVolumeOptions, call: CallOptions): Promise<void> {
  host.require("volumeAttach", "detachVolume");
  await host.ready("detachVolume", true, call, instanceId);
  const d = notSuspended(host.owned(instanceId, "detachVolume"), "detach a volume from");
  if (!(d.volumes ?? []).some((v) => v.attachmentId === attachmentId)) return;
  d.volumes = d.volumes!.filter((v) => v.attachmentId !== attachmentId);
  await host.persist();
}

/** The attachment of a domain, or NOT_FOUND. */
function attached(d: FakeDomain, attachmentId: string): AttachedVolume {
  const v = (d.volumes ?? []).find((x) => x.attachmentId === attachmentId);
  if (!v) throw new DriverError("NOT_FOUND", `instance ${d.instance.id} has no volume attachment ${attachmentId}`);
  return v;
}

/** A running instance is paused and held for the attachment (recorded on the domain); any other is left as it is. */
export async function holdVolume(host: FakeHost, { instanceId, attachmentId }: HoldVolumeOptions, call: CallOptions): Promise<void> {
  host.require("volumeAttach", "holdVolume");
  await host.ready("holdVolume", true, call, instanceId);
  const d = host.owned(instanceId, "holdVolume");
  attached(d, attachmentId);
  if (d.powerState !== "RUNNING") return;
  d.powerState = "PAUSED";
  d.volumeHold = attachmentId;
  await host.persist();
}

/** Records the attachment's new size (what `volumes()` then reports) and resumes an instance held for it; nothing else changes. */
export async function extendVolume(host: FakeHost, { instanceId, attachmentId, sizeBytes }: ExtendVolumeOptions, call: CallOptions): Promise<void> {
  host.require("volumeAttach", "extendVolume");
  await host.ready("extendVolume", true, call, instanceId);
  const d = host.owned(instanceId, "extendVolume");
  const v = attached(d, attachmentId);
  const held = d.volumeHold === attachmentId;
  if (v.sizeBytes === sizeBytes && !held) return;
  d.volumes = d.volumes!.map((x) => (x === v ? { ...x, sizeBytes } : x));
  if (held) {
    delete d.volumeHold;
    if (d.powerState === "PAUSED") d.powerState = "RUNNING";
  }
  await host.persist();
}

export async function volumes(host: FakeHost, { instanceId }: InstanceOptions, call: CallOptions): Promise<AttachedVolume[]> {
  host.require("volumeAttach", "volumes");
  await host.ready(undefined, false, call);
  const d = host.get(instanceId);
  return (d.volumes ?? []).map((v) => ({ ...v, connection: { ...v.connection } })).sort((a, b) => a.device.localeCompare(b.device));
}
