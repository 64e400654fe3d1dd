/**
 * Live migration on libvirt (qemu, with `liveMigrationUri`): peer to peer
 * between the two libvirtds, local disks copied incrementally onto an
 * overlay the target prepared on its own copy of the base image. The
 * driver's side (Nova's pre_live_migration, live_migration,
 * post_live_migration_at_destination, rollback_live_migration_at_destination)
 * and the pieces that need no hypervisor: the migration URI a host
 * announces, the domain XML rewritten for the target's paths, and progress
 * from libvirt's job statistics.
 *
 * A host announces where it receives live migrations as one string (the
 * driver's `migrationUri`, sent in Hello and handed to the source):
 *
 *   qemu+tcp://host-b/system#instances=%2Fvar%2Flib%2Fnovamesh%2Finstances&inbound=10.0.0.2
 *
 * the libvirt URI the source's libvirtd connects to (peer to peer), then,
 * after "#", the target's instances path (disks and console logs are put
 * there, so hosts need not share one layout) and the address qemu receives
 * the memory and disk copy on (Nova's `live_migration_inbound_addr`).
 */
import { makeConfigDrive } from "./config-drive-iso.js";
import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { CallOptions, InstanceOptions, LiveMigrateOptions, PostLiveMigrationOptions, PreLiveMigrationOptions } from "../driver.js";
import { DriverError, InstanceNotFoundError, NotSupportedError, throwIfAborted } from "../errors.js";
import { isLibvirtError } from "./binding/index.js";
import * as C from "./binding/constants.js";
import { xmlEscape } from "./domain-xml.js";
import { bestEffort, fromLibvirt, invalidState } from "./failures.js";
import type { BootImages } from "./image-cache.js";
import type { Known } from "./inventory.js";
import { localDisksToCopy, retargetVolumeDisks } from "./migrating-volumes.js";
import type { LibvirtDriverOptions } from "./options.js";
import type { DriverParts } from "./parts.js";

/** Where and how a host receives live migrations. */
export interface MigrationTarget {
  /** libvirt URI of the target's libvirtd, as the source's libvirtd reaches it. */
  readonly uri: string;
  /** The target's instances path. */
  readonly instancesPath: string;
  /** Address the target's qemu listens on for the migration stream. */
  readonly inboundAddr: string;
}

/** The string a host announces as its `migrationUri`. */
export function formatMigrationUri(t: MigrationTarget): string {
  if (t.uri.includes("#")) throw new RangeError(`a libvirt URI cannot hold "#": ${t.uri}`);
  return `${t.uri}#${new URLSearchParams({ instances: t.instancesPath, inbound: t.inboundAddr }).toString()}`;
}

/** The host part of a libvirt URI ("qemu+tcp://10.0.0.2:16509/system" → "10.0.0.2"), or undefined. */
export function uriHost(uri: string): string | undefined {
  if (!URL.canParse(uri)) return undefined;
  const host = new URL(uri).hostname;
  return host === "" ? undefined : host.replace(/^\[(.*)\]$/, "$1");
}

/** The hypervisor part of a libvirt URI's scheme ("qemu+tcp://…" → "qemu", "test:///…" → "test"). */
export function uriScheme(uri: string): string {
  return uri.split(":", 1)[0]!.split("+", 1)[0]!;
}

/** The `migrationUri` a host with these options announces; undefined when it cannot live-migrate (see the options). */
export function announcedMigrationUri(options: LibvirtDriverOptions): string | undefined {
  const uri = options.liveMigrationUri;
  if (uriScheme(options.uri) !== "qemu" || uri === undefined) return undefined;
  return formatMigrationUri({ uri, instancesPath: options.instancesPath, inboundAddr: options.liveMigrationInboundAddr ?? uriHost(uri) ?? options.hostname });
}

/** Reads a `migrationUri` another host announced; a malformed one is a non-retryable INVALID_ARGUMENT. */
export function parseMigrationUri(value: string): MigrationTarget {
  const hash = value.indexOf("#");
  const bad = (why: string) =>
    new DriverError("INVALID_ARGUMENT", `target migration URI "${value}" ${why} (expected <libvirt uri>#instances=<path>&inbound=<address>)`, {
      retryable: false,
    });
  if (hash <= 0) throw bad("has no target paths");
  const uri = value.slice(0, hash);
  const params = new URLSearchParams(value.slice(hash + 1));
  const instancesPath = params.get("instances") ?? "";
  if (!instancesPath.startsWith("/")) throw bad("has no absolute instances path");
  const inboundAddr = params.get("inbound") || uriHost(uri);
  if (!inboundAddr) throw bad("names no inbound address");
  return { uri, instancesPath, inboundAddr };
}

