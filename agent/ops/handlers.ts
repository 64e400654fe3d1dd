/**
 * What each op kind does: its driver calls (`run`) and what it still needs
 * after a restart interrupted it (`reconcile`), one row per kind. A kind
 * without a row does not compile.
 */
import { DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS, type CallOptions, type Driver, type RootVolume } from "../drivers/driver.js";
import { DriverError, InstanceNotFoundError, SoftRebootTimeoutError } from "../drivers/errors.js";
import type { AttachedVolume, PowerState, SnapshotInfo, VolumeConnection } from "../drivers/types.js";
import type { VolumeExport } from "../../controller/domain/ops.js";
import type { NetworkDriver } from "../network/driver.js";
import type { AgentOp, DriverOpKind, OpHeader } from "./agent-op.js";
import type { VolumeResult } from "./outcome.js";
import type { OpProgressSink } from "./progress.js";

/** What a handler works with. */
export interface HandlerContext {
  /** The hypervisor. */
  readonly driver: Driver;
  /** Options of every driver call: the op's abort signal and id. */
  readonly call: CallOptions;
  /** Where the op's progress goes. */
  readonly progress: OpProgressSink;
  /** The host's network (none: this agent plugs no ports). */
  readonly network?: NetworkDriver;
}

/** What a run produced beyond success. */
export interface RunResult {
  readonly snapshot?: SnapshotInfo;
  /** An attached volume's device. */
  readonly volume?: VolumeResult;
  /** Said in the result. */
  readonly note?: string;
}

/** What an interrupted op still needs: its driver calls, nothing, or (a half-made spawn) a power on. */
export interface Reconciliation {
  readonly action: "run" | "skip" | "power_on";
  /** Said in the result (e.g. what could not be recovered). */
  readonly note?: string;
}

/**
 * How to reconcile an interrupted op: "run_again" (its driver calls are
 * idempotent, or their result is needed), or a rule over the instance's
 * power state now (undefined: the instance is not on this host).
 */
export type ReconcileRule<K extends DriverOpKind> =
  | "run_again"
  | ((state: PowerState | undefined, op: AgentOp<K>) => Reconciliation);

/** One row of the table. */
export interface Handler<K extends DriverOpKind> {
  /** Calls the driver. Rejects with what the driver threw. */
  run(op: AgentOp<K>, ctx: HandlerContext): Promise<RunResult>;
  readonly reconcile: ReconcileRule<K>;
}

export const RUN: Reconciliation = { action: "run" };
export const SKIP: Reconciliation = { action: "skip" };
const DONE: RunResult = {};

/** Skip if the instance is already in `state`, else run. */
function skipIf(state: PowerState): (now: PowerState | undefined) => Reconciliation {
  return (now) => (now === state ? SKIP : RUN);
}

/**
 * A reboot. Soft falls back to hard, as Nova's libvirt driver does, when
 * the guest does not restart within the timeout, when the instance is not
 * running (so the guest cannot), or when the driver cannot soft reboot;
 * the note says so.
 */
async function reboot(op: AgentOp<"reboot">, { driver, call }: HandlerContext): Promise<RunResult> {
  const instanceId = op.instance.id;
  const hard = () => driver.reboot({ instanceId, hard: true }, call);
  if (op.hard) {
    await hard();
    return DONE;
  }
  if (!driver.capabilities.softReboot) {
    await hard();
    return { note: "the driver cannot soft reboot; rebooted hard" };
  }
  try {
    await driver.reboot({ instanceId, hard: false, timeoutSeconds: op.softTimeoutSeconds }, call);
    return DONE;
  } catch (err) {
    if (call.signal?.aborted) throw err;
    const e = DriverError.from(err);
    let note: string;
    if (e instanceof SoftRebootTimeoutError || e.code === "SOFT_REBOOT_TIMEOUT") {
      const seconds =
        e instanceof SoftRebootTimeoutError ? e.timeoutSeconds : op.softTimeoutSeconds || DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
      note = `soft reboot not completed within ${seconds} s; rebooted hard`;
    } else if (e.code === "INVALID_STATE") {
      note = `soft reboot not possible (${e.message}); rebooted hard`;
    } else if (e.code === "NOT_SUPPORTED") {
      note = "the driver cannot soft reboot; rebooted hard";
    } else {
      throw err;
    }
    await hard();
    return { note };
  }
}

