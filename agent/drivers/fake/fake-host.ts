/**
 * The state of one fake hypervisor and the rules every fake driver call
 * shares: loading and saving the domains, applying outside events,
 * recording calls, faults and delays, ownership and capacity checks. The
 * calls themselves live in lifecycle.ts, migrations.ts and snapshot.ts.
 */
import { resolve } from "node:path";
import { DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, type CallOptions, type RootVolume } from "../driver.js";
import { DriverError, InstanceNotFoundError, NotSupportedError } from "../errors.js";
import type { AttachedVolume, DriverCapabilities, InstanceSpec, Resources } from "../types.js";
import { ACTIVE_POWER_STATES, isPowerState } from "../types.js";
import { settledOf } from "../../settled.js";
import { checkInitialVolumes } from "../volume-devices.js";
import { DomainStore, type FakeCall, type FakeDomain, type FakeEvent, type FakeState } from "./domain-store.js";
import { FaultInjector, wait, type FaultableMethod, type Faults } from "./faults.js";

/** Options of the fake driver; every field has a default. */
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

/** Calls kept in {@link FakeHost.calls}; older ones are dropped. */
const MAX_CALLS_IN_MEMORY = 10_000;

/** Fake hosts of this process by migration URI: live migration's "network". */
const FABRIC = new Map<string, FakeHost>();

/** Whether two specs describe the same machine (size and image). */
export function sameInstance(a: InstanceSpec, b: InstanceSpec): boolean {
  return a.vcpus === b.vcpus && a.memoryMb === b.memoryMb && a.diskGb === b.diskGb && a.image.id === b.image.id;
}

/** The volume a domain boots from (its attachment on vda: `attachVolume` never hands vda out), if any. */
export function rootVolumeOf(d: FakeDomain): AttachedVolume | undefined {
  return d.volumes?.find((v) => v.device === "vda");
}

/**
 * The volumes a domain is created with (spawn, finishMigration): the root
 * volume on vda, then the others on their devices; checked first
 * (INVALID_ARGUMENT), and refused with NOT_SUPPORTED without
 * `volumeAttach`. Undefined when there are none.
 */
export function initialVolumes(host: FakeHost, instanceId: string, what: string, rootVolume: RootVolume | undefined, volumes: readonly AttachedVolume[] = []): AttachedVolume[] | undefined {
  if (!rootVolume && volumes.length === 0) return undefined;
  host.require("volumeAttach", what);
  checkInitialVolumes(instanceId, rootVolume, volumes);
  const root = rootVolume ? [{ attachmentId: rootVolume.attachmentId, device: "vda", connection: { ...rootVolume.connection } }] : [];
  return [...root, ...volumes.map((v) => ({ attachmentId: v.attachmentId, device: v.device, connection: { ...v.connection } }))];
}

/** A call that the domain's state does not allow. */
export function invalidState(message: string): DriverError {
  return new DriverError("INVALID_STATE", message, { retryable: false });
}

/** `fake://<host>`, plus the absolute state path if there is one. */
function fakeMigrationUri(hostname: string, statePath: string | undefined): string {
  const url = URL.canParse(`fake://${hostname}`) ? new URL(`fake://${hostname}`) : new URL(`fake://${encodeURIComponent(hostname)}`);
  if (statePath !== undefined) url.pathname = resolve(statePath);
  return url.href;
}

