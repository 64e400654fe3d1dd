/**
 * The fake driver: an in-memory hypervisor with the semantics of a real one
 * (Nova's fake driver), configured — not subclassed — for capacity, delays
 * and faults. Many can run in one process to simulate many hosts.
 *
 * The state and the rules every call shares are in fake-host.ts; the calls
 * in lifecycle.ts (create, power, pause, suspend, rebuild, remove),
 * migrations.ts (cold and live, between fake hosts) and snapshot.ts (disk
 * snapshots and the console log) and volumes.ts (volume attachments).
 */
import type {
  AttachVolumeOptions,
  CallOptions,
  ConsoleOutputOptions,
  DetachVolumeOptions,
  ExtendVolumeOptions,
  HoldVolumeOptions,
  Driver,
  FinishMigrationOptions,
  FinishRevertMigrationOptions,
  InstanceOptions,
  InterfaceOptions,
  LiveMigrateOptions,
  MigrateDiskOptions,
  PostLiveMigrationOptions,
  PowerOffOptions,
  PreLiveMigrationOptions,
  RebootOptions,
  RebuildOptions,
  SnapshotOptions,
  SpawnOptions,
} from "../driver.js";
import type { AttachedVolume, DriverCapabilities, HostReport, PowerState, Resources, SnapshotInfo } from "../types.js";
import { isPowerState } from "../types.js";
import type { FakeCall, FakeDomain } from "./domain-store.js";
import { FakeHost, type FakeDriverOptions } from "./fake-host.js";
import * as lifecycle from "./lifecycle.js";
import * as migrations from "./migrations.js";
import * as guest from "./snapshot.js";
import * as disks from "./volumes.js";

export type { FakeCall, FakeDomain, FakeEvent, FakeIncoming } from "./domain-store.js";
export type { FakeDriverOptions } from "./fake-host.js";
export { LIVE_MIGRATION_STEPS } from "./migrations.js";

/** An in-memory hypervisor. */
export class FakeDriver implements Driver {
  readonly hypervisorType: string;
  readonly capabilities: DriverCapabilities;
  readonly migrationUri: string | undefined;
  private readonly host: FakeHost;

  constructor(options: Partial<FakeDriverOptions> = {}) {
    this.host = new FakeHost(options);
    this.hypervisorType = this.host.options.hypervisorType;
    this.capabilities = this.host.capabilities;
    this.migrationUri = this.host.migrationUri;
  }

  /** The options in effect. */
  get options(): FakeDriverOptions {
    return this.host.options;
  }

  get architecture(): string {
    return this.host.options.architecture;
  }

  /** Mutating calls made on this object, oldest first (last 10,000). */
  get calls(): readonly FakeCall[] {
    return this.host.calls;
  }

  /** A copy of one domain, for tests; undefined if unknown. */
  domain(instanceId: string): Readonly<FakeDomain> | undefined {
    const d = this.host.state.domains.get(instanceId);
    return d && { ...d };
  }

  /** A copy of the old copy a resize in place set aside, for tests; undefined if none. */
  resizeStash(instanceId: string): Readonly<FakeDomain> | undefined {
    const d = this.host.state.stashes.get(instanceId);
    return d && { ...d };
  }

