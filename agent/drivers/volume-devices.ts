/**
 * What every driver checks of a volume attachment and how it names the
 * guest device: the attachment id becomes a libvirt user alias
 * (`ua-<id>`, letters, digits, "_" and "-" only), the device is a virtio
 * "vdX" after the root disk "vda".
 */
import type { AttachVolumeOptions, RootVolume } from "./driver.js";
import type { AttachedVolume } from "./types.js";
import { DriverError } from "./errors.js";

/** Attachment ids a driver accepts: what fits a libvirt user alias (UUIDs do). */
export const ATTACHMENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** Guest devices a caller may ask for: vda … vdz (vda, the root disk, is always taken). */
export const VOLUME_DEVICE_PATTERN = /^vd[a-z]$/;

/** The devices in the order they are handed out. */
const DEVICES = Array.from({ length: 25 }, (_, i) => `vd${String.fromCharCode("b".charCodeAt(0) + i)}`);

function invalid(message: string): DriverError {
  return new DriverError("INVALID_ARGUMENT", message);
}

/** Rejects (non-retryable "INVALID_ARGUMENT") an attachment id, device or connection a hypervisor would misread. */
export function checkAttachment(o: AttachVolumeOptions): void {
  if (!ATTACHMENT_ID_PATTERN.test(o.attachmentId)) {
    throw invalid(`attachment id must be 1-64 letters, digits, "_" or "-" (starting with a letter or digit), got "${o.attachmentId}"`);
  }
  if (o.device !== undefined && !VOLUME_DEVICE_PATTERN.test(o.device)) throw invalid(`device must be one of vda…vdz, got "${o.device}"`);
  const c = o.connection;
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(c.host)) throw invalid(`connection host must be an address or a host name, got "${c.host}"`);
  if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) throw invalid(`connection port must be 1-65535, got ${c.port}`);
  if (c.exportName.length === 0 || c.exportName.length > 4096) throw invalid("connection export name must be 1-4096 characters");
  if (c.tls !== true) throw invalid("volume connections are always TLS");
}

/**
 * The device for attachment `attachmentId`, given the devices the instance
 * uses now (device → the attachment holding it, or undefined for a disk
 * that is not a volume, such as the root disk): `preferred` when free, else
 * the first free one. A `preferred` device held by something else rejects
 * with "DEVICE_IN_USE"; no free device with "NO_FREE_DEVICE".
 */
export function pickDevice(used: ReadonlyMap<string, string | undefined>, attachmentId: string, preferred?: string): string {
  if (preferred !== undefined) {
    if (!used.has(preferred)) return preferred;
    const holder = used.get(preferred);
    throw new DriverError(
      "DEVICE_IN_USE",
      `device ${preferred} is taken by ${holder === undefined ? "a disk that is not a volume" : `attachment ${holder}`}`,
    );
  }
  const free = DEVICES.find((d) => !used.has(d));
  if (!free) throw new DriverError("NO_FREE_DEVICE", `no free device for attachment ${attachmentId} (vdb…vdz are all used)`);
  return free;
}

/**
 * Rejects (non-retryable "INVALID_ARGUMENT") the volumes an instance is
 * created with (spawn, finishMigration): the root volume as an attachment
 * on vda, each other volume as an attachment on a device of its own after
 * vda, no attachment twice.
 */
export function checkInitialVolumes(instanceId: string, rootVolume: RootVolume | undefined, volumes: readonly AttachedVolume[]): void {
  const ids = new Set<string>();
  const devices = new Set<string>();
  if (rootVolume) {
    checkAttachment({ instanceId, attachmentId: rootVolume.attachmentId, connection: rootVolume.connection, device: "vda" });
    ids.add(rootVolume.attachmentId);
  }
  for (const v of volumes) {
    checkAttachment({ instanceId, attachmentId: v.attachmentId, connection: v.connection, device: v.device });
    if (v.device === "vda") throw invalid(`volume attachment ${v.attachmentId} cannot be vda, the root disk`);
    if (ids.has(v.attachmentId)) throw invalid(`volume attachment ${v.attachmentId} is given twice`);
    if (devices.has(v.device)) throw invalid(`device ${v.device} is given to two volume attachments`);
    ids.add(v.attachmentId);
    devices.add(v.device);
  }
}