/** See the module comment. */
export class FakeHost {
  /** The options in effect. */
  readonly options: FakeDriverOptions;
  readonly capabilities: DriverCapabilities;
  readonly migrationUri: string | undefined;
  readonly state: FakeState = { domains: new Map(), stashes: new Map(), eventsOffset: 0 };
  readonly store: DomainStore;
  readonly injector: FaultInjector;
  private readonly callLog: FakeCall[] = [];
  private loading: Promise<void> | undefined;
  private eventSync: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(options: Partial<FakeDriverOptions>) {
    this.options = { ...DEFAULTS, ...options };
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
      interfaceHotplug: true,
      volumeAttach: true,
      ...this.options.capabilities,
    };
    if (this.capabilities.liveMigration) this.migrationUri = fakeMigrationUri(this.options.hostname, this.options.statePath);
    this.store = new DomainStore(this.options.statePath);
    this.injector = new FaultInjector(this.options.faults, this.options.delayMs);
  }

  /** The live migration target in this process with this URI, if any. */
  static peerAt(uri: string): FakeHost | undefined {
    return FABRIC.get(uri);
  }

  /** Mutating calls made on this host, oldest first (last 10,000). */
  get calls(): readonly FakeCall[] {
    return this.callLog;
  }

  /** Loads the saved domains (once) and joins the fabric. */
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

  /** Leaves the fabric and waits for writes in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.migrationUri !== undefined && FABRIC.get(this.migrationUri) === this) FABRIC.delete(this.migrationUri);
    await this.eventSync;
    await this.store.flush();
  }

  /** Loads state, applies outside events, records the call, applies faults and delays. */
  async ready(
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

  /** The source of a live migration tells this (target) host whether the instance was paused, and its volumes as they open here. */
  async receiveSourceState(instanceId: string, paused: boolean, volumes: readonly AttachedVolume[]): Promise<void> {
    await this.ready(undefined, false, {});
    const d = this.state.domains.get(instanceId);
    if (!d?.incoming) return;
    d.incoming = { ...d.incoming, paused };
    d.volumes = volumes.map((v) => ({ ...v, connection: { ...v.connection } }));
    await this.persist();
  }

  /** Throws NotSupportedError if the capability is turned off. */
  require(capability: keyof DriverCapabilities, operation: string): void {
    if (!this.capabilities[capability]) throw new NotSupportedError(operation, this.options.hypervisorType);
  }

  /** The domain; InstanceNotFoundError if there is none. */
  get(instanceId: string): FakeDomain {
    const d = this.state.domains.get(instanceId);
    if (!d) throw new InstanceNotFoundError(instanceId);
    return d;
  }

  /** A domain that is neither an old copy kept for a migration nor an incoming live migration. */
  owned(instanceId: string, action: string): FakeDomain {
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
  async shutdownGuest(d: FakeDomain, timeoutSeconds: number, signal: AbortSignal | undefined): Promise<void> {
    if (d.powerState !== "RUNNING" || !this.injector.ignoresAcpi(d.instance.id)) return;
    const seconds = timeoutSeconds > 0 ? timeoutSeconds : DEFAULT_SHUTDOWN_TIMEOUT_SECONDS;
    await wait(seconds * 1000, signal);
  }

  /** Boots the domain. */
  start(d: FakeDomain): void {
    d.powerState = "RUNNING";
    d.boots += 1;
  }

  /** What the domains use, but for `excludeId`. */
  used(excludeId?: string): Resources {
    let vcpus = 0;
    let memoryMb = 0;
    let diskGb = 0;
    for (const [id, d] of this.state.domains) {
      if (id === excludeId) continue;
      const { instance, powerState } = d;
      if (!rootVolumeOf(d)) diskGb += instance.diskGb; // a volume-booted domain has no local disk
      if (!ACTIVE_POWER_STATES.has(powerState)) continue;
      vcpus += instance.vcpus;
      memoryMb += instance.memoryMb;
    }
    for (const d of this.state.stashes.values()) if (!rootVolumeOf(d)) diskGb += d.instance.diskGb;
    return { vcpus, memoryMb, diskGb };
  }

  /**
   * Throws a retryable INSUFFICIENT_RESOURCES if `instance` does not fit:
   * vCPUs and memory if `memory`, a new disk if `disk`; the domain
   * `excludeId` (the one being changed) does not count as using anything.
   */
  checkFits(
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

  /** Saves the domains. */
  async persist(): Promise<void> {
    try {
      await this.store.save(() => this.state);
    } catch (err) {
      throw DriverError.from(err, "STATE_WRITE_FAILED");
    }
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
    this.eventSync = settledOf(run);
    return run.catch((err: unknown) => {
      throw DriverError.from(err, "STATE_READ_FAILED");
    });
  }

  private applyEvent(e: FakeEvent): void {
    const d = this.state.domains.get(e.serverId);
    if (!d) return;
    if (isPowerState(e.powerState)) d.powerState = e.powerState;
    if (typeof e.sourcePaused === "boolean" && d.incoming) d.incoming = { ...d.incoming, paused: e.sourcePaused };
    if (Array.isArray(e.volumes) && d.incoming) d.volumes = e.volumes.map((v) => ({ ...v, connection: { ...v.connection } }));
  }

  private async record(method: string, instanceId: string, opId: string | undefined): Promise<void> {
    const entry: FakeCall = { ...(opId === undefined ? {} : { opId }), method, instanceId, time: new Date().toISOString(), pid: process.pid };
    this.callLog.push(entry);
    if (this.callLog.length > MAX_CALLS_IN_MEMORY) this.callLog.splice(0, this.callLog.length - MAX_CALLS_IN_MEMORY);
    await this.store.logCall(entry);
  }
}