/** Nova's order: power off (clean first), snapshot the stopped disk, remove from the host. */
async function shelve(op: AgentOp<"shelve">, { driver, call, progress }: HandlerContext): Promise<RunResult> {
  const instanceId = op.instance.id;
  const { imageId, imageName, timeoutSeconds } = op;
  await driver.powerOff({ instanceId, timeoutSeconds }, call);
  const snapshot = imageId
    ? await driver.snapshot(
        { instanceId, imageId, imageName, onUploading: () => progress.stage("SHELVING_IMAGE_UPLOADING", "storing the snapshot") },
        call,
      )
    : undefined;
  progress.stage("SHELVING_OFFLOADING", "removing the server from this host");
  await driver.destroy({ instanceId }, call);
  return snapshot ? { snapshot } : DONE;
}

async function rebuild(op: AgentOp<"rebuild">, { driver, call, progress }: HandlerContext): Promise<RunResult> {
  const onSpawning = () => progress.stage("REBUILD_SPAWNING", "creating the server from its image");
  if (op.recreate && !(await exists(driver, op.instance.id, call))) {
    onSpawning();
    await driver.spawn({ instance: op.instance, ...driverVolumes(op, driver) }, call);
    return { note: "the instance was not on this host; created it" };
  }
  // A volume-booted instance: its volume host has re-imaged its root volume; the driver defines it again on it.
  await driver.rebuild({ instance: op.instance, onSpawning, ...driverVolumes(op, driver) }, call);
  return DONE;
}

/**
 * Hot-plugs a port's interface: the executor has plugged the instance's
 * ports on the host; the hypervisor attaches the new one. If it cannot, the
 * port's host side goes again.
 */
async function attachInterface(op: AgentOp<"attach_interface">, { driver, call, network }: HandlerContext): Promise<RunResult> {
  const vif = op.instance.vifs?.find((v) => v.portId === op.portId);
  if (!vif) throw new DriverError("PORT_NOT_PLUGGED", `port ${op.portId} is not among the ports the op carries`);
  try {
    await driver.attachInterface({ instanceId: op.instance.id, vif }, call);
  } catch (err) {
    const failure = DriverError.from(err);
    if (!network) throw failure;
    try {
      await network.unplug(op.instance.id, [op.portId]);
    } catch (unplugErr) {
      throw new DriverError(failure.code, `${failure.message}; and unplugging port ${op.portId} again failed: ${DriverError.from(unplugErr).message}`, {
        retryable: failure.retryable,
        cause: failure,
      });
    }
    throw failure;
  }
  return DONE;
}

/** Removes a port's interface from the guest, then its host side. */
async function detachInterface(op: AgentOp<"detach_interface">, { driver, call, network }: HandlerContext): Promise<RunResult> {
  await driver.detachInterface({ instanceId: op.instance.id, mac: op.macAddress }, call);
  await network?.unplug(op.instance.id, [op.portId]);
  return DONE;
}

/** Refuses a volume change on a hypervisor that cannot attach volumes: running it again here cannot help. */
function requireVolumeAttach(driver: Driver, kind: "spawn" | "rebuild" | "finish_migration" | "attach_volume" | "detach_volume" | "extend_volume_disk" | "hold_volume_disk"): void {
  if (!driver.capabilities.volumeAttach) {
    throw new DriverError("NOT_SUPPORTED", `${kind}: this host's hypervisor cannot attach volumes (its driver lacks volumeAttach)`);
  }
}

/** An export made for this host as the driver opens it (always over TLS). */
function connectionOf({ host, port, exportName }: VolumeExport): VolumeConnection {
  return { host, port, exportName, tls: true };
}

/**
 * The volumes an op that creates the instance here carries, as the driver
 * takes them: its root volume, if it boots from one, and its other
 * attached volumes; nothing for an instance without volumes. Refused on a
 * hypervisor that cannot attach volumes.
 */
function driverVolumes(op: AgentOp<"spawn" | "rebuild" | "finish_migration">, driver: Driver): { rootVolume?: RootVolume; volumes?: AttachedVolume[] } {
  const root = op.rootAttachmentId !== undefined && op.rootExport !== undefined ? { attachmentId: op.rootAttachmentId, connection: connectionOf(op.rootExport) } : undefined;
  const volumes = (op.volumes ?? []).map((v) => ({ attachmentId: v.attachmentId, device: v.device, connection: connectionOf(v.export) }));
  if (!root && volumes.length === 0) return {};
  requireVolumeAttach(driver, op.kind);
  return { ...(root ? { rootVolume: root } : {}), ...(volumes.length > 0 ? { volumes } : {}) };
}

