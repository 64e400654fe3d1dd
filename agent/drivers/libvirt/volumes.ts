/**
 * Volume attachment (Nova's `attach_volume` / `detach_volume` / `extend_volume`
 * with a network `connection_info`): a volume's NBD export added to a domain as a
 * virtio disk, live when it runs and always in its persistent definition,
 * so the disk survives a stop and start. qemu opens the export itself,
 * over TLS with the client certificate of qemu.conf's
 * `nbd_tls_x509_cert_dir` (this host's identity, which the volume host's
 * export admits).
 *
 * The disk carries its attachment id as a user alias (`ua-<id>`): detach,
 * a repeated attach and `volumes()` find it by that. Like interfaces.ts,
 * both calls read first what the domain has (live and persistent XML) and
 * change only what still differs, so a call repeated after a failure half
 * way finishes the job; a live detach polls the live XML until the guest
 * has released the disk.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { AttachVolumeOptions, CallOptions, DetachVolumeOptions, ExtendVolumeOptions, InstanceOptions } from "../driver.js";
import { DriverError, throwIfAborted } from "../errors.js";
import type { AttachedVolume } from "../types.js";
import { checkAttachment, pickDevice } from "../volume-devices.js";
import * as C from "./binding/constants.js";
import { buildVolumeDiskXml, parseDisks, type DomainVolume, type ParsedDisk } from "./domain-xml.js";
import { invalidState } from "./failures.js";
import { DEFAULT_DETACH_TIMEOUT_SECONDS } from "./interfaces.js";
import { ACTIVE_STATES, type Known } from "./inventory.js";
import type { DriverParts } from "./parts.js";

/** Milliseconds between reads of the live XML while a detach is pending. */
const DETACH_POLL_MS = 250;
/** How long an extend waits for qemu to reconnect to the export and take its new size. */
const EXTEND_TIMEOUT_MS = 10_000;
/** Milliseconds between its tries. */
const EXTEND_RETRY_MS = 250;
/** qemu's refusal while its NBD client still has the export's old size (it has not reconnected yet). */
const CANNOT_GROW = /Cannot grow NBD nodes/i;

/** A domain's disks: live (while it runs) and in its persistent definition. */
interface Disks {
  readonly active: boolean;
  readonly live: readonly ParsedDisk[];
  readonly config: readonly ParsedDisk[];
}

/** Adds and removes the volume disks of novamesh's domains (see the module comment). */
export class Volumes {
  constructor(private readonly p: DriverParts) {}

  async attach(o: AttachVolumeOptions, call: CallOptions = {}): Promise<{ device: string }> {
    throwIfAborted(call.signal);
    checkAttachment(o);
    const k = await this.usable(o.instanceId, "attach a volume to");
    const has = await this.disks(k);
    const mine = (list: readonly ParsedDisk[]) => list.find((d) => d.attachmentId === o.attachmentId);
    const [live, config] = [mine(has.live), mine(has.config)];
    // A disk already there (either side) keeps its device; the other side gets the same.
    let device = (live ?? config)?.target;
    if (device === undefined) {
      const used = new Map<string, string | undefined>();
      for (const d of [...has.live, ...has.config]) used.set(d.target, d.attachmentId);
      device = pickDevice(used, o.attachmentId, o.device);
    }
    const flags = (config ? 0 : C.VIR_DOMAIN_AFFECT_CONFIG) | (has.active && !live ? C.VIR_DOMAIN_AFFECT_LIVE : 0);
    if (flags === 0) return { device };
    const c = (live ?? config)?.nbd ?? { host: o.connection.host, port: o.connection.port, exportName: o.connection.exportName };
    const xml = buildVolumeDiskXml({ attachmentId: o.attachmentId, target: device, ...c });
    throwIfAborted(call.signal);
    const what = `attaching volume ${o.attachmentId} to ${o.instanceId} as ${device}`;
    try {
      await this.p.libvirt.call(what, () => k.dom.attachDeviceFlags(xml, flags));
    } catch (err) {
      throw connectFailure(err, flags, what, `${c.host}:${c.port}`);
    }
    return { device };
  }

