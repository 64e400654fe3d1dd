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
import type {
  AttachedVolume,
  DriverCapabilities,
  HostReport,
  PowerState,
  Resources,
  SnapshotInfo,
} from "./types.js";
import type {
  CallOptions, SpawnOptions, InstanceOptions, InterfaceOptions, AttachVolumeOptions, DetachVolumeOptions, ExtendVolumeOptions, HoldVolumeOptions,
  PowerOffOptions, RebootOptions, SnapshotOptions, RebuildOptions, MigrateDiskOptions, FinishMigrationOptions, FinishRevertMigrationOptions,
  PreLiveMigrationOptions, ConsoleOutputOptions, LiveMigrateOptions, PostLiveMigrationOptions,
} from "./driver-options.js";
export { DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS } from "./driver-options.js";
export type {
  CallOptions, SpawnOptions, InstanceOptions, InterfaceOptions, AttachVolumeOptions, DetachVolumeOptions, ExtendVolumeOptions, HoldVolumeOptions,
  PowerOffOptions, RebootOptions, SnapshotOptions, RebuildOptions, MigrateDiskOptions, FinishMigrationOptions, FinishRevertMigrationOptions,
  PreLiveMigrationOptions, ConsoleOutputOptions, LiveMigrateOptions, MigratingVolume, PostLiveMigrationOptions, RootVolume,
} from "./driver-options.js";

/** A hypervisor, as the agent sees it. */
export interface Driver {
  /** Hypervisor type sent in Hello, such as "fake" or "QEMU". */
  readonly hypervisorType: string;
  /** What this driver can do; calls outside it throw `NotSupportedError`. */
  readonly capabilities: DriverCapabilities;
  /**
   * Where other hosts' drivers live-migrate instances to this host (sent in
   * Hello, handed to the source's `liveMigrate` as `targetUri`), such as
   * "qemu+tcp://host-b/system"; undefined without live migration.
   */
  readonly migrationUri?: string;
  /** CPU architecture of the host, such as "x86_64" (after `init`); undefined when unknown. */
  readonly architecture?: string;