  /**
   * Sets a domain's power state as if the guest had done it (shut itself
   * down, crashed, …), for tests in this process. Other processes use
   * `setDomainPowerState(statePath, …)`.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  async setPowerState(instanceId: string, powerState: PowerState): Promise<void> {
    if (!isPowerState(powerState)) throw new TypeError(`not a power state: ${String(powerState)}`);
    await this.host.ready(undefined, false, {});
    this.host.get(instanceId).powerState = powerState;
    await this.host.persist();
  }

  init(options: CallOptions = {}): Promise<void> {
    return this.host.init(options);
  }

  async capacity(options: CallOptions = {}): Promise<Resources> {
    await this.host.ready(undefined, false, options);
    return { ...this.host.options.capacity };
  }

  async report(options: CallOptions = {}): Promise<HostReport> {
    await this.host.ready("report", false, options);
    const used = this.host.used();
    const { capacity } = this.host.options;
    return {
      freeMemoryMb: Math.max(0, capacity.memoryMb - used.memoryMb),
      freeDiskGb: Math.max(0, capacity.diskGb - used.diskGb),
      instances: [...this.host.state.domains].map(([serverId, d]) => ({ serverId, powerState: d.powerState })),
    };
  }

  async powerState({ instanceId }: InstanceOptions, options: CallOptions = {}): Promise<PowerState> {
    await this.host.ready("powerState", false, options, instanceId);
    return this.host.get(instanceId).powerState;
  }

  spawn(options: SpawnOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.spawn(this.host, options, call);
  }

  destroy(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.destroy(this.host, options, call);
  }

  powerOn(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.powerOn(this.host, options, call);
  }

  powerOff(options: PowerOffOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.powerOff(this.host, options, call);
  }

  reboot(options: RebootOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.reboot(this.host, options, call);
  }

  pause(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.pause(this.host, options, call);
  }

  attachInterface(options: InterfaceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.attachInterface(this.host, options, call);
  }

  detachInterface(options: InstanceOptions & { readonly mac: string }, call: CallOptions = {}): Promise<void> {
    return lifecycle.detachInterface(this.host, options, call);
  }

  attachVolume(options: AttachVolumeOptions, call: CallOptions = {}): Promise<{ device: string }> {
    return disks.attachVolume(this.host, options, call);
  }

  detachVolume(options: DetachVolumeOptions, call: CallOptions = {}): Promise<void> {
    return disks.detachVolume(this.host, options, call);
  }

  extendVolume(options: ExtendVolumeOptions, call: CallOptions = {}): Promise<void> {
    return disks.extendVolume(this.host, options, call);
  }

  holdVolume(options: HoldVolumeOptions, call: CallOptions = {}): Promise<void> {
    return disks.holdVolume(this.host, options, call);
  }

  volumes(options: InstanceOptions, call: CallOptions = {}): Promise<readonly AttachedVolume[]> {
    return disks.volumes(this.host, options, call);
  }

  unpause(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.unpause(this.host, options, call);
  }

  suspend(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.suspend(this.host, options, call);
  }

  resume(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.resume(this.host, options, call);
  }

  rebuild(options: RebuildOptions, call: CallOptions = {}): Promise<void> {
    return lifecycle.rebuild(this.host, options, call);
  }

  snapshot(options: SnapshotOptions, call: CallOptions = {}): Promise<SnapshotInfo> {
    return guest.snapshot(this.host, options, call);
  }

  consoleOutput(options: ConsoleOutputOptions, call: CallOptions = {}): Promise<string> {
    return guest.consoleOutput(this.host, options, call);
  }

  migrateDiskAndPowerOff(options: MigrateDiskOptions, call: CallOptions = {}): Promise<void> {
    return migrations.migrateDiskAndPowerOff(this.host, options, call);
  }

  finishMigration(options: FinishMigrationOptions, call: CallOptions = {}): Promise<void> {
    return migrations.finishMigration(this.host, options, call);
  }

  confirmMigration(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return migrations.confirmMigration(this.host, options, call);
  }

  finishRevertMigration(options: FinishRevertMigrationOptions, call: CallOptions = {}): Promise<void> {
    return migrations.finishRevertMigration(this.host, options, call);
  }

  preLiveMigration(options: PreLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    return migrations.preLiveMigration(this.host, options, call);
  }

  liveMigrate(options: LiveMigrateOptions, call: CallOptions = {}): Promise<void> {
    return migrations.liveMigrate(this.host, options, call);
  }

  postLiveMigration(options: PostLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    return migrations.postLiveMigration(this.host, options, call);
  }

  rollbackLiveMigration(options: InstanceOptions, call: CallOptions = {}): Promise<void> {
    return migrations.rollbackLiveMigration(this.host, options, call);
  }

  close(): Promise<void> {
    return this.host.close();
  }
}