  async detach({ instanceId, attachmentId }: DetachVolumeOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.usable(instanceId, "detach a volume from");
    const has = await this.disks(k);
    const live = has.live.find((d) => d.attachmentId === attachmentId);
    const config = has.config.find((d) => d.attachmentId === attachmentId);
    if (!live && !config) return;
    // libvirt finds a disk by its target: one call for both sides when they
    // agree (attach keeps them so), else each side with its own element.
    const split = live !== undefined && config !== undefined && live.target !== config.target;
    if (config && (split || !live)) {
      await this.p.libvirt.call(`detaching volume ${attachmentId} (${config.target}) from the definition of ${instanceId}`, () =>
        k.dom.detachDeviceFlags(config.xml, C.VIR_DOMAIN_AFFECT_CONFIG),
      );
    }
    if (!live) return;
    const seconds = this.p.options.detachTimeoutSeconds ?? DEFAULT_DETACH_TIMEOUT_SECONDS;
    const deadline = Date.now() + seconds * 1000;
    const flags = C.VIR_DOMAIN_AFFECT_LIVE | (config && !split ? C.VIR_DOMAIN_AFFECT_CONFIG : 0);
    await this.p.libvirt.call(`detaching volume ${attachmentId} (${live.target}) from ${instanceId}`, () => k.dom.detachDeviceFlags(live.xml, flags));
    await this.waitGone(k, attachmentId, seconds, deadline, call.signal);
  }

  /**
   * The running domain's disk takes the size the volume host now serves.
   * qemu's NBD client learns an export's size only when it connects, and
   * notices that the volume host closed the connection (to serve the
   * export again at the new size) only at its next request. Pausing a
   * RUNNING domain makes one (qemu flushes its disks when it stops), so
   * qemu reconnects; then `blockResize` to exactly that size, while
   * paused, tells the guest, which sees it when it runs again. With the
   * disk's reconnect delay one pause does (the flush waits for the new
   * connection). A client without it (libvirt 9.0 drops the delay) only
   * starts connecting at that flush and refuses to grow the disk: the
   * domain stays paused EXTEND_RETRY_MS so the connection is made, and the
   * next pause's flush (or a guest request in between) takes it up. Tried
   * until EXTEND_TIMEOUT_MS. A domain that is not running has nothing to do.
   */
  async extend(o: ExtendVolumeOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    if (!Number.isSafeInteger(o.sizeBytes) || o.sizeBytes <= 0) throw new DriverError("INVALID_ARGUMENT", `volume size ${o.sizeBytes} is not a positive whole number of bytes`);
    const k = await this.p.inventory.get(o.instanceId);
    await this.p.domains.refuseOldCopy(o.instanceId, "extend a volume of");
    const has = await this.disks(k);
    const live = has.live.find((d) => d.attachmentId === o.attachmentId);
    if (!live && !has.config.some((d) => d.attachmentId === o.attachmentId)) {
      throw new DriverError("NOT_FOUND", `instance ${o.instanceId} has no volume attachment ${o.attachmentId}`);
    }
    if (!live) return; // not running: qemu opens the export at its new size when the domain starts
    const what = `resizing volume ${o.attachmentId} (${live.target}) of ${o.instanceId} to ${o.sizeBytes} bytes`;
    const started = Date.now();
    const deadline = started + EXTEND_TIMEOUT_MS;
    let pauses = 0;
    for (;;) {
      throwIfAborted(call.signal);
      const { state } = await this.p.libvirt.call(`state of ${o.instanceId}`, () => k.dom.getState());
      if (!ACTIVE_STATES.has(state)) return; // stopped meanwhile: it opens the export at its new size when it starts
      const pause = state === C.VIR_DOMAIN_RUNNING;
      if (pause) {
        await this.p.libvirt.call(`pausing ${o.instanceId} so qemu reconnects to volume ${o.attachmentId}`, () => k.dom.suspend());
        pauses += 1;
      }
      let failure: unknown;
      try {
        await this.p.libvirt.call(what, () => k.dom.blockResize(live.target, o.sizeBytes, C.VIR_DOMAIN_BLOCK_RESIZE_BYTES));
      } catch (err) {
        failure = err;
      }
      const pending = failure instanceof Error && CANNOT_GROW.test(failure.message);
      if (pause) {
        // Paused meanwhile, so the guest's requests do not meet a client that is still connecting.
        if (pending) await sleep(EXTEND_RETRY_MS);
        try {
          await this.p.libvirt.call(`resuming ${o.instanceId} after that pause`, () => k.dom.resume());
        } catch (err) {
          if (failure !== undefined) this.p.log.error({ err: failure, server_id: o.instanceId }, `${what} failed before the resume failed too`);
          throw err;
        }
      }
      if (failure === undefined) {
        this.p.log.info({ server_id: o.instanceId, attachment_id: o.attachmentId, size_bytes: o.sizeBytes, pauses, ms: Date.now() - started }, "the guest's volume disk took its new size");
        return;
      }
      if (!pending) throw failure;
      if (Date.now() >= deadline) {
        const paused = pause ? "" : " (the instance is paused: qemu reconnects at its next disk request)";
        throw new DriverError(
          "VOLUME_EXTEND_PENDING",
          `qemu still had the old size of volume ${o.attachmentId} ${EXTEND_TIMEOUT_MS / 1000} s after its volume host served it at ${o.sizeBytes} bytes${paused}: ${(failure as Error).message}`,
          { retryable: true, cause: failure },
        );
      }
      if (!pause) await sleep(EXTEND_RETRY_MS);
    }
  }