  /**
   * Subscribes to changes the hypervisor makes by itself (a guest that
   * shuts down, crashes or is started outside novamesh), so the agent can
   * report at once instead of at the next interval. Optional: drivers
   * without hypervisor events leave it out. Returns the unsubscribe.
   */
  onStateChange?(listener: () => void): () => void;

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
   * Volumes (`rootVolume`, `volumes`): see {@link SpawnOptions}; malformed
   * ones (a bad attachment id, device or connection, a data volume on vda,
   * an attachment or device twice) reject with a non-retryable
   * "INVALID_ARGUMENT" and nothing is made.
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
   * Starts a stopped (or crashed, paused, suspended) virtual machine. An old
   * copy kept by `migrateDiskAndPowerOff` or an incoming live migration is
   * not started: it rejects with "INVALID_STATE".
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
   * `NotSupportedError`). A guest that has not restarted within
   * `timeoutSeconds` rejects with `SoftRebootTimeoutError`
   * ("SOFT_REBOOT_TIMEOUT"); the instance is left as it was. The driver does
   * not fall back to a hard reboot itself: the executor does, and says so in
   * the op result's note.
   * Postcondition: `powerState` is "RUNNING".
   * Failure: the previous power state is kept, or "SHUTDOWN" for a hard
   * reboot that failed after stopping the instance.
   * Not idempotent: each call reboots once more.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  reboot(options: RebootOptions, call?: CallOptions): Promise<void>;

  /**
   * Pauses the virtual machine: its vCPUs stop, its memory stays allocated
   * (`capabilities.pause`).
   * Postcondition: `powerState` is "PAUSED".
   * Failure: the previous power state is kept. Anything but a running (or
   * paused) instance rejects with a non-retryable "INVALID_STATE".
   * Idempotent: pausing a paused instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  pause(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Lets a paused virtual machine run again (`capabilities.pause`).
   * Postcondition: `powerState` is "RUNNING".
   * Failure: the previous power state is kept. Anything but a paused (or
   * running) instance rejects with a non-retryable "INVALID_STATE".
   * Idempotent: unpausing a running instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  unpause(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Suspends the virtual machine: saves its memory to disk and stops it
   * (Nova's managed save; `capabilities.suspend`). Its memory and vCPUs are
   * free afterwards; its disks and the saved memory stay.
   * Postcondition: `powerState` is "SUSPENDED".
   * Failure: the previous power state is kept. Anything but a running (or
   * suspended) instance rejects with a non-retryable "INVALID_STATE".
   * Idempotent: suspending a suspended instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  suspend(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Restores a suspended virtual machine from its saved memory
   * (`capabilities.suspend`).
   * Postcondition: `powerState` is "RUNNING".
   * Failure: the previous power state is kept. Anything but a suspended (or
   * running) instance rejects with a non-retryable "INVALID_STATE"; not
   * enough free memory with a retryable "INSUFFICIENT_RESOURCES".
   * Idempotent: resuming a running instance resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  resume(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Copies the root disk into the image `imageId` (`capabilities.snapshot`)
   * and says what was stored. The instance may be in any power state and is
   * left in it (a running one may be paused briefly).
   * Postcondition: the image data is stored; the instance is unchanged.
   * Failure: nothing is stored that a second call would not overwrite; the
   * instance keeps its power state.
   * Idempotent: a second snapshot into the same image id stores it again.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  snapshot(options: SnapshotOptions, call?: CallOptions): Promise<SnapshotInfo>;

  /**
   * Rebuilds the virtual machine in place: stops it, re-creates its root disk
   * from `instance.image` (old disk contents are lost) and starts it, keeping
   * its id. Works from any power state.
   * Postcondition: `powerState` is "RUNNING", booted from `instance.image`.
   * Failure: the instance is left stopped or running its old disk, never
   * gone; a second rebuild finishes the job. Not fitting the host (after
   * its own resources are given back) rejects with a retryable
   * "INSUFFICIENT_RESOURCES".
   * Not idempotent: each call re-creates the disk once more.
   * Unknown instance: rejects with `InstanceNotFoundError` (evacuation
   * spawns instead).
   */
  rebuild(options: RebuildOptions, call?: CallOptions): Promise<void>;

  /**
   * Source side of a resize or cold migration (`capabilities.coldMigration`):
   * shuts the instance down (clean shutdown first, forced after
   * `timeoutSeconds`) and hands its disk to `targetHost`. The virtual
   * machine is kept here, shut off and refusing to start, until
   * `confirmMigration` deletes it or `finishRevertMigration` restores it.
   * Postcondition: `powerState` is "SHUTDOWN"; `report()` still lists it.
   * Failure: the instance keeps its power state, or is left "SHUTDOWN".
   * Idempotent: a second call for the same target resolves (the disk is
   * handed over again if it needs to be). A call for another target while
   * one is pending rejects with "INVALID_STATE".
   * Booted from a volume: only with `bootsFromVolume`, and then no disk is
   * handed over; without it such an instance, and with it one whose root
   * disk is local, rejects with a non-retryable "INVALID_STATE" (before
   * anything is stopped).
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  migrateDiskAndPowerOff(options: MigrateDiskOptions, call?: CallOptions): Promise<void>;

  /**
   * Target side of a resize or cold migration (`capabilities.coldMigration`):
   * creates the virtual machine from the migrated disk with
   * `instance`'s (new) flavor, or, with `rootVolume`, booted from that
   * volume (no disk was handed over), with `volumes` attached on their
   * devices; volumes need `capabilities.volumeAttach` (else NOT_SUPPORTED),
   * malformed ones are a non-retryable "INVALID_ARGUMENT". On the source
   * host itself (resize in place) the old copy is set aside for a revert.
   * Postcondition: `powerState` is "RUNNING" if `powerOn`, else "SHUTDOWN".
   * Failure: nothing is left behind (the old copy of a resize in place is
   * kept as it was). Not fitting the host rejects with a retryable
   * "INSUFFICIENT_RESOURCES".
   * Idempotent: an instance already here with the same spec resolves (and is
   * started if `powerOn` and it is not running); one with another spec
   * rejects with "INSTANCE_EXISTS".
   */
  finishMigration(options: FinishMigrationOptions, call?: CallOptions): Promise<void>;

  /**
   * Source side of a confirmed resize or migration
   * (`capabilities.coldMigration`): deletes the old copy kept by
   * `migrateDiskAndPowerOff` (for a resize in place, the set-aside copy).
   * Anything else of that id — the new copy of a resize in place — is left
   * alone.
   * Postcondition: no old copy remains.
   * Idempotent: resolves when there is no old copy; an unknown instance
   * resolves.
   */
  confirmMigration(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Source side of a reverted resize or migration
   * (`capabilities.coldMigration`): brings the old copy back (replacing the
   * new copy of a resize in place, whose target side is `destroy`).
   * Postcondition: the instance has its old flavor; `powerState` is
   * "RUNNING" if `powerOn`, else "SHUTDOWN".
   * Failure: the old copy is kept for another try; not enough memory to
   * start it rejects with a retryable "INSUFFICIENT_RESOURCES".
   * Idempotent: an instance already restored resolves (and is started if
   * `powerOn`).
   * Unknown instance (no old copy, no instance): rejects with
   * `InstanceNotFoundError`.
   */
  finishRevertMigration(options: FinishRevertMigrationOptions, call?: CallOptions): Promise<void>;

  /**
   * Target side of a live migration, before it starts
   * (`capabilities.liveMigration`): prepares to receive `instance` —
   * disks, networks and an incoming virtual machine that holds its memory
   * and vCPUs but does not run.
   * Postcondition: `report()` lists the instance as "PAUSED" (incoming);
   * only `postLiveMigration`, `rollbackLiveMigration` and `destroy` act on it.
   * Failure: nothing is left behind. Not fitting the host rejects with a
   * retryable "INSUFFICIENT_RESOURCES".
   * Idempotent: preparing the same incoming instance again resolves; an id
   * that exists here otherwise rejects with "INSTANCE_EXISTS".
   */
  preLiveMigration(options: PreLiveMigrationOptions, call?: CallOptions): Promise<void>;

  /**
   * Source side of a live migration (`capabilities.liveMigration`): copies
   * the running (or paused) instance to `targetUri`, calling `onProgress`
   * as it goes; the instance keeps running here until the switch-over.
   * Postcondition: the instance is gone from this host (`report()` does not
   * list it) and runs on the target, where `postLiveMigration` finishes it.
   * Failure: the instance is untouched here and keeps its power state. An
   * abort through `call.signal` rejects with a non-retryable "ABORTED"
   * (unlike other calls: the migration was cancelled, not interrupted).
   * Anything but a running or paused instance rejects with "INVALID_STATE".
   * Not idempotent: a completed migration leaves nothing here to migrate.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  liveMigrate(options: LiveMigrateOptions, call?: CallOptions): Promise<void>;

  /**
   * Target side of a live migration that succeeded
   * (`capabilities.liveMigration`): the incoming instance takes over.
   * Postcondition: `powerState` is "RUNNING", or "PAUSED" if the instance
   * was paused on the source.
   * Failure: the incoming instance is kept for another try.
   * Idempotent: an instance already finished (running or paused, not
   * incoming) resolves; one in another state rejects with "INVALID_STATE".
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  postLiveMigration(options: PostLiveMigrationOptions, call?: CallOptions): Promise<void>;

  /**
   * Target side of a live migration that failed or was aborted
   * (`capabilities.liveMigration`): deletes what `preLiveMigration` made.
   * An instance here that is not incoming (it was finished by
   * `postLiveMigration`, or never migrated) is not touched: the call rejects
   * with "INVALID_STATE".
   * Postcondition: `report()` does not list the incoming instance.
   * Idempotent: an unknown instance resolves.
   */
  rollbackLiveMigration(options: InstanceOptions, call?: CallOptions): Promise<void>;

  /**
   * Hot-plugs a network interface (`capabilities.interfaceHotplug`; Nova's
   * `attach_interface`): a tap named `vif.tap` on `vif.bridge` with
   * `vif.mac`, added to the running guest and to the instance's persistent
   * definition, so it survives a stop and start. Works on a shut-off
   * instance too (definition only). A suspended instance (its saved memory
   * holds its devices as they were) rejects with "INVALID_STATE".
   * Postcondition: the instance has the interface.
   * Idempotent: an interface with that MAC already there resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  attachInterface(options: InterfaceOptions, call?: CallOptions): Promise<void>;

  /**
   * Removes the network interface with `mac` from the guest and from the
   * instance's definition (`capabilities.interfaceHotplug`; Nova's
   * `detach_interface`). The guest must release it (a guest that does not
   * within the driver's timeout fails with "DETACH_TIMEOUT", retryable). A
   * suspended instance rejects with "INVALID_STATE".
   * Postcondition: the instance has no interface with that MAC.
   * Idempotent: an instance without it resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  detachInterface(options: InstanceOptions & { readonly mac: string }, call?: CallOptions): Promise<void>;

  /**
   * Attaches a volume's network export as a virtio disk
   * (`capabilities.volumeAttach`; Nova's `attach_volume`): added to the
   * running guest and to the instance's persistent definition, so it
   * survives a stop and start; on a shut-off instance, to the definition
   * only (opened at the next start). The hypervisor opens the export
   * itself, over TLS as this host; an export it cannot open (refused,
   * unreachable, made for another host) rejects with "VOLUME_CONNECT_FAILED"
   * (retryable) and leaves nothing attached. The device is `device` when
   * that is free, else the first free "vdX" after the root disk; a `device`
   * held by another attachment rejects with "DEVICE_IN_USE", a malformed
   * one or attachment id with "INVALID_ARGUMENT" (both non-retryable). A
   * suspended instance rejects with "INVALID_STATE".
   * Postcondition: `volumes()` lists the attachment with its device.
   * Idempotent: the same attachment again resolves with its device (the
   * connection is not compared; it is kept as first attached).
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  attachVolume(options: AttachVolumeOptions, call?: CallOptions): Promise<{ readonly device: string }>;

  /**
   * Removes the attachment's disk from the guest and from the instance's
   * definition (`capabilities.volumeAttach`; Nova's `detach_volume`). The
   * guest must release it (one that does not within the driver's timeout
   * fails with "DETACH_TIMEOUT", retryable; the definition no longer has
   * it). A suspended instance rejects with "INVALID_STATE".
   * Postcondition: `volumes()` does not list it; the hypervisor closed the
   * export, so the volume host may unexport it.
   * Idempotent: an unknown attachment resolves.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  detachVolume(options: DetachVolumeOptions, call?: CallOptions): Promise<void>;

  /**
   * Makes the hypervisor take the new size of an attached volume, which its
   * volume host grew and serves again at that size
   * (`capabilities.volumeAttach`; Nova's `extend_volume`): a running guest
   * sees a capacity change on the disk. An instance `holdVolume` holds is
   * resumed once its disk reconnected and took the size (the size may be
   * the old one: that is how a hold ends when the volume host failed); one
   * that was not held is paused for the reconnect. An instance that is
   * not running has nothing to do: it opens the export at its new size
   * when it starts. A hypervisor that cannot take the size yet rejects
   * with "VOLUME_EXTEND_PENDING" (retryable), the instance still held.
   * Idempotent: a disk already of that size resolves.
   * Unknown attachment: rejects with "NOT_FOUND" (non-retryable).
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  extendVolume(options: ExtendVolumeOptions, call?: CallOptions): Promise<void>;

  /**
   * Before the volume host serves an attached volume again at a new size
   * (closing the connection under the disk): pauses a running instance
   * once its pending disk requests completed and holds it paused — the
   * hold is recorded with the instance and outlives an agent restart — so
   * the guest makes no request the closed connection would fail.
   * `extendVolume` of that attachment ends the hold (resumes the
   * instance). An instance that is not running has nothing to hold.
   * Idempotent: an instance already held resolves.
   * Unknown attachment: rejects with "NOT_FOUND" (non-retryable).
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  holdVolume(options: HoldVolumeOptions, call?: CallOptions): Promise<void>;

  /**
   * The volumes attached to the instance (`capabilities.volumeAttach`), by
   * device: the running guest's, or a shut-off instance's definition (what
   * reconciling with the controller's attachments starts from). No side
   * effects.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  volumes(options: InstanceOptions, call?: CallOptions): Promise<readonly AttachedVolume[]>;

  /**
   * The power state of one virtual machine, as the hypervisor says now.
   * No side effects.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  powerState(options: InstanceOptions, call?: CallOptions): Promise<PowerState>;

  /**
   * The end of the virtual machine's serial console log
   * (`capabilities.consoleLog`; Nova's `get_console_output`): at most
   * `maxBytes` bytes, beginning at the start of a line when the log is
   * longer (a single line longer than that is cut). "" when the guest wrote
   * nothing yet. No side effects.
   * Unknown instance: rejects with `InstanceNotFoundError`.
   */
  consoleOutput(options: ConsoleOutputOptions, call?: CallOptions): Promise<string>;

  /**
   * Releases connections and handles. Virtual machines keep running.
   * Idempotent; no other method may be called afterwards.
   */
  close(): Promise<void>;
}
