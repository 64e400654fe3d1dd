/**
 * The libvirt driver: real virtual machines through libvirt (Nova's
 * `nova/virt/libvirt/driver.py`), on the binding in `./binding`.
 *
 * This is its facade: the Driver calls, each done by the module that owns
 * its concern (see README.md for the layout on the host):
 *
 *   connection.ts      the libvirt connection, reconnects, state change events
 *   instance-files.ts  instance directories, overlays, sidecars, console logs
 *   inventory.ts       resources, domains, the host report, the fit check
 *   image-cache.ts     base images (and kernels, ramdisks) and their pruning
 *   domains.ts         defining, starting, stopping and removing domains
 *   interfaces.ts      network interface hot-plug and unplug
 *   volumes.ts         volumes (NBD exports over TLS) attached as virtio disks
 *   volume-sizes.ts    an attached volume's new size taken by the running guest
 *   cold-migration.ts  resize and cold migration
 *   live-migration.ts  live migration (qemu, with `liveMigrationUri`)
 *
 * Best-effort steps (cleanup after a failure, pruning after a success) go
 * through `bestEffort` (failures.ts), which logs what failed to `logger`.
 */
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import {
  DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS,
  type AttachVolumeOptions,
  type CallOptions,
  type ConsoleOutputOptions,
  type DetachVolumeOptions,
  type ExtendVolumeOptions,
  type HoldVolumeOptions,
  type Driver,
  type InstanceOptions,
  type InterfaceOptions,
  type PowerOffOptions,
  type RebootOptions,
  type RebuildOptions,
  type RootVolume,
  type SnapshotOptions,
  type SpawnOptions,
} from "../driver.js";
import { DriverError, InstanceNotFoundError, NotSupportedError, SoftRebootTimeoutError, throwIfAborted } from "../errors.js";
import type { AttachedVolume, DriverCapabilities, HostReport, PowerState, Resources, SnapshotInfo } from "../types.js";
import { ColdMigration } from "./cold-migration.js";
import { ManagedConnection } from "./connection.js";
import { Domains, refuseVolumeBooted, specHash } from "./domains.js";
import { bestEffort, fromLibvirt, invalidState } from "./failures.js";
import { BaseImages, type BootImages } from "./image-cache.js";
import { InstanceFiles } from "./instance-files.js";
import { Interfaces } from "./interfaces.js";
import { Inventory, type Known } from "./inventory.js";
import { LiveMigration, announcedMigrationUri, uriScheme } from "./live-migration.js";
import type { LibvirtDriverOptions } from "./options.js";
import type { DriverParts } from "./parts.js";
import { convert } from "./qemu-img.js";
import { checkInitialVolumes } from "../volume-devices.js";
import type { DomainVolume } from "./domain-xml.js";
import { VolumeSizes } from "./volume-sizes.js";
import { Volumes } from "./volumes.js";

export type { LibvirtDriverOptions } from "./options.js";
export { domainTypeFor } from "./inventory.js";

export class LibvirtDriver implements Driver {
  readonly capabilities: DriverCapabilities;
  readonly migrationUri?: string;
  private readonly options: LibvirtDriverOptions;
  /** The parts each concern is done by. */
  private readonly p: DriverParts;
  private readonly cold: ColdMigration;
  private readonly live: LiveMigration;
  private readonly nics: Interfaces;
  private readonly disks: Volumes;
  private readonly sizes: VolumeSizes;
  private readonly hvType: string;
  private arch: string | undefined;

