/**
 * The fake driver: an in-memory hypervisor with the semantics of a real one
 * (Nova's fake driver), configured — not subclassed — for capacity, delays
 * and faults. Many can run in one process to simulate many hosts.
 *
 * Live migration between fake hosts: the source's `liveMigrate` tells the
 * target whether the instance was paused (so it lands paused), directly if
 * the target driver lives in this process, else through the target's event
 * file, whose path its `migrationUri` carries
 * (`fake://<host>/<absolute statePath>`).
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
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
  type PowerOffOptions,
  type PreLiveMigrationOptions,
  type RebootOptions,
  type RebuildOptions,
  type SnapshotOptions,
  type SpawnOptions,
} from "../driver.js";
import { tailBytes } from "../console-tail.js";
import { DriverError, InstanceNotFoundError, NotSupportedError, SoftRebootTimeoutError } from "../errors.js";
import type { DriverCapabilities, HostReport, InstanceSpec, PowerState, Resources, SnapshotInfo } from "../types.js";
import { ACTIVE_POWER_STATES, isPowerState } from "../types.js";
import { appendEvent, DomainStore, type FakeCall, type FakeDomain, type FakeEvent, type FakeState } from "./domain-store.js";
import { FaultInjector, wait, type FaultableMethod, type Faults } from "./faults.js";

export type { FakeCall, FakeDomain, FakeEvent, FakeIncoming } from "./domain-store.js";

/** Options of {@link FakeDriver}; every field has a default. */
export interface FakeDriverOptions {
  /** Host name, for messages and the migration URI (default "fake-host"). */
  readonly hostname: string;
  /** Total resources (default 16 vCPUs, 32 GiB, 500 GiB). */
  readonly capacity: Resources;
  /**
   * How far instances may exceed `capacity` per resource, Nova's allocation
   * ratios (default vCPUs 16, memory 1.5, disk 1.0). A spawn beyond them is
   * refused with a retryable "INSUFFICIENT_RESOURCES". vCPUs and memory count
   * for running and paused domains (incoming live migrations included),
   * disk for every domain and every old copy set aside by a resize in place.
   */
  readonly allocationRatio: Resources;
  /** Faults and delays per method, and guests that ignore ACPI (default none); see `faults.ts`. */
  readonly faults: Faults;
  /** Delay of every mutating call without its own `delayMs` (default 0); each step of a live migration waits it. */
  readonly delayMs: number;
  /** CPU architecture it reports (default "x86_64"). */
  readonly architecture: string;
  /**
   * JSON file holding the domains, so they outlive the process as a real
   * hypervisor's do (default: in memory only). Mutating calls are appended
   * to `<statePath>.calls.jsonl`; events appended to
   * `<statePath>.events.jsonl` change domains behind the agent's back
   * (`setDomainPowerState`).
   */
  readonly statePath: string | undefined;
  /** Hypervisor type reported in Hello (default "fake"). */
  readonly hypervisorType: string;
  /** Capabilities to turn off (or on), e.g. `{ liveMigration: false }` (default: all on). */
  readonly capabilities: Partial<DriverCapabilities>;
}

const DEFAULTS: FakeDriverOptions = {
  hostname: "fake-host",
  capacity: { vcpus: 16, memoryMb: 32768, diskGb: 500 },
  allocationRatio: { vcpus: 16, memoryMb: 1.5, diskGb: 1 },
  faults: {},
  delayMs: 0,
  architecture: "x86_64",
  statePath: undefined,
  hypervisorType: "fake",
  capabilities: {},
};

/** Steps of a fake live migration; each waits the call's delay and reports progress. */
export const LIVE_MIGRATION_STEPS = 4;

/** Calls kept in {@link FakeDriver.calls}; older ones are dropped. */
const MAX_CALLS_IN_MEMORY = 10_000;

/** Fake drivers of this process by migration URI: live migration's "network". */
const FABRIC = new Map<string, FakeDriver>();

function sameInstance(a: InstanceSpec, b: InstanceSpec): boolean {
  return a.vcpus === b.vcpus && a.memoryMb === b.memoryMb && a.diskGb === b.diskGb && a.image.id === b.image.id;
}