/**
 * Domain XML with every path under `fromDir` moved under `toDir` (the
 * instance's disk and console log, the kernel and ramdisk in the image
 * cache). Paths are compared as the XML spells them (escaped).
 */
export function rebaseXmlPaths(xml: string, fromDir: string, toDir: string): string {
  const from = xmlEscape(fromDir.replace(/\/+$/, "") + "/");
  const to = xmlEscape(toDir.replace(/\/+$/, "") + "/");
  if (from === to) return xml;
  // Only inside attribute values or element text: a path starts right after a quote or ">".
  return xml.replace(new RegExp(`(['">])${escapeRegExp(from)}`, "g"), (_m, lead: string) => `${lead}${to}`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Percent done of a migration job (`virDomainGetJobStats` fields): the
 * data processed (memory and disks) over the data to move, below 100 until
 * the job is over; undefined while libvirt does not know the total yet.
 */
export function jobPercent(stats: Readonly<Record<string, number | string | boolean>>): number | undefined {
  const total = Number(stats.data_total ?? 0);
  const processed = Number(stats.data_processed ?? 0);
  if (!(total > 0)) return undefined;
  return Math.max(0, Math.min(99, Math.floor((processed * 100) / total)));
}

/** A one-line account of a migration job for progress messages. */
export function jobMessage(stats: Readonly<Record<string, number | string | boolean>>): string {
  const mib = (v: unknown) => Math.round(Number(v ?? 0) / 1024 ** 2);
  const parts = [`${mib(stats.data_processed)} of ${mib(stats.data_total)} MiB copied`];
  if (Number(stats.disk_total ?? 0) > 0) parts.push(`disk ${mib(stats.disk_processed)}/${mib(stats.disk_total)} MiB`);
  if (Number(stats.memory_total ?? 0) > 0) parts.push(`memory ${mib(stats.memory_processed)}/${mib(stats.memory_total)} MiB`);
  if (Number(stats.memory_dirty_rate ?? 0) > 0) parts.push(`${stats.memory_dirty_rate} pages/s dirtied`);
  return parts.join(", ");
}

/** A domain paused because a live migration is still arriving. */
function arriving(k: Known): boolean {
  return k.state === C.VIR_DOMAIN_PAUSED && k.reason === C.VIR_DOMAIN_PAUSED_MIGRATION;
}

/** The driver's live migration calls (see the module comment). */
export class LiveMigration {
  /** `enabled`: whether this host can live-migrate (it announces a migration URI). */
  constructor(
    private readonly p: DriverParts,
    private readonly enabled: boolean,
  ) {}

  private get hostname(): string {
    return this.p.options.hostname;
  }

  private require(what: string): void {
    if (this.enabled) return;
    const { uri } = this.p.options;
    throw new NotSupportedError(what, uriScheme(uri) === "qemu" ? `libvirt on ${this.hostname} (no live migration URI configured)` : `libvirt (${uri})`);
  }

  /**
   * Target: fetches the images, makes an empty overlay on the local base,
   * and holds the flavor's memory and disk. An instance without an image
   * boots from a volume: only its memory is held, and no local disk made
   * (its volume disk opens the export made for this host). The op does not
   * say whether an instance with an image boots from a volume: its overlay
   * is made, and dropped by postLiveMigration once the arrived domain says
   * it boots from a volume.
   */
  async preLiveMigration({ instance, sourceHost, bootsFromVolume }: PreLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("preLiveMigration");
    throwIfAborted(call.signal);
    const { files, inventory } = this.p;
    const id = instance.id;
    const [existing, side] = await inventory.lookup(id);
    if (side.incoming) return;
    if (existing) throw new DriverError("INSTANCE_EXISTS", `instance ${id} already exists on ${this.hostname} (${existing.power})`);
    try {
      // Booting from a volume, its root disk is the volume (the image, if any, gives only the kernel and ramdisk).
      const fromVolume = bootsFromVolume === true || !instance.image.id;
      const boot: Partial<BootImages> = fromVolume ? await this.p.images.kernelOf(instance, call.signal) : await this.p.images.forInstance(instance, call.signal);
      const need = { memoryMb: instance.memoryMb, diskGb: fromVolume ? 0 : instance.diskGb };
      await inventory.placing(need, "receive", id, async () => {
        throwIfAborted(call.signal);
        // The source copies only its overlay (incremental): the base below it is this host's copy of the same image.
        if (boot.base === undefined) await files.fresh(id);
        else await files.freshOverlay(instance, boot.base, call.signal);
        // Read-only, the config drive is not copied: this host makes its own, the same.
        await makeConfigDrive(files, instance, call.signal);
        const p = instance.image.properties;
        const imageIds = [instance.image.id, p.kernel_id, p.ramdisk_id].filter((x): x is string => !!x);
        await files.setSidecar(id, { incoming: { from: sourceHost, ...need, imageIds } });
      });
    } catch (err) {
      await bestEffort(this.p.log, "removing a half-prepared incoming instance", () => files.remove(id), { instance: id });
      throw fromLibvirt(err, `preparing the live migration of ${id}`);
    }
  }

  /**
   * Source: `virDomainMigrateToURI3`, peer to peer to the target's libvirtd,
   * with the domain XML moved to the target's paths and its volume disks
   * opening the exports made for the target (see `migrating-volumes.ts`),
   * the local disks copied incrementally (only they: MIGRATE_DISKS);
   * progress from the job's statistics; an abort cancels the job.
   */
  async liveMigrate({ instanceId, targetHost, targetUri, volumes, onProgress }: LiveMigrateOptions, call: CallOptions = {}): Promise<void> {
    this.require("liveMigrate");
    const { log, libvirt, options } = this.p;
    const signal = call.signal;
    const context = { instance: instanceId, target: targetHost };
    const aborted = (cause?: unknown) =>
      new DriverError("ABORTED", `live migration of ${instanceId} to ${targetHost} aborted; it stays on ${this.hostname}`, {
        retryable: false,
        cause: cause ?? signal?.reason,
      });
    if (signal?.aborted) throw aborted();
    const k = await this.p.inventory.get(instanceId);
    await this.p.domains.refuseOldCopy(instanceId, "live migrate");
    if (k.power !== "RUNNING" && k.power !== "PAUSED") throw invalidState(`cannot live migrate ${instanceId}: it is ${k.power}`);
    const target = parseMigrationUri(targetUri);
    const [liveXml, persistentXml] = await libvirt.call(`reading the domain XML of ${instanceId}`, () =>
      Promise.all([
        k.dom.getXMLDesc(C.VIR_DOMAIN_XML_MIGRATABLE | C.VIR_DOMAIN_XML_SECURE),
        k.dom.getXMLDesc(C.VIR_DOMAIN_XML_MIGRATABLE | C.VIR_DOMAIN_XML_SECURE | C.VIR_DOMAIN_XML_INACTIVE),
      ]),
    );
    const here = options.instancesPath;
    // Refused here, before anything moves, when a volume disk has no export for the target.
    const destXml = retargetVolumeDisks(rebaseXmlPaths(liveXml, here, target.instancesPath), volumes, instanceId, targetHost);
    const persistXml = retargetVolumeDisks(rebaseXmlPaths(persistentXml, here, target.instancesPath), volumes, instanceId, targetHost);
    const copy = localDisksToCopy(liveXml);
    const addr = target.inboundAddr.includes(":") ? `[${target.inboundAddr}]` : target.inboundAddr;
    const flags =
      C.VIR_MIGRATE_LIVE |
      C.VIR_MIGRATE_PEER2PEER |
      C.VIR_MIGRATE_PERSIST_DEST |
      C.VIR_MIGRATE_UNDEFINE_SOURCE |
      (copy.length > 0 ? C.VIR_MIGRATE_NON_SHARED_INC : 0) |
      C.VIR_MIGRATE_ABORT_ON_ERROR |
      (k.power === "PAUSED" ? C.VIR_MIGRATE_PAUSED : 0);

    let best = 0;
    const progress = (percent: number, message: string) => {
      if (percent < best) return;
      best = percent;
      void bestEffort(log, "reporting live migration progress", () => onProgress?.(percent, message), context);
    };
    progress(0, `migrating to ${targetHost}`);
    let done = false;
    const abortJob = () => void bestEffort(log, "aborting the live migration job", () => k.dom.abortJob(), context);
    signal?.addEventListener("abort", abortJob, { once: true });
    const poller = (async () => {
      while (!done) {
        await sleep(options.liveMigrationPollMs ?? 500);
        if (done) return;
        if (signal?.aborted) abortJob(); // the job may not have existed when the abort came
        const stats = await this.jobStats(k, context);
        const percent = stats && jobPercent(stats);
        if (!done && stats && percent !== undefined) progress(percent, jobMessage(stats));
      }
    })();
    try {
      await libvirt.call(`live migrating ${instanceId} to ${targetHost}`, () =>
        k.dom.migrateToURI3(
          target.uri,
          {
            migrateUri: `tcp://${addr}`,
            listenAddress: target.inboundAddr,
            destXml,
            persistXml,
            // Only the local disks: the volumes stay where they are, the target opens its exports of them.
            ...(copy.length > 0 ? { migrateDisks: copy } : {}),
            ...(options.liveMigrationBandwidthMiBs ? { bandwidthMiBs: options.liveMigrationBandwidthMiBs } : {}),
          },
          flags,
        ),
      );
    } catch (err) {
      if (signal?.aborted || (err instanceof DriverError && err.code === "LIBVIRT_OPERATION_ABORTED")) throw aborted(err);
      const e = fromLibvirt(err, `live migrating ${instanceId} to ${targetHost}`);
      throw new DriverError("LIVE_MIGRATION_FAILED", e.message, { retryable: e.retryable, cause: err });
    } finally {
      done = true;
      signal?.removeEventListener("abort", abortJob);
      await poller;
    }
    // The domain runs on the target and is undefined here; its disk and console log here are left over.
    await bestEffort(log, "removing what the migrated instance left here", () => this.p.domains.remove(instanceId), context);
    await this.p.images.pruneUnused();
    progress(100, `migrated to ${targetHost}`);
  }

  /** The statistics of the domain's migration job; undefined once the domain has gone (the migration is over) or they cannot be read. */
  private async jobStats(k: Known, context: Record<string, string>) {
    const read = () =>
      k.dom.getJobStats().then(
        (s) => s.stats,
        (err: unknown) => {
          if (!isLibvirtError(err, "VIR_ERR_NO_DOMAIN")) throw err;
          return undefined;
        },
      );
    return bestEffort(this.p.log, "reading the live migration job's progress", read, context);
  }

  /** Target: the migrated domain takes over; what preLiveMigration recorded is dropped. */
  async postLiveMigration({ instanceId }: PostLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("postLiveMigration");
    throwIfAborted(call.signal);
    const [k, side] = await this.p.inventory.lookup(instanceId);
    if (!k) {
      if (side.incoming) throw invalidState(`the live migration of ${instanceId} from ${side.incoming.from} has not arrived on ${this.hostname}`);
      throw new InstanceNotFoundError(instanceId);
    }
    if (arriving(k) && side.incoming) throw invalidState(`the live migration of ${instanceId} is still arriving on ${this.hostname}`);
    if (k.power !== "RUNNING" && k.power !== "PAUSED") throw invalidState(`${instanceId} is ${k.power} on ${this.hostname}, not a finished live migration`);
    if (side.incoming) await this.p.files.dropSidecar(instanceId);
    if (k.meta?.rootAttachmentId !== undefined) {
      // Booted from a volume: an overlay preLiveMigration made on its image is not the domain's disk, nor its base in use.
      await rm(this.p.files.disk(instanceId), { force: true });
      await this.p.images.pruneUnused();
    }
  }

  /** Target: removes a prepared (or half-arrived) incoming instance; one that arrived is not touched. */
  async rollbackLiveMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("rollbackLiveMigration");
    throwIfAborted(call.signal);
    const [k, side] = await this.p.inventory.lookup(instanceId);
    if (!side.incoming) {
      if (k) throw invalidState(`${instanceId} on ${this.hostname} is not an incoming live migration (it is ${k.power})`);
      return;
    }
    if (k && !arriving(k) && k.state !== C.VIR_DOMAIN_SHUTOFF) {
      throw invalidState(`${instanceId} has arrived on ${this.hostname} (it is ${k.power}); it is not rolled back`);
    }
    await this.p.domains.remove(instanceId);
    await this.p.images.pruneUnused();
  }
}