  constructor(options: LibvirtDriverOptions) {
    if (!options.instancesPath.startsWith("/")) throw new RangeError(`instancesPath must be absolute, got "${options.instancesPath}"`);
    this.options = options;
    const scheme = uriScheme(options.uri);
    this.hvType = scheme === "qemu" ? "QEMU" : scheme;
    this.migrationUri = announcedMigrationUri(options);
    this.capabilities = {
      softReboot: true,
      cleanShutdown: true,
      persistent: true,
      pause: true,
      suspend: true,
      snapshot: true,
      coldMigration: true,
      liveMigration: this.migrationUri !== undefined,
      consoleLog: true,
      // libvirt's test hypervisor has no device attach or detach (VIR_ERR_NO_SUPPORT).
      interfaceHotplug: scheme !== "test",
      // The same: no disk hot-plug on libvirt's test hypervisor.
      volumeAttach: scheme !== "test",
    };
    const log = (options.logger ?? pino({ enabled: false })).child({ driver: "libvirt" });
    const libvirt = new ManagedConnection(options.uri, log);
    const files = new InstanceFiles(options.instancesPath);
    const inventory = new Inventory(libvirt, files, options, log);
    const cache = { dir: join(options.instancesPath, "_base"), store: options.imageStore, minAgeSeconds: options.imageCacheMinAgeSeconds, log };
    const images = new BaseImages(cache, inventory, log);
    const domains = new Domains(libvirt, files, inventory, options);
    this.p = { options, log, libvirt, files, inventory, images, domains };
    this.cold = new ColdMigration(this.p, (id, what, root, volumes) => this.initialVolumes(id, what, root, volumes));
    this.live = new LiveMigration(this.p, this.capabilities.liveMigration);
    this.nics = new Interfaces(this.p);
    this.disks = new Volumes(this.p);
    this.sizes = new VolumeSizes(this.p);
  }

  get hypervisorType(): string {
    return this.hvType;
  }

  /** The node's CPU model as libvirt's node info gives it ("x86_64" for qemu), known after init. */
  get architecture(): string | undefined {
    return this.arch;
  }

  // ---- connection and reports -------------------------------------------------------

  init(options: CallOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    return this.p.libvirt.open().then(async () => {
      await mkdir(this.options.instancesPath, { recursive: true });
      this.p.domains.type = this.options.domainType ?? (await this.p.inventory.domainType());
      this.arch = await this.p.inventory.architecture();
    });
  }

  onStateChange(listener: () => void): () => void {
    return this.p.libvirt.onStateChange(listener);
  }

  close(): Promise<void> {
    return this.p.libvirt.close();
  }

  async capacity(options: CallOptions = {}): Promise<Resources> {
    throwIfAborted(options.signal);
    return this.p.inventory.capacity();
  }

  async report(options: CallOptions = {}): Promise<HostReport> {
    throwIfAborted(options.signal);
    return this.p.inventory.report();
  }

  async powerState({ instanceId }: InstanceOptions, options: CallOptions = {}): Promise<PowerState> {
    throwIfAborted(options.signal);
    const [k, side] = await this.p.inventory.lookup(instanceId);
    if (k) return k.power;
    if (side.incoming) return "PAUSED";
    throw new InstanceNotFoundError(instanceId);
  }

  /** The tail of the serial console log libvirt (virtlogd) writes to `<server id>/console.log`. */
  async consoleOutput({ instanceId, maxBytes }: ConsoleOutputOptions, options: CallOptions = {}): Promise<string> {
    throwIfAborted(options.signal);
    await this.p.inventory.get(instanceId);
    return this.p.files.consoleTail(instanceId, maxBytes);
  }

  // ---- spawn and destroy ------------------------------------------------------------