/** `fake://<host>`, plus the absolute state path if there is one. */
function fakeMigrationUri(hostname: string, statePath: string | undefined): string {
  let url: URL;
  try {
    url = new URL(`fake://${hostname}`);
  } catch {
    url = new URL(`fake://${encodeURIComponent(hostname)}`);
  }
  if (statePath !== undefined) url.pathname = resolve(statePath);
  return url.href;
}

/** The state file a fake migration URI names, if it names one. */
function statePathOfUri(uri: string): string | undefined {
  try {
    const url = new URL(uri);
    if (url.protocol !== "fake:" || url.pathname === "" || url.pathname === "/") return undefined;
    return decodeURIComponent(url.pathname);
  } catch {
    return undefined;
  }
}

function invalidState(message: string): DriverError {
  return new DriverError("INVALID_STATE", message, { retryable: false });
}

/** An in-memory hypervisor. */
export class FakeDriver implements Driver {
  readonly hypervisorType: string;
  get architecture(): string {
    return this.options.architecture;
  }
  readonly capabilities: DriverCapabilities;
  readonly migrationUri: string | undefined;
  /** The options in effect. */
  readonly options: FakeDriverOptions;
  private readonly state: FakeState = { domains: new Map(), stashes: new Map(), eventsOffset: 0 };
  private readonly store: DomainStore;
  private readonly injector: FaultInjector;
  private readonly callLog: FakeCall[] = [];
  private loading: Promise<void> | undefined;
  private eventSync: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: Partial<FakeDriverOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.hypervisorType = this.options.hypervisorType;
    this.capabilities = {
      softReboot: true,
      cleanShutdown: true,
      persistent: this.options.statePath !== undefined,
      pause: true,
      suspend: true,
      snapshot: true,
      coldMigration: true,
      liveMigration: true,
      consoleLog: true,
      ...this.options.capabilities,
    };
    if (this.capabilities.liveMigration) this.migrationUri = fakeMigrationUri(this.options.hostname, this.options.statePath);
    this.store = new DomainStore(this.options.statePath);
    this.injector = new FaultInjector(this.options.faults, this.options.delayMs);
  }

  /** Mutating calls made on this object, oldest first (last 10,000). */
  get calls(): readonly FakeCall[] {
    return this.callLog;
  }

  /** A copy of one domain, for tests; undefined if unknown. */
  domain(instanceId: string): Readonly<FakeDomain> | undefined {
    const d = this.state.domains.get(instanceId);
    return d && { ...d };
  }

  /** A copy of the old copy a resize in place set aside, for tests; undefined if none. */
  resizeStash(instanceId: string): Readonly<FakeDomain> | undefined {
    const d = this.state.stashes.get(instanceId);
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
    await this.ready(undefined, false, {});
    this.get(instanceId).powerState = powerState;
    await this.persist();
  }

  init(options: CallOptions = {}): Promise<void> {
    this.loading ??= (async () => {
      await this.injector.apply("init", false, options.signal);
      const loaded = await this.store.load();
      for (const [id, d] of loaded.domains) this.state.domains.set(id, d);
      for (const [id, d] of loaded.stashes) this.state.stashes.set(id, d);
      this.state.eventsOffset = loaded.eventsOffset;
      if (this.migrationUri !== undefined && !this.closed) FABRIC.set(this.migrationUri, this);
    })().catch((err: unknown) => {
      this.loading = undefined;
      throw DriverError.from(err);
    });
    return this.loading;
  }

  async capacity(options: CallOptions = {}): Promise<Resources> {
    await this.ready(undefined, false, options);
    return { ...this.options.capacity };
  }

  async report(options: CallOptions = {}): Promise<HostReport> {
    await this.ready("report", false, options);
    const used = this.used();
    const { capacity } = this.options;
    return {
      freeMemoryMb: Math.max(0, capacity.memoryMb - used.memoryMb),
      freeDiskGb: Math.max(0, capacity.diskGb - used.diskGb),
      instances: [...this.state.domains].map(([serverId, d]) => ({ serverId, powerState: d.powerState })),
    };
  }

  async spawn({ instance }: SpawnOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("spawn", true, call, instance.id);
    const existing = this.state.domains.get(instance.id);
    if (existing) {
      if (existing.powerState === "RUNNING" && !existing.incoming && sameInstance(existing.instance, instance)) return;
      throw new DriverError(
        "INSTANCE_EXISTS",
        `instance ${instance.id} already exists on ${this.options.hostname} (${existing.powerState})`,
      );
    }
    this.checkFits(instance, { disk: true, memory: true }, "spawn");
    this.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: 1 });
    await this.persist();
  }

  async destroy({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("destroy", true, call, instanceId);
    if (!this.state.domains.delete(instanceId)) return;
    await this.persist();
  }

  async powerOn({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("powerOn", true, call, instanceId);
    const d = this.owned(instanceId, "power on");
    if (d.powerState === "RUNNING") return;
    if (!ACTIVE_POWER_STATES.has(d.powerState)) this.checkFits(d.instance, { memory: true }, "power on", instanceId);
    this.start(d);
    await this.persist();
  }

  async powerOff({ instanceId, timeoutSeconds }: PowerOffOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("powerOff", true, call, instanceId);
    const d = this.get(instanceId);
    if (d.powerState === "SHUTDOWN") return;
    this.owned(instanceId, "power off");
    await this.shutdownGuest(d, timeoutSeconds, call.signal);
    d.powerState = "SHUTDOWN";
    await this.persist();
  }

  async reboot({ instanceId, hard, timeoutSeconds }: RebootOptions, call: CallOptions = {}): Promise<void> {
    if (!hard) this.require("softReboot", "reboot(soft)");
    await this.ready("reboot", true, call, instanceId);
    const d = this.owned(instanceId, hard ? "hard reboot" : "soft reboot");
    if (!hard) {
      if (d.powerState !== "RUNNING") throw invalidState(`cannot soft reboot instance ${instanceId}: it is ${d.powerState}`);
      if (this.injector.ignoresAcpi(instanceId)) {
        const seconds = timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
        await wait(seconds * 1000, call.signal);
        throw new SoftRebootTimeoutError(instanceId, seconds);
      }
    }
    if (!ACTIVE_POWER_STATES.has(d.powerState)) this.checkFits(d.instance, { memory: true }, "reboot", instanceId);
    this.start(d);
    await this.persist();
  }

  async pause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("pause", "pause");
    await this.ready("pause", true, call, instanceId);
    const d = this.owned(instanceId, "pause");
    if (d.powerState === "PAUSED") return;
    if (d.powerState !== "RUNNING") throw invalidState(`cannot pause instance ${instanceId}: it is ${d.powerState}`);
    d.powerState = "PAUSED";
    await this.persist();
  }

  async unpause({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("pause", "unpause");
    await this.ready("unpause", true, call, instanceId);
    const d = this.owned(instanceId, "unpause");
    if (d.powerState === "RUNNING") return;
    if (d.powerState !== "PAUSED") throw invalidState(`cannot unpause instance ${instanceId}: it is ${d.powerState}`);
    d.powerState = "RUNNING";
    await this.persist();
  }

  async suspend({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("suspend", "suspend");
    await this.ready("suspend", true, call, instanceId);
    const d = this.owned(instanceId, "suspend");
    if (d.powerState === "SUSPENDED") return;
    if (d.powerState !== "RUNNING") throw invalidState(`cannot suspend instance ${instanceId}: it is ${d.powerState}`);
    d.powerState = "SUSPENDED";
    await this.persist();
  }

  async resume({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("suspend", "resume");
    await this.ready("resume", true, call, instanceId);
    const d = this.owned(instanceId, "resume");
    if (d.powerState === "RUNNING") return;
    if (d.powerState !== "SUSPENDED") throw invalidState(`cannot resume instance ${instanceId}: it is ${d.powerState}`);
    this.checkFits(d.instance, { memory: true }, "resume", instanceId);
    d.powerState = "RUNNING";
    await this.persist();
  }

  /**
   * Stores nothing; says what a real snapshot would have stored: a SHA-256
   * over the domain's spec and the image id (the same for the same domain
   * and image), about a tenth of the root disk, in the image's disk format.
   */
  async snapshot({ instanceId, imageId, onUploading }: SnapshotOptions, call: CallOptions = {}): Promise<SnapshotInfo> {
    this.require("snapshot", "snapshot");
    await this.ready("snapshot", true, call, instanceId);
    const d = this.owned(instanceId, "snapshot");
    // The capture took the call's delay; the upload takes it again.
    onUploading?.();
    await wait(this.injector.delayMs("snapshot", true, instanceId), call.signal);
    const checksum = createHash("sha256").update(JSON.stringify({ instance: d.instance, imageId })).digest("hex");
    const usedMib = Math.max(16, Math.round(d.instance.diskGb * 1024 * 0.1));
    return {
      sizeBytes: usedMib * 2 ** 20 + (parseInt(checksum.slice(0, 5), 16) % 2 ** 20),
      checksum,
      diskFormat: d.instance.image.diskFormat || "qcow2",
    };
  }

  async rebuild({ instance, onSpawning }: RebuildOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("rebuild", true, call, instance.id);
    const d = this.owned(instance.id, "rebuild");
    this.checkFits(instance, { disk: true, memory: true }, "rebuild", instance.id);
    // Removing the old disk took the call's delay; building the new one takes it again.
    onSpawning?.();
    await wait(this.injector.delayMs("rebuild", true, instance.id), call.signal);
    this.state.domains.set(instance.id, { instance, powerState: "RUNNING", boots: d.boots + 1 });
    await this.persist();
  }

  async migrateDiskAndPowerOff(
    { instanceId, targetHost, timeoutSeconds }: MigrateDiskOptions,
    call: CallOptions = {},
  ): Promise<void> {
    this.require("coldMigration", "migrateDiskAndPowerOff");
    await this.ready("migrateDiskAndPowerOff", true, call, instanceId);
    const d = this.get(instanceId);
    if (d.incoming) throw invalidState(`cannot migrate instance ${instanceId}: it is an incoming live migration`);
    if (d.migratedTo !== undefined) {
      if (d.migratedTo === targetHost) return;
      throw invalidState(`cannot migrate instance ${instanceId} to ${targetHost}: its disk was handed to ${d.migratedTo}`);
    }
    await this.shutdownGuest(d, timeoutSeconds, call.signal);
    d.powerState = "SHUTDOWN";
    d.migratedTo = targetHost;
    await this.persist();
  }

  async finishMigration({ instance, powerOn }: FinishMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("coldMigration", "finishMigration");
    await this.ready("finishMigration", true, call, instance.id);
    const existing = this.state.domains.get(instance.id);
    if (existing && existing.migratedTo === undefined) {
      if (existing.incoming || !sameInstance(existing.instance, instance)) {
        throw new DriverError(
          "INSTANCE_EXISTS",
          `instance ${instance.id} already exists on ${this.options.hostname} with another spec (${existing.powerState})`,
        );
      }
      if (!powerOn || existing.powerState === "RUNNING") return;
      if (!ACTIVE_POWER_STATES.has(existing.powerState)) {
        this.checkFits(existing.instance, { memory: true }, "power on", instance.id);
      }
      this.start(existing);
      await this.persist();
      return;
    }
    this.checkFits(instance, { disk: true, memory: powerOn }, "finish the migration of");
    if (existing) this.state.stashes.set(instance.id, existing); // resize in place: set the old copy aside
    this.state.domains.set(instance.id, { instance, powerState: powerOn ? "RUNNING" : "SHUTDOWN", boots: powerOn ? 1 : 0 });
    await this.persist();
  }

  async confirmMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("coldMigration", "confirmMigration");
    await this.ready("confirmMigration", true, call, instanceId);
    let changed = this.state.stashes.delete(instanceId);
    if (this.state.domains.get(instanceId)?.migratedTo !== undefined) {
      this.state.domains.delete(instanceId);
      changed = true;
    }
    if (changed) await this.persist();
  }

  async finishRevertMigration({ instanceId, powerOn }: FinishRevertMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("coldMigration", "finishRevertMigration");
    await this.ready("finishRevertMigration", true, call, instanceId);
    const stash = this.state.stashes.get(instanceId);
    const d = stash ?? this.get(instanceId);
    if (d.incoming) throw invalidState(`cannot revert instance ${instanceId}: it is an incoming live migration`);
    const start = powerOn && d.powerState !== "RUNNING";
    if (start && !ACTIVE_POWER_STATES.has(d.powerState)) this.checkFits(d.instance, { memory: true }, "power on", instanceId);
    if (stash) {
      this.state.stashes.delete(instanceId);
      this.state.domains.set(instanceId, stash); // replaces the new copy of a resize in place
    }
    delete d.migratedTo;
    if (start) this.start(d);
    await this.persist();
  }

  async preLiveMigration({ instance, sourceHost }: PreLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("liveMigration", "preLiveMigration");
    await this.ready("preLiveMigration", true, call, instance.id);
    const existing = this.state.domains.get(instance.id);
    if (existing) {
      if (existing.incoming && sameInstance(existing.instance, instance)) return;
      throw new DriverError("INSTANCE_EXISTS", `instance ${instance.id} already exists on ${this.options.hostname} (${existing.powerState})`);
    }
    this.checkFits(instance, { disk: true, memory: true }, "receive");
    this.state.domains.set(instance.id, { instance, powerState: "PAUSED", boots: 0, incoming: { sourceHost, paused: false } });
    await this.persist();
  }

  /**
   * {@link LIVE_MIGRATION_STEPS} steps, each waiting the call's delay (its
   * `liveMigrate` fault `delayMs`, else `delayMs`); progress 0, then after
   * each step. An injected failure strikes half way.
   */
  async liveMigrate(
    { instanceId, targetHost, targetUri, onProgress }: LiveMigrateOptions,
    call: CallOptions = {},
  ): Promise<void> {
    this.require("liveMigration", "liveMigrate");
    const aborted = () =>
      new DriverError("ABORTED", `live migration of ${instanceId} to ${targetHost} aborted; it stays on ${this.options.hostname}`, {
        retryable: false,
        cause: call.signal?.reason,
      });
    if (call.signal?.aborted) throw aborted();
    await this.ready("liveMigrate", true, call, instanceId, false);
    const d = this.owned(instanceId, "live migrate");
    if (!ACTIVE_POWER_STATES.has(d.powerState)) {
      throw invalidState(`cannot live migrate instance ${instanceId}: it is ${d.powerState}`);
    }
    const progress = (percent: number, message: string) => {
      try {
        onProgress?.(percent, message);
      } catch {
        // progress is best effort
      }
    };
    const stepMs = this.injector.delayMs("liveMigrate", true, instanceId);
    const totalMib = d.instance.memoryMb;
    progress(0, `migrating to ${targetHost}`);
    for (let step = 1; step <= LIVE_MIGRATION_STEPS; step++) {
      try {
        await wait(stepMs, call.signal);
      } catch (err) {
        if (call.signal?.aborted) throw aborted();
        throw err;
      }
      if (step === Math.ceil(LIVE_MIGRATION_STEPS / 2)) this.injector.check("liveMigrate", instanceId);
      if (step < LIVE_MIGRATION_STEPS) {
        const percent = Math.round((step * 100) / LIVE_MIGRATION_STEPS);
        progress(percent, `memory: ${Math.round((totalMib * step) / LIVE_MIGRATION_STEPS)} MiB of ${totalMib} MiB copied`);
      }
    }
    if (call.signal?.aborted) throw aborted();
    await this.handOver(targetUri, instanceId, this.get(instanceId).powerState === "PAUSED");
    this.state.domains.delete(instanceId);
    await this.persist();
    progress(100, `migrated to ${targetHost}`);
  }

  async postLiveMigration({ instanceId }: PostLiveMigrationOptions, call: CallOptions = {}): Promise<void> {
    this.require("liveMigration", "postLiveMigration");
    await this.ready("postLiveMigration", true, call, instanceId);
    const d = this.get(instanceId);
    if (d.incoming) {
      d.powerState = d.incoming.paused ? "PAUSED" : "RUNNING";
      delete d.incoming;
      await this.persist();
      return;
    }
    if (d.migratedTo === undefined && (d.powerState === "RUNNING" || d.powerState === "PAUSED")) return;
    throw invalidState(`instance ${instanceId} is not an incoming live migration (it is ${d.powerState})`);
  }

  async rollbackLiveMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    this.require("liveMigration", "rollbackLiveMigration");
    await this.ready("rollbackLiveMigration", true, call, instanceId);
    const d = this.state.domains.get(instanceId);
    if (!d) return;
    if (!d.incoming) throw invalidState(`instance ${instanceId} is not an incoming live migration; not removing it`);
    this.state.domains.delete(instanceId);
    await this.persist();
  }

  async powerState({ instanceId }: InstanceOptions, options: CallOptions = {}): Promise<PowerState> {
    await this.ready("powerState", false, options, instanceId);
    return this.get(instanceId).powerState;
  }

  /**
   * A fake guest's console: a banner, then two lines per boot (the boot
   * count is the domain's), as a real guest's log grows with each start.
   */
  async consoleOutput({ instanceId, maxBytes }: ConsoleOutputOptions, options: CallOptions = {}): Promise<string> {
    this.require("consoleLog", "consoleOutput");
    await this.ready("consoleOutput", false, options, instanceId);
    const d = this.get(instanceId);
    const { name, id, vcpus, memoryMb } = d.instance;
    const lines = [`novamesh fake console of ${name} (${id})`];
    for (let boot = 1; boot <= d.boots; boot++) {
      lines.push(`[boot ${boot}] fake kernel: ${vcpus} vCPUs, ${memoryMb} MiB`, `[boot ${boot}] ${name} login:`);
    }
    return tailBytes(new TextEncoder().encode(lines.join("\n") + "\n"), maxBytes);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.migrationUri !== undefined && FABRIC.get(this.migrationUri) === this) FABRIC.delete(this.migrationUri);
    await this.eventSync;
    await this.store.flush();
  }

  /** Loads state, applies outside events, records the call, applies faults and delays. */
  private async ready(
    method: FaultableMethod | undefined,
    mutating: boolean,
    call: CallOptions,
    instanceId?: string,
    faults = true,
  ): Promise<void> {
    if (this.closed) throw new DriverError("CLOSED", "the fake driver is closed");
    await this.init();
    await this.syncEvents();
    if (mutating && method && instanceId !== undefined) await this.record(method, instanceId, call.opId);
    if (method && faults) await this.injector.apply(method, mutating, call.signal, instanceId);
  }

  /** Applies events appended to the event file since the last call, once each. */
  private syncEvents(): Promise<void> {
    if (this.store.eventsPath === undefined) return Promise.resolve();
    const run = this.eventSync.then(async () => {
      const { events, offset } = await this.store.readEvents(this.state.eventsOffset);
      if (offset === this.state.eventsOffset) return;
      for (const e of events) this.applyEvent(e);
      this.state.eventsOffset = offset;
      await this.persist();
    });
    this.eventSync = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      throw DriverError.from(err, "STATE_READ_FAILED");
    });
  }

  private applyEvent(e: FakeEvent): void {
    const d = this.state.domains.get(e.serverId);
    if (!d) return;
    if (isPowerState(e.powerState)) d.powerState = e.powerState;
    if (typeof e.sourcePaused === "boolean" && d.incoming) d.incoming = { ...d.incoming, paused: e.sourcePaused };
  }

  /** The source of a live migration tells this (target) driver whether the instance was paused. */
  private async receiveSourceState(instanceId: string, paused: boolean): Promise<void> {
    await this.ready(undefined, false, {});
    const d = this.state.domains.get(instanceId);
    if (!d?.incoming) return;
    d.incoming = { ...d.incoming, paused };
    await this.persist();
  }

  /** Tells the live migration target whether the instance was paused (see the module comment). */
  private async handOver(targetUri: string, instanceId: string, paused: boolean): Promise<void> {
    const peer = FABRIC.get(targetUri);
    if (peer && peer !== this) {
      await peer.receiveSourceState(instanceId, paused);
      return;
    }
    const path = statePathOfUri(targetUri);
    if (path === undefined) return;
    try {
      await appendEvent(path, { serverId: instanceId, sourcePaused: paused, time: new Date().toISOString() });
    } catch (err) {
      throw new DriverError("MIGRATION_FAILED", `cannot reach the migration target ${targetUri}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private async record(method: string, instanceId: string, opId: string | undefined): Promise<void> {
    const entry: FakeCall = { ...(opId === undefined ? {} : { opId }), method, instanceId, time: new Date().toISOString(), pid: process.pid };
    this.callLog.push(entry);
    if (this.callLog.length > MAX_CALLS_IN_MEMORY) this.callLog.splice(0, this.callLog.length - MAX_CALLS_IN_MEMORY);
    await this.store.logCall(entry);
  }

  private require(capability: keyof DriverCapabilities, operation: string): void {
    if (!this.capabilities[capability]) throw new NotSupportedError(operation, this.hypervisorType);
  }

  private get(instanceId: string): FakeDomain {
    const d = this.state.domains.get(instanceId);
    if (!d) throw new InstanceNotFoundError(instanceId);
    return d;
  }

  /** A domain that is neither an old copy kept for a migration nor an incoming live migration. */
  private owned(instanceId: string, action: string): FakeDomain {
    const d = this.get(instanceId);
    if (d.incoming) {
      throw invalidState(`cannot ${action} instance ${instanceId}: it is an incoming live migration from ${d.incoming.sourceHost}`);
    }
    if (d.migratedTo !== undefined) {
      throw invalidState(
        `cannot ${action} instance ${instanceId}: its disk was handed to ${d.migratedTo}; confirm or revert the migration first`,
      );
    }
    return d;
  }

  /** A clean shutdown: instant, unless the guest ignores ACPI — then forced off after the timeout. */
  private async shutdownGuest(d: FakeDomain, timeoutSeconds: number, signal: AbortSignal | undefined): Promise<void> {
    if (d.powerState !== "RUNNING" || !this.injector.ignoresAcpi(d.instance.id)) return;
    const seconds = timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
    await wait(seconds * 1000, signal);
  }

  private start(d: FakeDomain): void {
    d.powerState = "RUNNING";
    d.boots += 1;
  }

  private used(excludeId?: string): Resources {
    let vcpus = 0;
    let memoryMb = 0;
    let diskGb = 0;
    for (const [id, { instance, powerState }] of this.state.domains) {
      if (id === excludeId) continue;
      diskGb += instance.diskGb;
      if (!ACTIVE_POWER_STATES.has(powerState)) continue;
      vcpus += instance.vcpus;
      memoryMb += instance.memoryMb;
    }
    for (const { instance } of this.state.stashes.values()) diskGb += instance.diskGb;
    return { vcpus, memoryMb, diskGb };
  }

  /**
   * Throws a retryable INSUFFICIENT_RESOURCES if `instance` does not fit:
   * vCPUs and memory if `memory`, a new disk if `disk`; the domain
   * `excludeId` (the one being changed) does not count as using anything.
   */
  private checkFits(
    instance: InstanceSpec,
    need: { readonly disk?: boolean; readonly memory?: boolean },
    action: string,
    excludeId?: string,
  ): void {
    const used = this.used(excludeId);
    const { capacity, allocationRatio: ratio, hostname } = this.options;
    const short: string[] = [];
    if (need.memory && used.vcpus + instance.vcpus > capacity.vcpus * ratio.vcpus) short.push("vCPUs");
    if (need.memory && used.memoryMb + instance.memoryMb > capacity.memoryMb * ratio.memoryMb) short.push("memory");
    if (need.disk && used.diskGb + instance.diskGb > capacity.diskGb * ratio.diskGb) short.push("disk");
    if (short.length > 0) {
      throw new DriverError(
        "INSUFFICIENT_RESOURCES",
        `cannot ${action} instance ${instance.id} on ${hostname}: not enough ${short.join(", ")}`,
        { retryable: true },
      );
    }
  }

  private async persist(): Promise<void> {
    try {
      await this.store.save(() => this.state);
    } catch (err) {
      throw DriverError.from(err, "STATE_WRITE_FAILED");
    }
  }
}
