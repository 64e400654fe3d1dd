/**
 * The libvirt driver: real virtual machines through libvirt (Nova's
 * `nova/virt/libvirt/driver.py`), on the binding in `./binding`.
 *
 * Layout on the host (`instancesPath`, Nova's `instances_path`):
 *
 *   _base/<image id>          verified base images, shared (image-store.ts)
 *   <server id>/disk          the root disk: a qcow2 overlay on its base
 *   <server id>/console.log   the serial console, appended by libvirt
 *   <server id>/novamesh.json what libvirt does not keep: a pending cold
 *                             migration's target host, or an incoming live
 *                             migration (its source and flavor)
 *   <server id>_resize/       the old copy a resize in place set aside
 *                             (disk, console log, domain.xml)
 *
 * Each server is the persistent domain `novamesh-<server id>` whose UUID is
 * the server id; its `<metadata>` records flavor, image and spec hash, so a
 * restarted agent knows every domain again. Free memory counts the memory of
 * running and paused domains, free disk the flavor disk of every domain and
 * set-aside copy (qcow2 overlays are sparse; the scheduler's claims are
 * flavor sizes too).
 *
 * Live migration (qemu, with `liveMigrationUri`): peer to peer between the
 * two libvirtds, local disks copied incrementally onto an overlay the
 * target prepared on its own copy of the base image (see
 * live-migration.ts for the URI a host announces).
 */
import { createHash } from "node:crypto";
import { access, cp, mkdir, readdir, readFile, rename, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
  DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS,
  type CallOptions,
  type ConsoleOutputOptions,
  type Driver,
  type FinishMigrationOptions,
  type FinishRevertMigrationOptions,
  type InstanceOptions,
  type LiveMigrateOptions,
  type MigrateDiskOptions,
  type PostLiveMigrationOptions,
  type PreLiveMigrationOptions,
  type PowerOffOptions,
  type RebootOptions,
  type RebuildOptions,
  type SnapshotOptions,
  type SpawnOptions,
} from "../driver.js";
import { readFileTail } from "../console-tail.js";
import { DriverError, InstanceNotFoundError, NotSupportedError, SoftRebootTimeoutError, throwIfAborted } from "../errors.js";
import type { DriverCapabilities, HostReport, InstanceReport, InstanceSpec, PowerState, Resources, SnapshotInfo } from "../types.js";
import { isLibvirtError, loadLibvirt, type LibvirtBinding, type LibvirtConnection, type LibvirtDomain } from "./binding/index.js";
import * as C from "./binding/constants.js";
import { buildDomainXml, domainName, parseDomainMetadata, serverIdOfDomain, type DomainMetadata } from "./domain-xml.js";
import { ImageCache, type ImageStore } from "./image-store.js";
import { powerStateOf } from "./power-state.js";
import { formatMigrationUri, jobMessage, jobPercent, parseMigrationUri, rebaseXmlPaths, uriHost } from "./live-migration.js";
import { fromLibvirt, invalidState, unless } from "./failures.js";
import { convert, createOverlay, growTo, rebaseUnsafe, type DiskFormat } from "./qemu-img.js";

/** Options of {@link LibvirtDriver}. */
export interface LibvirtDriverOptions {
  /** Host name (for messages and to tell a resize in place). */
  readonly hostname: string;
  /** libvirt connection URI, e.g. "qemu:///system" or "test:///abs/path/host.xml". */
  readonly uri: string;
  /** Directory of instance disks and the base image cache (Nova's `instances_path`). */
  readonly instancesPath: string;
  /** Where images come from and snapshots and migrating disks go. */
  readonly imageStore: ImageStore;
  /** Local disk for instances, GiB (default: the size of the file system of `instancesPath`). */
  readonly diskGb?: number;
  /** Memory and disk overcommit the driver itself accepts (default memory 1.5, disk 1.0). */
  readonly allocationRatio?: { readonly memoryMb: number; readonly diskGb: number };
  /** "kvm" or "qemu" (TCG); default: kvm when the hypervisor offers it, else qemu. */
  readonly domainType?: "kvm" | "qemu";
  /** Seconds a clean shutdown waits when the caller gives no timeout (Nova's `shutdown_timeout`; default 60). */
  readonly shutdownTimeoutSeconds?: number;
  /** Seconds between ACPI shutdown requests while waiting for a guest (Nova: 10). */
  readonly shutdownRetrySeconds?: number;
  /** Unused base images older than this are removed (default 3600). */
  readonly imageCacheMinAgeSeconds?: number;
  /**
   * libvirt URI other hosts' libvirtds reach this one at for live migration
   * (Nova's `live_migration_uri`), e.g. "qemu+tcp://host-b/system"; without
   * it (or on a hypervisor other than qemu) the host cannot live-migrate.
   */
  readonly liveMigrationUri?: string;
  /** Address qemu receives live migrations on (default: the host of `liveMigrationUri`). */
  readonly liveMigrationInboundAddr?: string;
  /** Milliseconds between progress polls of a running live migration (default 500). */
  readonly liveMigrationPollMs?: number;
  /** Bandwidth cap of a live migration, MiB/s (Nova's `live_migration_bandwidth`; default: none). */
  readonly liveMigrationBandwidthMiBs?: number;
}

/** A novamesh domain as the driver sees it. */
interface Known {
  readonly dom: LibvirtDomain;
  readonly serverId: string;
  readonly state: number;
  readonly reason: number;
  readonly managedSave: boolean;
  readonly power: PowerState;
  readonly meta: DomainMetadata | undefined;
}

/** See {@link LibvirtDriver.inventory}. */
interface Inventory {
  readonly ours: Known[];
  readonly others: { uuid: string; power: PowerState }[];
  /** Old copies of resizes in place: their saved domain XML and its metadata. */
  readonly stashes: { id: string; xml: string; meta: DomainMetadata | undefined }[];
  /** Flavor memory of active domains, MiB. */
  readonly memoryMb: number;
  /** Flavor disk of every domain and set-aside copy, GiB. */
  readonly diskGb: number;
  /** Live migrations prepared here whose domain has not arrived yet. */
  readonly incoming: { id: string; incoming: IncomingMigration }[];
}