  /**
   * Creates and starts the domain: its root disk an overlay on the cached
   * base image, or, booted from a volume, the volume's export on vda (only
   * the image's kernel and ramdisk are fetched; the instance directory holds
   * just the console log).
   */
  async spawn({ instance, rootVolume, volumes = [] }: SpawnOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { files, inventory, domains } = this.p;
    const attached = this.initialVolumes(instance.id, rootVolume ? "spawn from a volume" : "spawn with volumes", rootVolume, volumes);
    const [existing, side] = await inventory.lookup(instance.id);
    if (side.incoming) throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} is an incoming live migration on ${this.options.hostname}`);
    if (existing) {
      if (existing.power === "RUNNING" && existing.meta?.specHash === specHash(instance, rootVolume)) return;
      throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} already exists on ${this.options.hostname} (${existing.power})`);
    }
    try {
      // Fetching a base image can take long: outside the lock, which only covers check-and-define.
      const boot: Partial<BootImages> = rootVolume ? await this.p.images.kernelOf(instance, call.signal) : await this.p.images.forInstance(instance, call.signal);
      const need = rootVolume ? { memoryMb: instance.memoryMb, diskGb: 0 } : instance;
      await inventory.placing(need, "spawn", instance.id, async () => {
        throwIfAborted(call.signal);
        if (boot.base === undefined) await files.fresh(instance.id);
        else await files.freshOverlay(instance, boot.base, call.signal);
        throwIfAborted(call.signal);
        await domains.define(instance, boot, true, attached, rootVolume);
      });
    } catch (err) {
      // A failed spawn leaves nothing behind, so it can be retried here or elsewhere.
      await bestEffort(this.p.log, "removing a half-made instance", () => domains.remove(instance.id), { instance: instance.id });
      const e = fromLibvirt(err, `spawning ${instance.id}`);
      if (e.code.startsWith("LIBVIRT_")) throw new DriverError("SPAWN_FAILED", e.message, { retryable: true, cause: err });
      throw e;
    }
  }

  /**
   * The volumes a domain is defined with (spawn, finishMigration) as its
   * disks, checked (INVALID_ARGUMENT); NOT_SUPPORTED without `volumeAttach`.
   */
  private initialVolumes(instanceId: string, what: string, rootVolume: RootVolume | undefined, volumes: readonly AttachedVolume[]): DomainVolume[] {
    if (!rootVolume && volumes.length === 0) return [];
    if (!this.capabilities.volumeAttach) throw new NotSupportedError(what, `libvirt (${this.hvType})`);
    checkInitialVolumes(instanceId, rootVolume, volumes);
    return volumes.map(({ attachmentId, device, connection: { host, port, exportName } }) => ({ attachmentId, target: device, host, port, exportName }));
  }

  async destroy({ instanceId }: InstanceOptions): Promise<void> {
    await this.p.domains.remove(instanceId);
    await this.p.images.pruneUnused();
  }

  // ---- power --------------------------------------------------------------------------

  async powerOn({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.p.inventory.get(instanceId);
    await this.p.domains.refuseOldCopy(instanceId, "power on");
    await this.p.domains.start(k, "power on");
  }

  async powerOff({ instanceId, timeoutSeconds }: PowerOffOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    await this.p.domains.stop(await this.p.inventory.get(instanceId), timeoutSeconds, call.signal);
  }

  async reboot({ instanceId, hard, timeoutSeconds }: RebootOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { inventory, domains, libvirt } = this.p;
    const k = await inventory.get(instanceId);
    await domains.refuseOldCopy(instanceId, hard ? "hard reboot" : "soft reboot");
    if (!hard) {
      if (k.power !== "RUNNING") throw invalidState(`cannot soft reboot ${instanceId}: it is ${k.power}`);
      // Nova's soft reboot: a clean shutdown and a fresh start; a guest that
      // does not shut down in time is left as it is, and the caller reboots hard.
      const seconds = timeoutSeconds && timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
      if (!(await domains.shutdownGuest(k, seconds, call.signal))) throw new SoftRebootTimeoutError(instanceId, seconds);
      await libvirt.call(`starting ${instanceId}`, () => k.dom.create());
      return;
    }
    // Hard: power cycle from any state, dropping a saved state.
    await domains.stopHard(k);
    await domains.start(await inventory.get(instanceId), "hard reboot");
  }

  /**
   * A change of power state that libvirt makes in one call: nothing when the
   * instance is in state `to` already, INVALID_STATE unless it is in `from`.
   */
  private async transition(instanceId: string, what: string, from: PowerState, to: PowerState, call: CallOptions, act: (k: Known) => Promise<void>): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.p.inventory.get(instanceId);
    if (k.power === to) return;
    if (k.power !== from) throw invalidState(`cannot ${what} ${instanceId}: it is ${k.power}`);
    await act(k);
  }

  pause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return this.transition(instanceId, "pause", "RUNNING", "PAUSED", call, (k) => this.p.libvirt.call(`pausing ${instanceId}`, () => k.dom.suspend()));
  }

  unpause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return this.transition(instanceId, "unpause", "PAUSED", "RUNNING", call, (k) => this.p.libvirt.call(`unpausing ${instanceId}`, () => k.dom.resume()));
  }

  suspend({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return this.transition(instanceId, "suspend", "RUNNING", "SUSPENDED", call, (k) =>
      this.p.libvirt.call(`suspending ${instanceId}`, () => k.dom.managedSave()),
    );
  }

  resume({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return this.transition(instanceId, "resume", "SUSPENDED", "RUNNING", call, (k) => this.p.domains.start(k, "resume"));
  }

  // ---- images -----------------------------------------------------------------------------

  async snapshot({ instanceId, imageId, onUploading }: SnapshotOptions, call: CallOptions = {}): Promise<SnapshotInfo> {
    throwIfAborted(call.signal);
    const { inventory, files, libvirt } = this.p;
    const k = await inventory.get(instanceId);
    refuseVolumeBooted(k, "snapshot");
    const tmp = join(files.dir(instanceId), `snapshot-${imageId}.qcow2`);
    // A running guest is paused while its disk is copied, so the copy is consistent.
    const pause = k.power === "RUNNING";
    try {
      if (pause) await libvirt.call(`pausing ${instanceId} for a snapshot`, () => k.dom.suspend());
      try {
        await convert({ source: files.disk(instanceId), dest: tmp, format: "qcow2", forceShare: true }, call.signal);
      } finally {
        if (pause) await libvirt.call(`unpausing ${instanceId} after a snapshot`, () => k.dom.resume());
      }
      onUploading?.();
      const stored = await this.options.imageStore.put(imageId, tmp, { signal: call.signal });
      return { sizeBytes: stored.sizeBytes, checksum: stored.checksum, diskFormat: "qcow2" };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async rebuild({ instance, onSpawning, rootVolume, volumes: given = [] }: RebuildOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { inventory, files, domains } = this.p;
    const k = await inventory.get(instance.id);
    if (rootVolume) return this.rebuildOnVolume(k, { instance, rootVolume, volumes: given, ...(onSpawning ? { onSpawning } : {}) }, call);
    refuseVolumeBooted(k, "rebuild");
    const volumes = this.capabilities.volumeAttach ? await this.disks.defined(k) : []; // Nova's rebuild keeps them
    await domains.stopHard(k);
    const boot = await this.p.images.forInstance(instance, call.signal);
    // Fits once this instance's own resources are given back (it is off now; its disk is replaced).
    const diskGb = Math.max(0, instance.diskGb - (k.meta?.diskGb ?? 0));
    await inventory.placing({ memoryMb: instance.memoryMb, diskGb }, "rebuild", instance.id, async () => {
      await mkdir(files.dir(instance.id), { recursive: true });
      const next = join(files.dir(instance.id), "disk.rebuild");
      await files.overlay(instance, boot.base, next, call.signal);
      await rename(next, files.disk(instance.id)); // the old disk is gone from here on
      onSpawning?.();
      await domains.define(instance, boot, true, volumes);
    });
    await this.p.images.pruneUnused();
  }

  /**
   * The rebuild of a volume-booted instance, whose volume host has written
   * the image over its root volume: the domain is defined again (the new
   * image's kernel, ramdisk and command line) on that volume and the
   * volumes given, and started. No local disk is made.
   */
  private async rebuildOnVolume(k: Known, o: RebuildOptions & { rootVolume: RootVolume; volumes: readonly AttachedVolume[] }, call: CallOptions): Promise<void> {
    const { instance, rootVolume } = o;
    const attached = this.initialVolumes(instance.id, "rebuild from a volume", rootVolume, o.volumes);
    const root = k.meta?.rootAttachmentId;
    if (root !== rootVolume.attachmentId) {
      throw invalidState(`cannot rebuild ${instance.id} on volume attachment ${rootVolume.attachmentId}: it boots from ${root ? `volume attachment ${root}` : "a local disk"}`);
    }
    await this.p.domains.stopHard(k);
    const boot = await this.p.images.kernelOf(instance, call.signal);
    await this.p.inventory.placing({ memoryMb: instance.memoryMb, diskGb: 0 }, "rebuild", instance.id, async () => {
      o.onSpawning?.();
      await this.p.domains.define(instance, boot, true, attached, rootVolume);
    });
    await this.p.images.pruneUnused();
  }

  // ---- resize and cold migration (cold-migration.ts), live migration (live-migration.ts) --------

  readonly migrateDiskAndPowerOff: Driver["migrateDiskAndPowerOff"] = (o, call) => this.cold.migrateDiskAndPowerOff(o, call);
  readonly finishMigration: Driver["finishMigration"] = (o, call) => this.cold.finishMigration(o, call);
  readonly confirmMigration: Driver["confirmMigration"] = (o, call) => this.cold.confirmMigration(o, call);
  readonly finishRevertMigration: Driver["finishRevertMigration"] = (o, call) => this.cold.finishRevertMigration(o, call);
  readonly preLiveMigration: Driver["preLiveMigration"] = (o, call) => this.live.preLiveMigration(o, call);
  readonly liveMigrate: Driver["liveMigrate"] = (o, call) => this.live.liveMigrate(o, call);
  readonly postLiveMigration: Driver["postLiveMigration"] = (o, call) => this.live.postLiveMigration(o, call);
  readonly rollbackLiveMigration: Driver["rollbackLiveMigration"] = (o, call) => this.live.rollbackLiveMigration(o, call);

  // ---- network interfaces (interfaces.ts) --------------------------------------------------

  async attachInterface(options: InterfaceOptions, call: CallOptions = {}): Promise<void> {
    if (!this.capabilities.interfaceHotplug) throw new NotSupportedError("attachInterface", `libvirt (${this.hvType})`);
    return this.nics.attach(options, call);
  }

  async detachInterface(options: InstanceOptions & { readonly mac: string }, call: CallOptions = {}): Promise<void> {
    if (!this.capabilities.interfaceHotplug) throw new NotSupportedError("detachInterface", `libvirt (${this.hvType})`);
    return this.nics.detach(options, call);
  }

  // ---- volumes (volumes.ts) ----------------------------------------------------------------------------

  async attachVolume(options: AttachVolumeOptions, call: CallOptions = {}): Promise<{ device: string }> {
    if (!this.capabilities.volumeAttach) throw new NotSupportedError("attachVolume", `libvirt (${this.hvType})`);
    return this.disks.attach(options, call);
  }

  async detachVolume(options: DetachVolumeOptions, call: CallOptions = {}): Promise<void> {
    if (!this.capabilities.volumeAttach) throw new NotSupportedError("detachVolume", `libvirt (${this.hvType})`);
    return this.disks.detach(options, call);
  }

  async extendVolume(options: ExtendVolumeOptions, call: CallOptions = {}): Promise<void> {
    if (!this.capabilities.volumeAttach) throw new NotSupportedError("extendVolume", `libvirt (${this.hvType})`);
    return this.sizes.extend(options, call);
  }

  async holdVolume(options: HoldVolumeOptions, call: CallOptions = {}): Promise<void> {
    if (!this.capabilities.volumeAttach) throw new NotSupportedError("holdVolume", `libvirt (${this.hvType})`);
    return this.sizes.hold(options, call);
  }

  async volumes(options: InstanceOptions, call: CallOptions = {}): Promise<readonly AttachedVolume[]> {
    if (!this.capabilities.volumeAttach) throw new NotSupportedError("volumes", `libvirt (${this.hvType})`);
    return this.disks.list(options, call);
  }
}
