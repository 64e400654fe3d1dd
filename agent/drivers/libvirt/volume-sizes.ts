/**
 * Growing an attached volume under a running guest (Nova's
 * `extend_volume`). qemu's NBD client learns an export's size only when it
 * connects, so the volume host serves the volume again at its new size,
 * closing the connection under the disk, and qemu must reconnect. A disk
 * with a reconnect delay would make the guest's requests wait for that;
 * libvirt 9.0 drops the delay, so without one a guest request that meets
 * the closed connection fails in the guest. Hence the hold: before the
 * volume host serves the volume again, `hold` pauses the running domain
 * (qemu completes its pending disk requests when it stops) and records
 * the hold in the instance's sidecar, so it outlives an agent restart.
 * Then `extend`, with the guest still paused, makes qemu notice the
 * closed connection and reconnect with a read of its own through the
 * monitor (libvirt records the domain as tainted "custom-monitor": no
 * libvirt call makes a request while the guest is paused), takes the size
 * with `blockResize` (which qemu refuses until it reconnected: that is
 * how the reconnect is known), and resumes the domain. An extend without a
 * hold pauses the guest for the same steps.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { CallOptions, ExtendVolumeOptions, HoldVolumeOptions } from "../driver.js";
import { DriverError, throwIfAborted } from "../errors.js";
import * as C from "./binding/constants.js";
import { parseDisks, type ParsedDisk } from "./domain-xml.js";
import { ACTIVE_STATES, type Known } from "./inventory.js";
import type { DriverParts } from "./parts.js";

/** How long an extend waits for qemu to reconnect to the export and take its new size. */
const EXTEND_TIMEOUT_MS = 10_000;
/** Milliseconds between its tries. */
const EXTEND_RETRY_MS = 100;
/** Milliseconds between the two reads that make qemu reconnect when there is no size to take. */
const SETTLE_MS = 200;
/** qemu's refusal while its NBD client still has the export's old size (it has not reconnected yet). */
const CANNOT_GROW = /Cannot grow NBD nodes/i;

/** Holds and resizes the volume disks of novamesh's domains (see the module comment). */
export class VolumeSizes {
  constructor(private readonly p: DriverParts) {}

  async hold(o: HoldVolumeOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { k } = await this.attachment(o.instanceId, o.attachmentId, "hold a volume of");
    const side = await this.p.files.sidecar(o.instanceId);
    const { state } = await this.p.libvirt.call(`state of ${o.instanceId}`, () => k.dom.getState());
    if (side.volumeHold !== o.attachmentId) {
      if (state !== C.VIR_DOMAIN_RUNNING) return; // not running: no request to hold back (a paused guest makes none)
      // Recorded first: whatever happens next, the extend knows to resume it.
      await this.p.files.setSidecar(o.instanceId, { ...side, volumeHold: o.attachmentId });
    }
    if (state === C.VIR_DOMAIN_RUNNING) {
      await this.p.libvirt.call(`pausing ${o.instanceId} while volume ${o.attachmentId} is served again`, () => k.dom.suspend());
    }
  }