/** An incoming live migration, as preLiveMigration recorded it. */
interface IncomingMigration {
  readonly from: string;
  readonly memoryMb: number;
  readonly diskGb: number;
  /** Image, kernel and ramdisk ids in the cache that the instance uses. */
  readonly imageIds: string[];
}

/** What novamesh.json in an instance directory holds. */
interface InstanceSidecar {
  /** A cold migration to this host is pending (the copy here is the old one). */
  readonly migratingTo?: string;
  /** A live migration to this host is prepared or under way, not finished. */
  readonly incoming?: IncomingMigration;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const ACTIVE_STATES = new Set<number>([C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_BLOCKED, C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_SHUTDOWN]);

/**
 * "kvm" when the hypervisor offers KVM domains and the host CPU has hardware
 * virtualisation (vmx or svm): a /dev/kvm without it (a paravirtualised
 * one, as in some nested sandboxes) is listed by libvirt but hangs guests.
 * "qemu" (TCG) otherwise.
 */
export function domainTypeFor(capabilitiesXml: string): "kvm" | "qemu" {
  const offered = /<domain type=['"]kvm['"]/.test(capabilitiesXml);
  const hostCpu = /<host>[\s\S]*?<cpu>([\s\S]*?)<\/cpu>/.exec(capabilitiesXml)?.[1] ?? "";
  const hardware = /<feature name=['"](vmx|svm)['"]/.test(hostCpu);
  return offered && hardware ? "kvm" : "qemu";
}

function specHash(i: InstanceSpec): string {
  return createHash("sha256")
    .update(JSON.stringify([i.vcpus, i.memoryMb, i.diskGb, i.image.id]))
    .digest("hex")
    .slice(0, 32);
}

/** Serialises async sections (the fit check and the define that uses it up). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

export class LibvirtDriver implements Driver {
  readonly capabilities: DriverCapabilities;
  readonly migrationUri?: string;
  private readonly options: LibvirtDriverOptions;
  private readonly cache: ImageCache;
  private readonly placement = new Mutex();
  private lv: LibvirtBinding | undefined;
  private conn: LibvirtConnection | undefined;
  private connecting: Promise<LibvirtConnection> | undefined;
  private type: "kvm" | "qemu" = "qemu";
  private hvType: string;
  private arch: string | undefined;
  private closed = false;
  private readonly listeners = new Set<() => void>();

  constructor(options: LibvirtDriverOptions) {
    if (!options.instancesPath.startsWith("/")) throw new RangeError(`instancesPath must be absolute, got "${options.instancesPath}"`);
    this.options = options;
    const scheme = options.uri.split(":", 1)[0]!.split("+", 1)[0]!;
    this.hvType = scheme === "qemu" ? "QEMU" : scheme;
    this.capabilities = {
      softReboot: true,
      cleanShutdown: true,
      persistent: true,
      pause: true,
      suspend: true,
      snapshot: true,
      coldMigration: true,
      liveMigration: scheme === "qemu" && options.liveMigrationUri !== undefined,
      consoleLog: true,
    };
    if (this.capabilities.liveMigration) {
      const uri = options.liveMigrationUri!;
      this.migrationUri = formatMigrationUri({
        uri,
        instancesPath: options.instancesPath,
        inboundAddr: options.liveMigrationInboundAddr ?? uriHost(uri) ?? options.hostname,
      });
    }
    this.cache = new ImageCache({
      dir: join(options.instancesPath, "_base"),
      store: options.imageStore,
      minAgeSeconds: options.imageCacheMinAgeSeconds,
    });
  }

  get hypervisorType(): string {
    return this.hvType;
  }

  /** The node's CPU model as libvirt's node info gives it ("x86_64" for qemu), known after init. */
  get architecture(): string | undefined {
    return this.arch;
  }

  // ---- connection ------------------------------------------------------------

  init(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    return this.connection().then(async (conn) => {
      await mkdir(this.options.instancesPath, { recursive: true });
      if (this.options.domainType) {
        this.type = this.options.domainType;
      } else {
        this.type = domainTypeFor(await conn.getCapabilities().catch(() => ""));
      }
      this.arch = (await conn.getNodeInfo().catch(() => undefined))?.model || undefined;
    });
  }

  /** The open connection; opens (or re-opens, after libvirtd went away) on demand. */
  private async connection(): Promise<LibvirtConnection> {
    if (this.closed) throw new DriverError("CLOSED", "the libvirt driver is closed");
    if (this.conn && !this.conn.isClosed()) return this.conn;
    this.connecting ??= (async () => {
      this.lv ??= loadLibvirt();
      try {
        const conn = await this.lv.open(this.options.uri);
        // Remote connections: notice a dead libvirtd within ~15 s and reconnect at the next call.
        await conn.setKeepAlive(5, 3).catch(() => undefined);
        await conn
          .registerCloseCallback(() => {
            if (this.conn === conn) this.conn = undefined;
            void conn.close().catch(() => undefined);
            // libvirtd went away: reconnect soon, so events flow again and the next report sees the new state.
            if (!this.closed && this.listeners.size) setTimeout(() => void this.connection().then(() => this.changed(), () => undefined), 1000).unref();
          })
          .catch(() => undefined);
        // Lifecycle events of novamesh's domains: what report() says has changed.
        await conn
          .registerLifecycleEvents((e) => {
            if (serverIdOfDomain(e.domainName) !== undefined) this.changed();
          })
          .catch(() => undefined);
        this.conn = conn;
        return conn;
      } catch (err) {
        throw new DriverError("HYPERVISOR_UNAVAILABLE", `cannot connect to libvirt at ${this.options.uri}: ${(err as Error).message}`, {
          retryable: true,
          cause: err,
        });
      }
    })().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Runs a libvirt call; a broken connection is dropped so the next call reconnects. */
  private async call<T>(what: string, fn: (conn: LibvirtConnection) => Promise<T>): Promise<T> {
    const conn = await this.connection();
    try {
      return await fn(conn);
    } catch (err) {
      const e = fromLibvirt(err, what);
      if (e.code === "HYPERVISOR_UNAVAILABLE" && this.conn === conn) {
        this.conn = undefined;
        void conn.close().catch(() => undefined);
      }
      throw e;
    }
  }

  /** Hypervisor events (lifecycle of novamesh's domains; a reconnect) reach `listener`. */
  onStateChange(listener: () => void): () => void {
    this.listeners.add(listener);
    // Open the connection now (if init has not), so events flow without a call.
    if (!this.closed) void this.connection().catch(() => undefined);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch {
        // a listener's failure is its own
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.listeners.clear();
    this.closed = true;
    const conn = this.conn;
    this.conn = undefined;
    await conn?.close().catch(() => undefined);
  }

  // ---- looking at domains -------------------------------------------------------

  private instanceDir(id: string): string {
    return join(this.options.instancesPath, id);
  }

  private stashDir(id: string): string {
    return join(this.options.instancesPath, `${id}_resize`);
  }

  private async describe(dom: LibvirtDomain, serverId: string): Promise<Known> {
    const [{ state, reason }, managedSave, xml] = await Promise.all([
      dom.getState(),
      dom.hasManagedSaveImage(),
      dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE),
    ]);
    return { dom, serverId, state, reason, managedSave, power: powerStateOf(state, reason, managedSave), meta: parseDomainMetadata(xml) };
  }

  /** The domain of server `id`, or undefined. */
  private async find(id: string): Promise<Known | undefined> {
    return this.call(`looking up ${id}`, async (conn) => {
      let dom: LibvirtDomain;
      try {
        dom = await conn.lookupDomainByName(domainName(id));
      } catch (err) {
        if (isLibvirtError(err, "VIR_ERR_NO_DOMAIN")) return undefined;
        throw err;
      }
      return this.describe(dom, id);
    });
  }

  /** The domain of server `id` (or undefined) and what its instance directory records. */
  private lookup(id: string): Promise<[Known | undefined, InstanceSidecar]> {
    return Promise.all([this.find(id), this.sidecar(id)]);
  }

  /**
   * The domain of server `id`, for an operation on it; InstanceNotFoundError
   * if there is none, INVALID_STATE while it is an incoming live migration.
   */
  private async get(id: string): Promise<Known> {
    const [k, side] = await this.lookup(id);
    if (side.incoming) throw invalidState(`${id} is an incoming live migration from ${side.incoming.from}, not finished`);
    if (!k) throw new InstanceNotFoundError(id);
    return k;
  }

  private async sidecar(id: string): Promise<InstanceSidecar> {
    try {
      return JSON.parse(await readFile(join(this.instanceDir(id), "novamesh.json"), "utf8")) as InstanceSidecar;
    } catch {
      return {};
    }
  }

  private async setSidecar(id: string, value: InstanceSidecar): Promise<void> {
    const path = join(this.instanceDir(id), "novamesh.json");
    await writeFile(`${path}.tmp`, JSON.stringify(value));
    await rename(`${path}.tmp`, path);
  }

  /**
   * What the hypervisor holds: novamesh's domains (described), everyone
   * else's (by UUID), the old copies set aside by resizes in place, and the
   * memory (active domains) and disk (every domain and set-aside copy)
   * their flavors take.
   */
  private async inventory(): Promise<Inventory> {
    const { ours, others } = await this.call("listing domains", async (conn) => {
      const doms = await conn.listAllDomains(0);
      const ours: Known[] = [];
      const others: { uuid: string; power: PowerState }[] = [];
      await Promise.all(
        doms.map(async (dom) => {
          try {
            const id = serverIdOfDomain(await dom.getName());
            if (id !== undefined) {
              ours.push(await this.describe(dom, id));
            } else {
              const [{ state, reason }, uuid, managedSave] = await Promise.all([dom.getState(), dom.getUUIDString(), dom.hasManagedSaveImage()]);
              others.push({ uuid, power: powerStateOf(state, reason, managedSave) });
            }
          } catch (err) {
            if (!isLibvirtError(err, "VIR_ERR_NO_DOMAIN")) throw err; // undefined meanwhile
          }
        }),
      );
      return { ours, others };
    });
    const names = await readdir(this.options.instancesPath).catch(() => [] as string[]);
    const known = new Set(ours.map((k) => k.serverId));
    const incoming = (
      await Promise.all(
        names
          .filter((n) => UUID.test(n) && !known.has(n))
          .map(async (id) => ({ id, incoming: (await this.sidecar(id)).incoming })),
      )
    ).filter((x): x is { id: string; incoming: IncomingMigration } => x.incoming !== undefined);
    const stashes = await Promise.all(
      names
        .filter((n) => n.endsWith("_resize"))
        .map(async (n) => {
          const id = n.slice(0, -"_resize".length);
          const xml = await readFile(join(this.stashDir(id), "domain.xml"), "utf8").catch(() => "");
          return { id, xml, meta: parseDomainMetadata(xml) };
        }),
    );
    let memoryMb = 0;
    let diskGb = 0;
    for (const k of ours) {
      if (ACTIVE_STATES.has(k.state)) memoryMb += k.meta?.memoryMb ?? (await k.dom.getInfo()).maxMemKiB / 1024;
      diskGb += k.meta?.diskGb ?? 0;
    }
    for (const st of stashes) diskGb += st.meta?.diskGb ?? 0;
    for (const { incoming: m } of incoming) {
      memoryMb += m.memoryMb;
      diskGb += m.diskGb;
    }
    return { ours, others, stashes, memoryMb, diskGb, incoming };
  }

  private async hasStash(id: string): Promise<boolean> {
    return access(this.stashDir(id)).then(
      () => true,
      () => false,
    );
  }

  // ---- capacity and reports ------------------------------------------------------

  /**
   * The host's resources, and the disk the file system still has free
   * (undefined when the disk size is configured). One statfs for both.
   */
  private async resources(): Promise<{ capacity: Resources; fsFreeGb: number | undefined }> {
    const info = await this.call("reading node info", (conn) => conn.getNodeInfo());
    let memoryKiB = info.memoryKiB;
    const stats = await this.call("reading node memory", (conn) => conn.getNodeMemoryStats()).catch(() => undefined);
    if (stats?.total !== undefined) memoryKiB = stats.total;
    let diskGb = this.options.diskGb;
    let fsFreeGb: number | undefined;
    if (diskGb === undefined) {
      const fs = await statfs(this.options.instancesPath);
      diskGb = Math.floor((fs.blocks * fs.bsize) / 1024 ** 3);
      fsFreeGb = Math.floor((fs.bavail * fs.bsize) / 1024 ** 3);
    }
    return { capacity: { vcpus: info.cpus, memoryMb: Math.floor(memoryKiB / 1024), diskGb }, fsFreeGb };
  }

  async capacity(options: CallOptions = {}): Promise<Resources> {
    throwIfAborted(options.signal);
    return (await this.resources()).capacity;
  }

  async report(options: CallOptions = {}): Promise<HostReport> {
    throwIfAborted(options.signal);
    const [{ capacity: cap, fsFreeGb }, inv] = await Promise.all([this.resources(), this.inventory()]);
    const instances: InstanceReport[] = inv.ours.map((k) => ({ serverId: k.serverId, powerState: k.power }));
    // Prepared for a live migration: memory and disk held, the domain not here yet.
    for (const m of inv.incoming) instances.push({ serverId: m.id, powerState: "PAUSED" });
    // Domains defined by someone else are reported (never touched): the controller ignores ids it does not know.
    for (const o of inv.others) instances.push({ serverId: o.uuid, powerState: o.power });
    const freeDiskGb = Math.min(Math.max(0, cap.diskGb - inv.diskGb), fsFreeGb ?? Infinity);
    return { freeMemoryMb: Math.max(0, cap.memoryMb - inv.memoryMb), freeDiskGb, instances };
  }

  /** Rejects with a retryable INSUFFICIENT_RESOURCES unless `need` fits next to what runs now. */
  private async checkFits(need: { memoryMb: number; diskGb: number }, what: string, id: string): Promise<void> {
    const [cap, used] = await Promise.all([this.capacity(), this.inventory()]);
    const ratio = this.options.allocationRatio ?? { memoryMb: 1.5, diskGb: 1 };
    const short: string[] = [];
    if (used.memoryMb + need.memoryMb > cap.memoryMb * ratio.memoryMb) {
      short.push(`memory: ${need.memoryMb} MiB wanted, ${Math.max(0, cap.memoryMb * ratio.memoryMb - used.memoryMb)} MiB free`);
    }
    if (used.diskGb + need.diskGb > cap.diskGb * ratio.diskGb) {
      short.push(`disk: ${need.diskGb} GiB wanted, ${Math.max(0, cap.diskGb * ratio.diskGb - used.diskGb)} GiB free`);
    }
    if (short.length > 0) {
      throw new DriverError("INSUFFICIENT_RESOURCES", `cannot ${what} ${id} on ${this.options.hostname}: ${short.join("; ")}`, {
        retryable: true,
      });
    }
  }

  async powerState({ instanceId }: InstanceOptions, options: CallOptions = {}): Promise<PowerState> {
    throwIfAborted(options.signal);
    const [k, side] = await this.lookup(instanceId);
    if (k) return k.power;
    if (side.incoming) return "PAUSED";
    throw new InstanceNotFoundError(instanceId);
  }

  /** The tail of the serial console log libvirt (virtlogd) writes to `<server id>/console.log`. */
  async consoleOutput({ instanceId, maxBytes }: ConsoleOutputOptions, options: CallOptions = {}): Promise<string> {
    throwIfAborted(options.signal);
    await this.get(instanceId);
    return readFileTail(join(this.instanceDir(instanceId), "console.log"), maxBytes);
  }

  // ---- building domains -------------------------------------------------------------

  /** Base image, kernel and ramdisk of an instance, fetched into the cache. */
  private async images(instance: InstanceSpec, signal?: AbortSignal) {
    const base = await this.cache.ensure(instance.image.id, instance.image.checksum, signal);
    const p = instance.image.properties;
    const kernel = p.kernel_id ? await this.cache.ensure(p.kernel_id, "", signal) : undefined;
    const initrd = p.ramdisk_id ? await this.cache.ensure(p.ramdisk_id, "", signal) : undefined;
    return { base, kernel, initrd };
  }

  private domainXml(instance: InstanceSpec, dir: string, boot: { kernel?: string; initrd?: string }): string {
    const p = instance.image.properties;
    return buildDomainXml({
      serverId: instance.id,
      type: this.type,
      arch: p.architecture || p.hw_architecture || undefined,
      machine: p.hw_machine_type || undefined,
      vcpus: instance.vcpus,
      memoryMb: instance.memoryMb,
      disks: [{ path: join(dir, "disk"), format: "qcow2", target: "vda" }],
      ...(boot.kernel ? { kernelBoot: { kernel: boot.kernel, initrd: boot.initrd, cmdline: p.os_command_line || "console=ttyS0" } } : {}),
      consoleLog: join(dir, "console.log"),
      metadata: {
        displayName: instance.name,
        projectId: instance.projectId,
        imageId: instance.image.id,
        vcpus: instance.vcpus,
        memoryMb: instance.memoryMb,
        diskGb: instance.diskGb,
        specHash: specHash(instance),
      },
    });
  }

  private baseFormat(instance: InstanceSpec): DiskFormat {
    return instance.image.diskFormat === "raw" ? "raw" : "qcow2";
  }

  /** A new, empty instance directory whose `disk` is an overlay of the flavor's size on `base`. */
  private async freshOverlay(instance: InstanceSpec, base: string, signal?: AbortSignal): Promise<void> {
    const dir = this.instanceDir(instance.id);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await createOverlay({ base, baseFormat: this.baseFormat(instance), path: join(dir, "disk"), sizeGb: instance.diskGb }, signal);
  }

  /** Defines the domain from a disk already at `<dir>/disk`; starts it when `start`. */
  private async define(instance: InstanceSpec, boot: { kernel?: string; initrd?: string }, start: boolean): Promise<void> {
    const xml = this.domainXml(instance, this.instanceDir(instance.id), boot);
    await this.call(`defining ${instance.id}`, async (conn) => {
      const dom = await conn.defineXML(xml);
      if (start) await dom.create();
    });
  }

  /** Removes the domain (stopping it) and, unless `keepFiles`, its instance directory. */
  private async remove(id: string, keepFiles = false): Promise<void> {
    const k = await this.find(id);
    if (k) {
      if (ACTIVE_STATES.has(k.state)) await this.forceOff(k);
      await this.call(`undefining ${id}`, () =>
        k.dom.undefineFlags(C.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | C.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA),
      ).catch(unless("LIBVIRT_NO_DOMAIN")); // undefined meanwhile
    }
    if (!keepFiles) await rm(this.instanceDir(id), { recursive: true, force: true });
  }

  /**
   * Removes base images no domain or set-aside copy uses: its image (the
   * overlay's backing file) and the kernel and ramdisk its XML names.
   */
  private async pruneImages(): Promise<void> {
    const { ours, stashes, incoming } = await this.inventory();
    const inUse = new Set<string>();
    const add = (xml: string, meta: DomainMetadata | undefined) => {
      for (const m of xml.matchAll(/_base\/([^<'"/]+)/g)) inUse.add(m[1]!);
      if (meta) inUse.add(meta.imageId);
    };
    for (const k of ours) add(await k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE), k.meta);
    for (const st of stashes) add(st.xml, st.meta);
    for (const m of incoming) for (const id of m.incoming.imageIds) inUse.add(id);
    await this.cache.prune(inUse);
  }

  async spawn({ instance }: SpawnOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const [existing, side] = await this.lookup(instance.id);
    if (side.incoming) throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} is an incoming live migration on ${this.options.hostname}`);
    if (existing) {
      if (existing.power === "RUNNING" && existing.meta?.specHash === specHash(instance)) return;
      throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} already exists on ${this.options.hostname} (${existing.power})`);
    }
    try {
      // Fetching a base image can take long: outside the lock, which only covers check-and-define.
      const boot = await this.images(instance, call.signal);
      await this.placement.run(async () => {
        await this.checkFits(instance, "spawn", instance.id);
        throwIfAborted(call.signal);
        await this.freshOverlay(instance, boot.base, call.signal);
        throwIfAborted(call.signal);
        await this.define(instance, boot, true);
      });
    } catch (err) {
      // A failed spawn leaves nothing behind, so it can be retried here or elsewhere.
      await this.remove(instance.id).catch(() => undefined);
      const e = fromLibvirt(err, `spawning ${instance.id}`);
      if (e.code.startsWith("LIBVIRT_")) throw new DriverError("SPAWN_FAILED", e.message, { retryable: true, cause: err });
      throw e;
    }
  }

  async destroy({ instanceId }: InstanceOptions): Promise<void> {
    await this.remove(instanceId);
    await this.pruneImages().catch(() => undefined);
  }

  // ---- power --------------------------------------------------------------------------

  /** Starts a shut-off (or saved, or crashed) domain, or lets a paused one run. */
  private async start(k: Known, what: string): Promise<void> {
    if (k.power === "RUNNING") return;
    if (k.state === C.VIR_DOMAIN_PAUSED) {
      await this.call(`${what} ${k.serverId}`, () => k.dom.resume());
      return;
    }
    if (ACTIVE_STATES.has(k.state)) throw invalidState(`cannot ${what} ${k.serverId}: it is ${k.power}`);
    await this.placement.run(async () => {
      await this.checkFits({ memoryMb: k.meta?.memoryMb ?? 0, diskGb: 0 }, what, k.serverId);
      await this.call(`${what} ${k.serverId}`, () => k.dom.create());
    });
  }

  private async refuseOldCopy(id: string, what: string): Promise<void> {
    const side = await this.sidecar(id);
    if (side.migratingTo !== undefined) {
      throw invalidState(`cannot ${what} ${id}: it is the old copy of a migration to ${side.migratingTo}, waiting for confirm or revert`);
    }
  }

  async powerOn({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    await this.refuseOldCopy(instanceId, "power on");
    await this.start(k, "power on");
  }

  /**
   * Shuts a running guest down: ACPI shutdown, repeated every
   * `shutdownRetrySeconds` (a guest may miss the first event), forced off
   * after `timeoutSeconds`. Resolves whether the guest shut down by itself.
   */
  private async shutdownGuest(k: Known, timeoutSeconds: number, signal?: AbortSignal): Promise<boolean> {
    const timeoutMs = (timeoutSeconds > 0 ? timeoutSeconds : (this.options.shutdownTimeoutSeconds ?? DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)) * 1000;
    const retryMs = (this.options.shutdownRetrySeconds ?? 10) * 1000;
    const started = Date.now();
    let lastRequest = -Infinity;
    while (Date.now() - started < timeoutMs) {
      throwIfAborted(signal);
      const { state } = await this.call(`state of ${k.serverId}`, () => k.dom.getState());
      if (!ACTIVE_STATES.has(state)) return true;
      if (Date.now() - lastRequest >= retryMs) {
        lastRequest = Date.now();
        await this.call(`shutting down ${k.serverId}`, () => k.dom.shutdown()).catch(unless("LIBVIRT_OPERATION_INVALID")); // off meanwhile
        continue;
      }
      await sleep(Math.min(250, timeoutMs - (Date.now() - started)));
    }
    return false;
  }

  private async forceOff(k: Known): Promise<void> {
    await this.call(`powering off ${k.serverId}`, () => k.dom.destroy()).catch(unless("LIBVIRT_OPERATION_INVALID")); // off meanwhile
  }

  private async dropSavedState(k: Known): Promise<void> {
    await this.call(`discarding the saved state of ${k.serverId}`, () => k.dom.managedSaveRemove());
  }

  /**
   * Shuts a domain off the way `powerOff` does: a running guest cleanly
   * (forced after `timeoutSeconds`), a paused one forced, a suspended one by
   * dropping its saved memory (as Nova's power_off does).
   */
  private async stop(k: Known, timeoutSeconds: number, signal?: AbortSignal): Promise<void> {
    if (k.managedSave) await this.dropSavedState(k);
    if (!ACTIVE_STATES.has(k.state)) return;
    if (k.state === C.VIR_DOMAIN_PAUSED || !(await this.shutdownGuest(k, timeoutSeconds, signal))) await this.forceOff(k);
  }

  /** Off at once from any state, any saved state dropped (hard reboot, rebuild). */
  private async stopHard(k: Known): Promise<void> {
    if (ACTIVE_STATES.has(k.state)) await this.forceOff(k);
    if (k.managedSave) await this.dropSavedState(k);
  }

  async powerOff({ instanceId, timeoutSeconds }: PowerOffOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    await this.stop(await this.get(instanceId), timeoutSeconds, call.signal);
  }

  async reboot({ instanceId, hard, timeoutSeconds }: RebootOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    await this.refuseOldCopy(instanceId, hard ? "hard reboot" : "soft reboot");
    if (!hard) {
      if (k.power !== "RUNNING") throw invalidState(`cannot soft reboot ${instanceId}: it is ${k.power}`);
      // Nova's soft reboot: a clean shutdown and a fresh start; a guest that
      // does not shut down in time is left as it is, and the caller reboots hard.
      const seconds = timeoutSeconds && timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
      if (!(await this.shutdownGuest(k, seconds, call.signal))) throw new SoftRebootTimeoutError(instanceId, seconds);
      await this.call(`starting ${instanceId}`, () => k.dom.create());
      return;
    }
    // Hard: power cycle from any state, dropping a saved state.
    await this.stopHard(k);
    await this.start(await this.get(instanceId), "hard reboot");
  }

  async pause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    if (k.power === "PAUSED") return;
    if (k.power !== "RUNNING") throw invalidState(`cannot pause ${instanceId}: it is ${k.power}`);
    await this.call(`pausing ${instanceId}`, () => k.dom.suspend());
  }

  async unpause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    if (k.power === "RUNNING") return;
    if (k.power !== "PAUSED") throw invalidState(`cannot unpause ${instanceId}: it is ${k.power}`);
    await this.call(`unpausing ${instanceId}`, () => k.dom.resume());
  }

  async suspend({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    if (k.power === "SUSPENDED") return;
    if (k.power !== "RUNNING") throw invalidState(`cannot suspend ${instanceId}: it is ${k.power}`);
    await this.call(`suspending ${instanceId}`, () => k.dom.managedSave());
  }

  async resume({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    if (k.power === "RUNNING") return;
    if (k.power !== "SUSPENDED") throw invalidState(`cannot resume ${instanceId}: it is ${k.power}`);
    await this.start(k, "resume");
  }

  // ---- images -----------------------------------------------------------------------------

  async snapshot({ instanceId, imageId, onUploading }: SnapshotOptions, call: CallOptions = {}): Promise<SnapshotInfo> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    const dir = this.instanceDir(instanceId);
    const tmp = join(dir, `snapshot-${imageId}.qcow2`);
    // A running guest is paused while its disk is copied, so the copy is consistent.
    const pause = k.power === "RUNNING";
    try {
      if (pause) await this.call(`pausing ${instanceId} for a snapshot`, () => k.dom.suspend());
      try {
        await convert({ source: join(dir, "disk"), dest: tmp, format: "qcow2", forceShare: true }, call.signal);
      } finally {
        if (pause) await this.call(`unpausing ${instanceId} after a snapshot`, () => k.dom.resume());
      }
      onUploading?.();
      const stored = await this.options.imageStore.put(imageId, tmp, { signal: call.signal });
      return { sizeBytes: stored.sizeBytes, checksum: stored.checksum, diskFormat: "qcow2" };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async rebuild({ instance, onSpawning }: RebuildOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instance.id);
    await this.stopHard(k);
    const dir = this.instanceDir(instance.id);
    const boot = await this.images(instance, call.signal);
    await this.placement.run(async () => {
      // Fits once this instance's own resources are given back (it is off now; its disk is replaced).
      const diskGb = Math.max(0, instance.diskGb - (k.meta?.diskGb ?? 0));
      await this.checkFits({ memoryMb: instance.memoryMb, diskGb }, "rebuild", instance.id);
      await mkdir(dir, { recursive: true });
      const next = join(dir, "disk.rebuild");
      await createOverlay({ base: boot.base, baseFormat: this.baseFormat(instance), path: next, sizeGb: instance.diskGb }, call.signal);
      await rename(next, join(dir, "disk")); // the old disk is gone from here on
      onSpawning?.();
      await this.define(instance, boot, true);
    });
    await this.pruneImages().catch(() => undefined);
  }

  // ---- resize and cold migration ----------------------------------------------------------

  private migrationKey(id: string): string {
    return `migration-${id}`;
  }

  async migrateDiskAndPowerOff({ instanceId, targetHost, timeoutSeconds }: MigrateDiskOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.get(instanceId);
    const side = await this.sidecar(instanceId);
    if (side.migratingTo !== undefined && side.migratingTo !== targetHost) {
      throw invalidState(`${instanceId} is already migrating to ${side.migratingTo}`);
    }
    await this.stop(k, timeoutSeconds, call.signal);
    await this.setSidecar(instanceId, { migratingTo: targetHost });
    // Another host gets the overlay through the image store; its base comes from the store too.
    if (targetHost !== this.options.hostname) {
      await this.options.imageStore.put(this.migrationKey(instanceId), join(this.instanceDir(instanceId), "disk"), { signal: call.signal });
    }
  }

  async finishMigration({ instance, powerOn }: FinishMigrationOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const id = instance.id;
    const existing = await this.find(id);
    const stash = this.stashDir(id);
    // The instance's old copy is here, waiting for the move: a resize in place.
    const inPlace = existing !== undefined && (await this.sidecar(id)).migratingTo !== undefined;
    if (existing && !inPlace) {
      if (existing.meta?.specHash !== specHash(instance)) {
        throw new DriverError("INSTANCE_EXISTS", `instance ${id} already exists on ${this.options.hostname} with another spec`);
      }
      if (powerOn && existing.power !== "RUNNING") await this.start(existing, "start");
      return;
    }
    const dir = this.instanceDir(id);
    const boot = await this.images(instance, call.signal);
    await this.placement.run(async () => {
      // In place, the old copy's disk stays reserved until confirm; its memory is free (it is off).
      await this.checkFits({ memoryMb: powerOn ? instance.memoryMb : 0, diskGb: instance.diskGb }, "finish the migration of", id);
      try {
        if (inPlace) {
          // Set the old copy aside (Nova's <uuid>_resize) and build the new one from a copy of its disk.
          await rm(stash, { recursive: true, force: true });
          await writeFile(join(dir, "domain.xml"), await existing.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE));
          await rm(join(dir, "novamesh.json"), { force: true });
          await this.remove(id, true);
          await rename(dir, stash);
          await mkdir(dir, { recursive: true });
          await cp(join(stash, "disk"), join(dir, "disk"));
        } else {
          await rm(dir, { recursive: true, force: true });
          await mkdir(dir, { recursive: true });
          await this.options.imageStore.get(this.migrationKey(id), join(dir, "disk"), { signal: call.signal });
          await rebaseUnsafe(join(dir, "disk"), boot.base, this.baseFormat(instance), call.signal);
        }
        await growTo(join(dir, "disk"), instance.diskGb, call.signal);
        await this.define(instance, boot, powerOn);
      } catch (err) {
        if (inPlace && (await this.hasStash(id)) && !(await this.find(id).catch(() => undefined))) {
          await this.restoreStash(id); // the old copy stays as it was
        } else if (!inPlace) {
          await this.remove(id).catch(() => undefined);
        }
        throw fromLibvirt(err, `finishing the migration of ${id}`);
      }
    });
    if (!inPlace) await this.options.imageStore.delete(this.migrationKey(id)).catch(() => undefined);
  }

  /** Puts a set-aside copy back as the domain (replacing whatever directory is there). */
  private async restoreStash(id: string): Promise<void> {
    const stash = this.stashDir(id);
    const xml = await readFile(join(stash, "domain.xml"), "utf8");
    const dir = this.instanceDir(id);
    await rm(dir, { recursive: true, force: true });
    await rename(stash, dir);
    await rm(join(dir, "domain.xml"), { force: true });
    await this.call(`restoring ${id}`, (conn) => conn.defineXML(xml));
  }

  async confirmMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    if (await this.hasStash(instanceId)) {
      await rm(this.stashDir(instanceId), { recursive: true, force: true });
    } else if ((await this.sidecar(instanceId)).migratingTo !== undefined) {
      await this.remove(instanceId);
    }
    await this.options.imageStore.delete(this.migrationKey(instanceId)).catch(() => undefined);
    await this.pruneImages().catch(() => undefined);
  }

  async finishRevertMigration({ instanceId, powerOn }: FinishRevertMigrationOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    if (await this.hasStash(instanceId)) {
      await this.remove(instanceId, true); // the new copy of a resize in place, if destroy has not taken it
      await this.restoreStash(instanceId);
    } else if ((await this.sidecar(instanceId)).migratingTo !== undefined) {
      await rm(join(this.instanceDir(instanceId), "novamesh.json"), { force: true });
    }
    const k = await this.get(instanceId);
    if (powerOn && k.power !== "RUNNING") await this.start(k, "start");
  }

  // ---- live migration (qemu) ----------------------------------------------------------------

  private requireLiveMigration(what: string): void {
    if (!this.capabilities.liveMigration) {
      throw new NotSupportedError(
        what,
        this.hvType === "QEMU" ? `libvirt on ${this.options.hostname} (no live migration URI configured)` : `libvirt (${this.options.uri})`,
      );
    }
  }

  /** Target: fetches the images, makes an empty overlay on the local base, and holds the flavor's memory and disk. */
  async preLiveMigration({ instance, sourceHost }: PreLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.requireLiveMigration("preLiveMigration");
    throwIfAborted(call.signal);
    const id = instance.id;
    const [existing, side] = await this.lookup(id);
    if (side.incoming) return;
    if (existing) throw new DriverError("INSTANCE_EXISTS", `instance ${id} already exists on ${this.options.hostname} (${existing.power})`);
    const dir = this.instanceDir(id);
    try {
      const boot = await this.images(instance, call.signal);
      await this.placement.run(async () => {
        await this.checkFits(instance, "receive", id);
        throwIfAborted(call.signal);
        // The source copies only its overlay (incremental): the base below it is this host's copy of the same image.
        await this.freshOverlay(instance, boot.base, call.signal);
        const p = instance.image.properties;
        const imageIds = [instance.image.id, p.kernel_id, p.ramdisk_id].filter((x): x is string => !!x);
        await this.setSidecar(id, { incoming: { from: sourceHost, memoryMb: instance.memoryMb, diskGb: instance.diskGb, imageIds } });
      });
    } catch (err) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw fromLibvirt(err, `preparing the live migration of ${id}`);
    }
  }

  /**
   * Source: `virDomainMigrateToURI3`, peer to peer to the target's libvirtd,
   * with the domain XML moved to the target's paths and the local disk copied
   * incrementally; progress from the job's statistics; an abort cancels the job.
   */
  async liveMigrate({ instanceId, targetHost, targetUri, onProgress }: LiveMigrateOptions, call: CallOptions = {}): Promise<void> {
    this.requireLiveMigration("liveMigrate");
    const signal = call.signal;
    const aborted = (cause?: unknown) =>
      new DriverError("ABORTED", `live migration of ${instanceId} to ${targetHost} aborted; it stays on ${this.options.hostname}`, {
        retryable: false,
        cause: cause ?? signal?.reason,
      });
    if (signal?.aborted) throw aborted();
    const k = await this.get(instanceId);
    await this.refuseOldCopy(instanceId, "live migrate");
    if (k.power !== "RUNNING" && k.power !== "PAUSED") throw invalidState(`cannot live migrate ${instanceId}: it is ${k.power}`);
    const target = parseMigrationUri(targetUri);
    const [liveXml, persistentXml] = await this.call(`reading the domain XML of ${instanceId}`, () =>
      Promise.all([
        k.dom.getXMLDesc(C.VIR_DOMAIN_XML_MIGRATABLE | C.VIR_DOMAIN_XML_SECURE),
        k.dom.getXMLDesc(C.VIR_DOMAIN_XML_MIGRATABLE | C.VIR_DOMAIN_XML_SECURE | C.VIR_DOMAIN_XML_INACTIVE),
      ]),
    );
    const here = this.options.instancesPath;
    const addr = target.inboundAddr.includes(":") ? `[${target.inboundAddr}]` : target.inboundAddr;
    const flags =
      C.VIR_MIGRATE_LIVE |
      C.VIR_MIGRATE_PEER2PEER |
      C.VIR_MIGRATE_PERSIST_DEST |
      C.VIR_MIGRATE_UNDEFINE_SOURCE |
      C.VIR_MIGRATE_NON_SHARED_INC |
      C.VIR_MIGRATE_ABORT_ON_ERROR |
      (k.power === "PAUSED" ? C.VIR_MIGRATE_PAUSED : 0);

    let best = 0;
    const progress = (percent: number, message: string) => {
      if (percent < best) return;
      best = percent;
      try {
        onProgress?.(percent, message);
      } catch {
        // progress is best effort
      }
    };
    progress(0, `migrating to ${targetHost}`);
    let done = false;
    const abortJob = () => void k.dom.abortJob().catch(() => undefined);
    signal?.addEventListener("abort", abortJob, { once: true });
    const poller = (async () => {
      while (!done) {
        await sleep(this.options.liveMigrationPollMs ?? 500);
        if (done) return;
        if (signal?.aborted) abortJob(); // the job may not have existed when the abort came
        const stats = await k.dom.getJobStats().catch(() => undefined);
        const percent = stats && jobPercent(stats.stats);
        if (!done && stats && percent !== undefined) progress(percent, jobMessage(stats.stats));
      }
    })();
    try {
      await this.call(`live migrating ${instanceId} to ${targetHost}`, () =>
        k.dom.migrateToURI3(
          target.uri,
          {
            migrateUri: `tcp://${addr}`,
            listenAddress: target.inboundAddr,
            destXml: rebaseXmlPaths(liveXml, here, target.instancesPath),
            persistXml: rebaseXmlPaths(persistentXml, here, target.instancesPath),
            ...(this.options.liveMigrationBandwidthMiBs ? { bandwidthMiBs: this.options.liveMigrationBandwidthMiBs } : {}),
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
    await this.remove(instanceId).catch(() => undefined);
    await this.pruneImages().catch(() => undefined);
    progress(100, `migrated to ${targetHost}`);
  }

  /** Target: the migrated domain takes over; what preLiveMigration recorded is dropped. */
  async postLiveMigration({ instanceId }: PostLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.requireLiveMigration("postLiveMigration");
    throwIfAborted(call.signal);
    const [k, side] = await this.lookup(instanceId);
    if (!k) {
      if (side.incoming) throw invalidState(`the live migration of ${instanceId} from ${side.incoming.from} has not arrived on ${this.options.hostname}`);
      throw new InstanceNotFoundError(instanceId);
    }
    if (k.state === C.VIR_DOMAIN_PAUSED && k.reason === C.VIR_DOMAIN_PAUSED_MIGRATION && side.incoming) {
      throw invalidState(`the live migration of ${instanceId} is still arriving on ${this.options.hostname}`);
    }
    if (k.power !== "RUNNING" && k.power !== "PAUSED") throw invalidState(`${instanceId} is ${k.power} on ${this.options.hostname}, not a finished live migration`);
    if (side.incoming) await rm(join(this.instanceDir(instanceId), "novamesh.json"), { force: true });
  }

  /** Target: removes a prepared (or half-arrived) incoming instance; one that arrived is not touched. */
  async rollbackLiveMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.requireLiveMigration("rollbackLiveMigration");
    throwIfAborted(call.signal);
    const [k, side] = await this.lookup(instanceId);
    if (!side.incoming) {
      if (k) throw invalidState(`${instanceId} on ${this.options.hostname} is not an incoming live migration (it is ${k.power})`);
      return;
    }
    if (k && !(k.state === C.VIR_DOMAIN_PAUSED && k.reason === C.VIR_DOMAIN_PAUSED_MIGRATION) && k.state !== C.VIR_DOMAIN_SHUTOFF) {
      throw invalidState(`${instanceId} has arrived on ${this.options.hostname} (it is ${k.power}); it is not rolled back`);
    }
    await this.remove(instanceId);
    await this.pruneImages().catch(() => undefined);
  }
}
