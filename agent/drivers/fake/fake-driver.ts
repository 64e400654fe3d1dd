/**
 * The fake driver: an in-memory hypervisor with the semantics of a real one
 * (Nova's fake driver), configured — not subclassed — for capacity, delays
 * and faults. Many can run in one process to simulate many hosts.
 */
import type {
  CallOptions,
  Driver,
  InstanceOptions,
  PowerOffOptions,
  RebootOptions,
  SpawnOptions,
} from "../driver.js";
import { DriverError, InstanceNotFoundError } from "../errors.js";
import type { DriverCapabilities, HostReport, InstanceSpec, PowerState, Resources } from "../types.js";
import { ACTIVE_POWER_STATES } from "../types.js";
import { DomainStore, type FakeCall, type FakeDomain } from "./domain-store.js";
import { FaultInjector, type FaultableMethod, type Faults } from "./faults.js";

export type { FakeCall, FakeDomain } from "./domain-store.js";

/** Options of {@link FakeDriver}; every field has a default. */
export interface FakeDriverOptions {
  /** Host name, for messages (default "fake-host"). */
  readonly hostname: string;
  /** Total resources (default 16 vCPUs, 32 GiB, 500 GiB). */
  readonly capacity: Resources;
  /**
   * How far spawns may exceed `capacity` per resource, Nova's allocation
   * ratios (default vCPUs 16, memory 1.5, disk 1.0). A spawn beyond them is
   * refused with a retryable "INSUFFICIENT_RESOURCES". vCPUs and memory count
   * for running and paused domains, disk for every domain.
   */
  readonly allocationRatio: Resources;
  /** Faults and delays per method (default none). */
  readonly faults: Faults;
  /** Delay of every mutating call without its own `delayMs` (default 0). */
  readonly delayMs: number;
  /**
   * JSON file holding the domains, so they outlive the process as a real
   * hypervisor's do (default: in memory only). Mutating calls are appended
   * to `<statePath>.calls.jsonl`.
   */
  readonly statePath: string | undefined;
  /** Hypervisor type reported in Hello (default "fake"). */
  readonly hypervisorType: string;
}

const DEFAULTS: FakeDriverOptions = {
  hostname: "fake-host",
  capacity: { vcpus: 16, memoryMb: 32768, diskGb: 500 },
  allocationRatio: { vcpus: 16, memoryMb: 1.5, diskGb: 1 },
  faults: {},
  delayMs: 0,
  statePath: undefined,
  hypervisorType: "fake",
};

/** Calls kept in {@link FakeDriver.calls}; older ones are dropped. */
const MAX_CALLS_IN_MEMORY = 10_000;

function sameInstance(a: InstanceSpec, b: InstanceSpec): boolean {
  return a.vcpus === b.vcpus && a.memoryMb === b.memoryMb && a.diskGb === b.diskGb && a.image.id === b.image.id;
}

/** An in-memory hypervisor. */
export class FakeDriver implements Driver {
  readonly hypervisorType: string;
  readonly capabilities: DriverCapabilities;
  /** The options in effect. */
  readonly options: FakeDriverOptions;
  private readonly domains = new Map<string, FakeDomain>();
  private readonly store: DomainStore;
  private readonly injector: FaultInjector;
  private readonly callLog: FakeCall[] = [];
  private loading: Promise<void> | undefined;
  private closed = false;

  constructor(options: Partial<FakeDriverOptions> = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.hypervisorType = this.options.hypervisorType;
    this.capabilities = { softReboot: true, cleanShutdown: true, persistent: this.options.statePath !== undefined };
    this.store = new DomainStore(this.options.statePath);
    this.injector = new FaultInjector(this.options.faults, this.options.delayMs);
  }

  /** Mutating calls made on this object, oldest first (last 10,000). */
  get calls(): readonly FakeCall[] {
    return this.callLog;
  }

  /** A copy of one domain, for tests; undefined if unknown. */
  domain(instanceId: string): Readonly<FakeDomain> | undefined {
    const d = this.domains.get(instanceId);
    return d && { ...d };
  }