  async extend(o: ExtendVolumeOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0) throw new DriverError("INVALID_ARGUMENT", `volume size ${o.sizeBytes} is not a positive whole number of bytes`);
    const { k, live } = await this.attachment(o.instanceId, o.attachmentId, "extend a volume of");
    const side = await this.p.files.sidecar(o.instanceId);
    const held = side.volumeHold === o.attachmentId;
    const { state } = await this.p.libvirt.call(`state of ${o.instanceId}`, () => k.dom.getState());
    if (live && ACTIVE_STATES.has(state)) {
      const pause = state === C.VIR_DOMAIN_RUNNING && !held;
      if (pause) await this.p.libvirt.call(`pausing ${o.instanceId} so qemu reconnects to volume ${o.attachmentId}`, () => k.dom.suspend());
      try {
        await this.resize(k, live, o, call);
      } finally {
        // Paused by the hold or just now: it runs again (also when the resize failed: the guest is not left paused).
        if (held || pause) await this.resume(k, o.instanceId);
      }
    }
    // Not running (stopped meanwhile): qemu opens the export at its new size when the domain starts.
    if (held) await this.p.files.setSidecar(o.instanceId, { ...side, volumeHold: undefined });
  }

  /** The domain and its disk of the attachment (`live`: in the running domain), or NOT_FOUND. */
  private async attachment(instanceId: string, attachmentId: string, what: string): Promise<{ k: Known; live?: ParsedDisk }> {
    const k = await this.p.inventory.get(instanceId);
    await this.p.domains.refuseOldCopy(instanceId, what);
    const config = parseDisks(await this.p.libvirt.call(`reading the definition of ${instanceId}`, () => k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE)));
    const live = ACTIVE_STATES.has(k.state)
      ? parseDisks(await this.p.libvirt.call(`reading the live XML of ${instanceId}`, () => k.dom.getXMLDesc(0))).find((d) => d.attachmentId === attachmentId)
      : undefined;
    if (!live && !config.some((d) => d.attachmentId === attachmentId)) {
      throw new DriverError("NOT_FOUND", `instance ${instanceId} has no volume attachment ${attachmentId}`);
    }
    return { k, live };
  }

  /**
   * With the domain paused: qemu reads from the disk (noticing a closed
   * connection, it reconnects) until it takes `sizeBytes`; a size it
   * already has it takes at once, after one read made it reconnect if it
   * must.
   */
  private async resize(k: Known, disk: ParsedDisk, o: ExtendVolumeOptions, call: CallOptions): Promise<void> {
    const what = `resizing volume ${o.attachmentId} (${disk.target}) of ${o.instanceId} to ${o.sizeBytes} bytes`;
    const { node, size } = await this.nodeOf(k, o.attachmentId);
    if (size >= o.sizeBytes) {
      // Nothing to take (a hold ended after its volume host failed; volumes never shrink): qemu reconnects if the volume host closed the connection.
      await this.read(k, node, o.attachmentId);
      await sleep(SETTLE_MS);
      await this.read(k, node, o.attachmentId);
      return;
    }
    const started = Date.now();
    let reads = 0;
    for (;;) {
      throwIfAborted(call.signal);
      await this.read(k, node, o.attachmentId);
      reads += 1;
      try {
        await this.p.libvirt.call(what, () => k.dom.blockResize(disk.target, o.sizeBytes, C.VIR_DOMAIN_BLOCK_RESIZE_BYTES));
        this.p.log.info({ server_id: o.instanceId, attachment_id: o.attachmentId, size_bytes: o.sizeBytes, reads, ms: Date.now() - started }, "the guest's volume disk took its size");
        return;
      } catch (err) {
        if (!(err instanceof Error && CANNOT_GROW.test(err.message))) throw err;
        if (Date.now() - started >= EXTEND_TIMEOUT_MS) {
          throw new DriverError("VOLUME_EXTEND_PENDING", `qemu still had the old size of volume ${o.attachmentId} ${EXTEND_TIMEOUT_MS / 1000} s after its volume host served it at ${o.sizeBytes} bytes: ${err.message}`, {
            retryable: true,
            cause: err,
          });
        }
      }
      await sleep(EXTEND_RETRY_MS);
    }
  }

  /** The block node qemu has for the attachment's disk (its device is the disk's alias), and the size qemu has for it. */
  private async nodeOf(k: Known, attachmentId: string): Promise<{ node: string; size: number }> {
    const reply = await this.p.libvirt.call(`listing the block devices of ${k.serverId}`, () => k.dom.qemuMonitorCommand(JSON.stringify({ execute: "query-block" }), 0));
    type Device = { qdev?: string; inserted?: { "node-name"?: string; image?: { "virtual-size"?: number } } };
    const devices = (JSON.parse(reply) as { return?: Device[] }).return ?? [];
    const inserted = devices.find((d) => d.qdev?.startsWith(`/machine/peripheral/ua-${attachmentId}/`))?.inserted;
    const node = inserted?.["node-name"];
    if (!node) throw new DriverError("NOT_FOUND", `qemu of ${k.serverId} has no block device for volume attachment ${attachmentId}`);
    return { node, size: inserted.image?.["virtual-size"] ?? -1 };
  }

  /** One read of the disk's first sector by qemu itself (the guest is paused): a closed connection makes it reconnect. */
  private async read(k: Known, node: string, attachmentId: string): Promise<void> {
    if (!/^[A-Za-z0-9_.-]+$/.test(node)) throw new DriverError("INTERNAL", `qemu named the block node of volume attachment ${attachmentId} "${node}"`);
    await this.p.libvirt.call(`reading volume ${attachmentId} through qemu's monitor`, () =>
      k.dom.qemuMonitorCommand(`qemu-io ${node} "read 0 512"`, C.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP),
    );
  }

  private async resume(k: Known, instanceId: string): Promise<void> {
    const { state } = await this.p.libvirt.call(`state of ${instanceId}`, () => k.dom.getState());
    if (state === C.VIR_DOMAIN_PAUSED) await this.p.libvirt.call(`resuming ${instanceId}`, () => k.dom.resume());
  }
}
