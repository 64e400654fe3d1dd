/**
 * Volume attachment (Nova's `attach_volume` / `detach_volume`
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
import type { AttachVolumeOptions, CallOptions, DetachVolumeOptions, InstanceOptions } from "../driver.js";
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