/** Creates and starts the instance; one booted from a volume opens its root volume's export as its root disk, and its other volumes are attached from the start. */
async function spawn(op: AgentOp<"spawn">, { driver, call }: HandlerContext): Promise<RunResult> {
  await driver.spawn({ instance: op.instance, ...driverVolumes(op, driver) }, call);
  return DONE;
}

/** Hot-plugs the volume's export as a disk of the instance; the result says its device. */
async function attachVolume(op: AgentOp<"attach_volume">, { driver, call }: HandlerContext): Promise<RunResult> {
  requireVolumeAttach(driver, op.kind);
  const { device } = await driver.attachVolume(
    { instanceId: op.instance.id, attachmentId: op.attachmentId, connection: connectionOf(op.export), ...(op.device ? { device: op.device } : {}) },
    call,
  );
  return { volume: { device } };
}

/** Unplugs the attachment's disk (an attachment the instance does not have is gone already). */
async function detachVolume(op: AgentOp<"detach_volume">, { driver, call }: HandlerContext): Promise<RunResult> {
  requireVolumeAttach(driver, op.kind);
  await driver.detachVolume({ instanceId: op.instance.id, attachmentId: op.attachmentId }, call);
  return DONE;
}

/** A running instance is paused ahead of its volume host serving the volume again. */
async function holdVolumeDisk(op: AgentOp<"hold_volume_disk">, { driver, call }: HandlerContext): Promise<RunResult> {
  requireVolumeAttach(driver, op.kind);
  await driver.holdVolume({ instanceId: op.instance.id, attachmentId: op.attachmentId }, call);
  return DONE;
}

/** The hypervisor takes the attached volume's (new) size and a hold ends; the result says that size. */
async function extendVolumeDisk(op: AgentOp<"extend_volume_disk">, { driver, call }: HandlerContext): Promise<RunResult> {
  requireVolumeAttach(driver, op.kind);
  await driver.extendVolume({ instanceId: op.instance.id, attachmentId: op.attachmentId, sizeBytes: op.sizeBytes }, call);
  return { volume: { sizeBytes: op.sizeBytes } };
}

async function exists(driver: Driver, instanceId: string, call: CallOptions): Promise<boolean> {
  try {
    await driver.powerState({ instanceId }, call);
    return true;
  } catch (err) {
    if (err instanceof InstanceNotFoundError) return false;
    throw err;
  }
}

/** Runs a driver call that produces nothing to report. */
function done(call: Promise<void>): Promise<RunResult> {
  return call.then(() => DONE);
}

/** Driver methods that take the instance id alone. */
type InstanceMethod = "destroy" | "powerOn" | "pause" | "unpause" | "suspend" | "resume" | "confirmMigration" | "rollbackLiveMigration";

/** A run that is the one driver call `method` on the op's instance. */
function onInstance(method: InstanceMethod): (op: Pick<OpHeader, "instance">, ctx: HandlerContext) => Promise<RunResult> {
  return (op, { driver, call }) => done(driver[method]({ instanceId: op.instance.id }, call));
}

/**
 * Every kind run through the driver. Reconciling (see {@link ReconcileRule}):
 * - spawn: no domain → run; RUNNING → skip; otherwise power it on.
 * - power on, reboot, unpause, resume: skip if RUNNING, else run.
 * - power off: skip if SHUTDOWN; pause: skip if PAUSED; suspend: skip if
 *   SUSPENDED; else run.
 * - shelve: skip if the instance is gone (it got as far as destroy; the
 *   snapshot's info is lost, which the note says), else run again.
 * - live migrate: skip if the instance is gone from this host (the
 *   migration completed), else run again (the target is still prepared).
 * - destroy, revert/confirm migration, rollback live migration, migrate
 *   disk, finish migration, finish revert, pre/post live migration: run
 *   again — each is idempotent by the driver contract (and a SHUTDOWN
 *   source does not prove its disk was handed over).
 * - snapshot: run again (into the same image; its result needs the info).
 * - rebuild: run again (the disk is re-created once more).
 * - attach/detach interface or volume, extend a volume's disk: run again
 *   (each is idempotent by the driver contract; an attach's result needs
 *   the device).
 */
