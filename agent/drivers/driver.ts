/**
 * The driver contract: how the agent drives a hypervisor. Nova's
 * `nova/virt/driver.py`, typed. Every method takes one readonly options
 * object and {@link CallOptions}; every rejection is a `DriverError`
 * (`InstanceNotFoundError`, `NotSupportedError`, or a DriverError with a
 * code and `retryable`). `contract.ts` is the test suite every driver passes.
 *
 * Concurrency: the agent never runs two mutating calls for the same
 * instance at once (ops of one server are serialised), but calls for
 * different instances run in parallel, alongside `report()`.
 */
import type { DriverCapabilities, HostReport, InstanceSpec, PowerState, Resources } from "./types.js";

/** Per-call options every driver method accepts. */
export interface CallOptions {
  /** Aborts the call; it then rejects with a retryable "ABORTED" DriverError. */
  readonly signal?: AbortSignal;
  /**
   * The op this call executes, for logs and audit trails (the fake driver
   * records it in its call log). Drivers must not change behaviour on it.
   */
  readonly opId?: string;
}

/** Options of {@link Driver.spawn}. */
export interface SpawnOptions {
  /** The instance to create and start. */
  readonly instance: InstanceSpec;
}

/** Options of calls that name one instance. */
export interface InstanceOptions {
  /** Server id. */
  readonly instanceId: string;
}

/** Options of {@link Driver.powerOff}. */
export interface PowerOffOptions extends InstanceOptions {
  /** Seconds to wait for a clean shutdown before forcing it (0: driver default). */
  readonly timeoutSeconds: number;
}

/** Options of {@link Driver.reboot}. */
export interface RebootOptions extends InstanceOptions {
  /** Power cycle (true) instead of asking the guest (false). */
  readonly hard: boolean;
}

/** A hypervisor, as the agent sees it. */
export interface Driver {
  /** Hypervisor type sent in Hello, such as "fake" or "QEMU". */
  readonly hypervisorType: string;
  /** What this driver can do; calls outside it throw `NotSupportedError`. */
  readonly capabilities: DriverCapabilities;

  /**
   * Connects to the hypervisor and loads what it knows.
   * Postcondition: every other method may be called.
   * Failure: nothing to clean up; the agent does not start.
   * Idempotent: a second call resolves without reconnecting.
   */
  init(options?: CallOptions): Promise<void>;

  /**
   * Total resources of the host (physical CPUs, memory, local disk for
   * instances). No side effects; may change between calls (hot-plug).
   */
  capacity(options?: CallOptions): Promise<Resources>;

  /**
   * Free resources and every virtual machine the hypervisor knows, with its
   * power state — including ones the agent did not create. No side effects.
   */
  report(options?: CallOptions): Promise<HostReport>;

  /**
   * Creates the virtual machine (disks included) and starts it.
   * Postcondition: `powerState` is "RUNNING" and `report()` lists it.
   * Failure: any partial instance is completely cleaned up, so the op can be
   * retried here or on another host. A spawn that does not fit the host's
   * free resources rejects with a retryable "INSUFFICIENT_RESOURCES".
   * Idempotent for the same instance: spawning an id that already runs the
   * same spec resolves without doing anything; an id that exists with a
   * different spec or not running rejects with "INSTANCE_EXISTS".
   */
  spawn(options: SpawnOptions, call?: CallOptions): Promise<void>;

  /**
   * Stops the virtual machine if it runs and deletes it and its local disks.
   * Postcondition: `report()` does not list it; `powerState` throws
   * `InstanceNotFoundError`.
   * Failure: the instance may be left stopped but is never half-deleted in a
   * way a second `destroy` cannot finish.
   * Idempotent: destroying an unknown (or already destroyed) instance
   * resolves.
   */
  destroy(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Starts a stopped (or crashed, paused, suspended) virtual machine.
   * Postcondition: `powerState` is "RUNNING".
   * Failure: the previous power state is kept. Not enough free memory rejects
   * with a retryable "INSUFFICIENT_RESOURCES".
   * Idempotent: powering on a running instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  powerOn(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Shuts the virtual machine down: a clean shutdown when the driver can
   * (`capabilities.cleanShutdown`), forced off after `timeoutSeconds`.
   * Postcondition: `powerState` is "SHUTDOWN"; disks are kept.
   * Failure: the previous power state is kept.
   * Idempotent: powering off a shut-off instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  powerOff(options: PowerOffOptions, call?: CallOptions): Promise<void>;

  /**
   * Reboots the virtual machine. Hard: power cycle from any state (a shut-off
   * instance is started). Soft: the guest restarts itself; only a running
   * instance can, so a soft reboot of anything else rejects with
   * "INVALID_STATE" (a driver without `capabilities.softReboot` throws
   * `NotSupportedError`).
   * Postcondition: `powerState` is "RUNNING".
   * Failure: the previous power state is kept, or "SHUTDOWN" for a hard
   * reboot that failed after stopping the instance.
   * Not idempotent: each call reboots once more.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  reboot(options: RebootOptions, call?: CallOptions): Promise<void>;

  /**
   * The power state of one virtual machine, as the hypervisor says now.
   * No side effects.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  powerState(options: InstanceOptions, call?: CallOptions): Promise<PowerState>;

  /**
   * Releases connections and handles. Virtual machines keep running.
   * Idempotent; no other method may be called afterwards.
   */
  close(): Promise<void>;
}