  init(options: CallOptions = {}): Promise<void> {
    this.loading ??= (async () => {
      await this.injector.apply("init", false, options.signal);
      for (const [id, d] of await this.store.load()) this.domains.set(id, d);
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
      instances: [...this.domains].map(([serverId, d]) => ({ serverId, powerState: d.powerState })),
    };
  }

  async spawn({ instance }: SpawnOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("spawn", true, call, instance.id);
    const existing = this.domains.get(instance.id);
    if (existing) {
      if (existing.powerState === "RUNNING" && sameInstance(existing.instance, instance)) return;
      throw new DriverError(
        "INSTANCE_EXISTS",
        `instance ${instance.id} already exists on ${this.options.hostname} (${existing.powerState})`,
      );
    }
    this.checkFits(instance, true, "spawn");
    this.domains.set(instance.id, { instance, powerState: "RUNNING", boots: 1 });
    await this.persist();
  }

  async destroy({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("destroy", true, call, instanceId);
    if (!this.domains.delete(instanceId)) return;
    await this.persist();
  }

  async powerOn({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("powerOn", true, call, instanceId);
    const d = this.get(instanceId);
    if (d.powerState === "RUNNING") return;
    if (!ACTIVE_POWER_STATES.has(d.powerState)) this.checkFits(d.instance, false, "power on");
    this.start(d);
    await this.persist();
  }

  async powerOff({ instanceId }: PowerOffOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("powerOff", true, call, instanceId);
    const d = this.get(instanceId);
    if (d.powerState === "SHUTDOWN") return;
    d.powerState = "SHUTDOWN";
    await this.persist();
  }

  async reboot({ instanceId, hard }: RebootOptions, call: CallOptions = {}): Promise<void> {
    await this.ready("reboot", true, call, instanceId);
    const d = this.get(instanceId);
    if (!hard && d.powerState !== "RUNNING") {
      throw new DriverError("INVALID_STATE", `cannot soft reboot instance ${instanceId}: it is ${d.powerState}`);
    }
    if (!ACTIVE_POWER_STATES.has(d.powerState)) this.checkFits(d.instance, false, "reboot");
    this.start(d);
    await this.persist();
  }

  async powerState({ instanceId }: InstanceOptions, options: CallOptions = {}): Promise<PowerState> {
    await this.ready("powerState", false, options);
    return this.get(instanceId).powerState;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.store.flush();
  }

  /** Loads state, records the call, applies faults and delays. */
  private async ready(
    method: FaultableMethod | undefined,
    mutating: boolean,
    call: CallOptions,
    instanceId?: string,
  ): Promise<void> {
    if (this.closed) throw new DriverError("CLOSED", "the fake driver is closed");
    await this.init();
    if (mutating && method && instanceId !== undefined) await this.record(method, instanceId, call.opId);
    if (method) await this.injector.apply(method, mutating, call.signal);
  }

  private async record(method: string, instanceId: string, opId: string | undefined): Promise<void> {
    const entry: FakeCall = { ...(opId === undefined ? {} : { opId }), method, instanceId, time: new Date().toISOString() };
    this.callLog.push(entry);
    if (this.callLog.length > MAX_CALLS_IN_MEMORY) this.callLog.splice(0, this.callLog.length - MAX_CALLS_IN_MEMORY);
    await this.store.logCall(entry);
  }

  private get(instanceId: string): FakeDomain {
    const d = this.domains.get(instanceId);
    if (!d) throw new InstanceNotFoundError(instanceId);
    return d;
  }

  private start(d: FakeDomain): void {
    d.powerState = "RUNNING";
    d.boots += 1;
  }

  private used(): Resources {
    let vcpus = 0;
    let memoryMb = 0;
    let diskGb = 0;
    for (const { instance, powerState } of this.domains.values()) {
      diskGb += instance.diskGb;
      if (!ACTIVE_POWER_STATES.has(powerState)) continue;
      vcpus += instance.vcpus;
      memoryMb += instance.memoryMb;
    }
    return { vcpus, memoryMb, diskGb };
  }

  /** Throws a retryable INSUFFICIENT_RESOURCES if `instance` does not fit. */
  private checkFits(instance: InstanceSpec, newDisk: boolean, action: string): void {
    const used = this.used();
    const { capacity, allocationRatio: ratio, hostname } = this.options;
    const short: string[] = [];
    if (used.vcpus + instance.vcpus > capacity.vcpus * ratio.vcpus) short.push("vCPUs");
    if (used.memoryMb + instance.memoryMb > capacity.memoryMb * ratio.memoryMb) short.push("memory");
    if (newDisk && used.diskGb + instance.diskGb > capacity.diskGb * ratio.diskGb) short.push("disk");
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
      await this.store.save(() => this.domains);
    } catch (err) {
      throw DriverError.from(err, "STATE_WRITE_FAILED");
    }
  }
}