export const HANDLERS = {
  spawn: {
    run: spawn,
    reconcile: (state) => (state === undefined ? RUN : state === "RUNNING" ? SKIP : { action: "power_on" }),
  },
  destroy: { run: onInstance("destroy"), reconcile: "run_again" },
  power_on: { run: onInstance("powerOn"), reconcile: skipIf("RUNNING") },
  power_off: {
    run: (op, { driver, call }) => done(driver.powerOff({ instanceId: op.instance.id, timeoutSeconds: op.timeoutSeconds }, call)),
    reconcile: skipIf("SHUTDOWN"),
  },
  reboot: { run: reboot, reconcile: skipIf("RUNNING") },
  pause: { run: onInstance("pause"), reconcile: skipIf("PAUSED") },
  unpause: { run: onInstance("unpause"), reconcile: skipIf("RUNNING") },
  suspend: { run: onInstance("suspend"), reconcile: skipIf("SUSPENDED") },
  resume: { run: onInstance("resume"), reconcile: skipIf("RUNNING") },
  snapshot: {
    run: async (op, { driver, call, progress }) => ({
      snapshot: await driver.snapshot(
        {
          instanceId: op.instance.id,
          imageId: op.imageId,
          imageName: op.imageName,
          onUploading: () => progress.stage("IMAGE_UPLOADING", "storing the snapshot"),
        },
        call,
      ),
    }),
    reconcile: "run_again",
  },
  shelve: {
    run: shelve,
    reconcile: (state, op) =>
      state !== undefined
        ? RUN
        : {
            action: "skip",
            note: op.imageId
              ? "shelve was interrupted by an agent restart after the instance was removed; the snapshot's size and checksum are unknown"
              : "shelve was interrupted by an agent restart after the instance was removed",
          },
  },
  rebuild: { run: rebuild, reconcile: "run_again" },
  migrate_disk: {
    run: (op, { driver, call }) =>
      done(
        driver.migrateDiskAndPowerOff(
          { instanceId: op.instance.id, targetHost: op.targetHost, timeoutSeconds: op.timeoutSeconds, ...(op.bootsFromVolume ? { bootsFromVolume: true } : {}) },
          call,
        ),
      ),
    reconcile: "run_again",
  },
  finish_migration: {
    run: (op, { driver, call }) =>
      done(driver.finishMigration({ instance: op.instance, sourceHost: op.sourceHost, powerOn: op.powerOn, ...driverVolumes(op, driver) }, call)),
    reconcile: "run_again",
  },
  confirm_migration: { run: onInstance("confirmMigration"), reconcile: "run_again" },
  revert_migration: {
    // Target side of a revert: the new copy goes.
    run: onInstance("destroy"),
    reconcile: "run_again",
  },
  finish_revert_migration: {
    run: (op, { driver, call }) => done(driver.finishRevertMigration({ instanceId: op.instance.id, powerOn: op.powerOn }, call)),
    reconcile: "run_again",
  },
  pre_live_migration: {
    run: (op, { driver, call }) => done(driver.preLiveMigration({ instance: op.instance, sourceHost: op.sourceHost, bootsFromVolume: op.bootsFromVolume }, call)),
    reconcile: "run_again",
  },
  live_migrate: {
    run: (op, { driver, call, progress }) =>
      done(
        driver.liveMigrate(
          {
            instanceId: op.instance.id,
            targetHost: op.targetHost,
            targetUri: op.targetUri,
            volumes: op.volumes,
            onProgress: (percent, message) => progress.progress(percent, message),
          },
          call,
        ),
      ),
    reconcile: (state) => (state !== undefined ? RUN : { action: "skip", note: "the live migration had completed before an agent restart" }),
  },
  post_live_migration: {
    run: (op, { driver, call }) => done(driver.postLiveMigration({ instanceId: op.instance.id, sourceHost: op.sourceHost }, call)),
    reconcile: "run_again",
  },
  rollback_live_migration: { run: onInstance("rollbackLiveMigration"), reconcile: "run_again" },
  attach_interface: { run: attachInterface, reconcile: "run_again" },
  detach_interface: { run: detachInterface, reconcile: "run_again" },
  attach_volume: { run: attachVolume, reconcile: "run_again" },
  detach_volume: { run: detachVolume, reconcile: "run_again" },
  extend_volume_disk: { run: extendVolumeDisk, reconcile: "run_again" },
  hold_volume_disk: { run: holdVolumeDisk, reconcile: "run_again" },
} satisfies { readonly [K in DriverOpKind]: Handler<K> };

const TABLE: { readonly [K in DriverOpKind]: Handler<K> } = HANDLERS;

/** The row of `kind`. */
export function handlerOf<K extends DriverOpKind>(kind: K): Handler<K> {
  return TABLE[kind];
}