  async list({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<AttachedVolume[]> {
    throwIfAborted(call.signal);
    const k = await this.p.inventory.get(instanceId);
    const active = ACTIVE_STATES.has(k.state);
    const xml = await this.p.libvirt.call(`reading the XML of ${instanceId}`, () => k.dom.getXMLDesc(active ? 0 : C.VIR_DOMAIN_XML_INACTIVE));
    return parseDisks(xml)
      .filter((d): d is ParsedDisk & { attachmentId: string; nbd: NonNullable<ParsedDisk["nbd"]> } => !!d.attachmentId && !!d.nbd)
      .map((d) => ({ attachmentId: d.attachmentId, device: d.target, connection: { ...d.nbd, tls: true as const } }))
      .sort((a, b) => a.device.localeCompare(b.device));
  }

  /** The volume disks of the definition of `k`, for defining it again with them (rebuild). */
  async defined(k: Known): Promise<DomainVolume[]> {
    const xml = await this.p.libvirt.call(`reading the definition of ${k.serverId}`, () => k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE));
    return parseDisks(xml).flatMap((d) => (d.attachmentId && d.nbd ? [{ attachmentId: d.attachmentId, target: d.target, ...d.nbd }] : []));
  }

  /** The domain of `instanceId`, refusing the states a disk cannot be changed in. */
  private async usable(instanceId: string, what: string): Promise<Known> {
    const k = await this.p.inventory.get(instanceId);
    await this.p.domains.refuseOldCopy(instanceId, what);
    // A suspended domain's saved memory holds its devices as they were.
    if (k.managedSave) throw invalidState(`cannot ${what} ${instanceId}: it is SUSPENDED (resume it first)`);
    return k;
  }

  private async disks(k: Known): Promise<Disks> {
    const config = parseDisks(await this.p.libvirt.call(`reading the definition of ${k.serverId}`, () => k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE)));
    const active = ACTIVE_STATES.has(k.state);
    const live = active ? parseDisks(await this.p.libvirt.call(`reading the live XML of ${k.serverId}`, () => k.dom.getXMLDesc(0))) : [];
    return { active, live, config };
  }

  /** Polls the live XML until the attachment's disk is gone (or the domain stopped); DETACH_TIMEOUT at `deadline`. */
  private async waitGone(k: Known, attachmentId: string, seconds: number, deadline: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      throwIfAborted(signal);
      const { state } = await this.p.libvirt.call(`state of ${k.serverId}`, () => k.dom.getState());
      if (!ACTIVE_STATES.has(state)) return; // stopped meanwhile: the definition no longer has it
      const xml = await this.p.libvirt.call(`reading the live XML of ${k.serverId}`, () => k.dom.getXMLDesc(0));
      if (!parseDisks(xml).some((d) => d.attachmentId === attachmentId)) return;
      if (Date.now() >= deadline) {
        throw new DriverError(
          "DETACH_TIMEOUT",
          `the guest of ${k.serverId} did not release volume ${attachmentId} within ${seconds} s (the definition no longer has it; the guest may still release it)`,
          { retryable: true },
        );
      }
      await sleep(Math.min(DETACH_POLL_MS, Math.max(0, deadline - Date.now())));
    }
  }
}

/**
 * A failed live attach as the caller should see it: qemu could not open the
 * export (refused, unreachable, a TLS handshake the volume host turned
 * down) is "VOLUME_CONNECT_FAILED", retryable (the driver cannot tell a
 * refusal for good from a volume host that is down). libvirt changes the
 * definition only once the live attach worked, so nothing is left
 * attached. Connection failures to libvirt itself pass through.
 */
function connectFailure(err: unknown, flags: number, what: string, address: string): unknown {
  if (!(err instanceof DriverError) || err.code === "HYPERVISOR_UNAVAILABLE" || !(flags & C.VIR_DOMAIN_AFFECT_LIVE)) return err;
  if (!err.code.startsWith("LIBVIRT_")) return err;
  return new DriverError("VOLUME_CONNECT_FAILED", `the hypervisor could not open the export at ${address}: ${err.message}`, {
    retryable: true,
    cause: err,
  });
}
