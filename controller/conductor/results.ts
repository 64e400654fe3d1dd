import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { PowerState, TaskState, VmState } from "../domain/states.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { startTask } from "../domain/tasks.js";
import type { Fault, Instance, Migration, OperationError } from "../domain/types.js";
import { finishAction, finishOpEvent, getActionById, instantEvent, runningAction, setActionStep } from "../store/actions.js";
import { activateImage, deleteImage } from "../store/catalog.js";
import { select } from "../store/db.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { DEADLOCK_RETRIES, withTx } from "../store/db.js";
import { getInstance, updateInstance } from "../store/instances.js";
import { latestMigration, openMigration, updateMigration } from "../store/moves.js";
import { claim, getNodeByHost, moveAllocations, recordBuildFailure, recordBuildSuccess, releaseAllocations } from "../store/nodes.js";
import { getServerGroup } from "../store/server-groups.js";
import { HARD_POLICIES, resourcesOf } from "../scheduler/types.js";
import type { OpRecord } from "../store/ops.js";
import { finishOp, lockOp } from "../store/ops.js";
import { dispatchOp } from "./dispatch.js";
import { releaseEverything, rollbackMove } from "./moves.js";

/** An op's outcome as the agent reported it (domain form). */
export interface OpOutcome {
  readonly opId: string;
  readonly error: { readonly code: string; readonly message: string; readonly retryable: boolean } | null;
  readonly powerState: PowerState | null;
  readonly startTime: Date | null;
  readonly finishTime: Date | null;
  /** How the op went, such as a soft reboot that fell back to hard. */
  readonly note?: string;
  /** What a snapshot or shelve stored. */
  readonly snapshot?: { readonly sizeBytes: number; readonly checksum: string; readonly diskFormat: string } | null;
}

export interface ApplyEffects {
  /** The instance went back to SCHEDULING (a reschedule). */
  rescheduled: boolean;
  /** Capacity was released. */
  released: boolean;
  /** New ops were queued. */
  dispatched: boolean;
}

export interface ApplyOptions {
  readonly maxAttempts: number;
  readonly log: Logger;
  readonly subjectPrefix: string;
  readonly taskTimeouts: TaskTimeouts;
  /** A host is down when its last report is older than this many seconds (alternates must be up). */
  readonly serviceDownTimeSeconds: number;
}

/**
 * Applies an op result exactly once: the op row is locked and marked DONE in
 * the same transaction as the state change, so a re-reported result (agent
 * restart, lost ack) changes nothing the second time. A result that comes
 * after its task was ended (deleted, timed out, taken over) changes only the
 * op's own record. A transaction InnoDB rolls back to break a deadlock runs
 * again (it is all in the database), so a deadlock costs no reconnect.
 */
export async function applyOpResult(pool: Pool, outcome: OpOutcome, opts: ApplyOptions): Promise<ApplyEffects> {
  return withTx(pool, async (conn) => {
    const effects: ApplyEffects = { rescheduled: false, released: false, dispatched: false };
    const op = await lockOp(conn, outcome.opId);
    if (!op) {
      opts.log.warn({ opId: outcome.opId }, "result for an unknown op ignored");
      return effects;
    }
    if (op.state === "DONE") return effects;
    await finishOp(conn, op.opId, outcome.error);
    await finishOpEvent(conn, op.opId, {
      result: outcome.error ? "Error" : "Success",
      fault: outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : undefined,
      details: outcome.note || undefined,
      finishTime: outcome.finishTime ?? undefined,
    });
    const inst = await getInstance(conn, op.instanceUuid, { lock: true });
    if (!inst) return effects;
    await new ResultApplier(conn, op, inst, outcome, opts, effects).apply();
    return effects;
  }, { deadlockRetries: DEADLOCK_RETRIES });
}

/** Tasks each op kind may finish; a result arriving in any other task is stale. */
const TASKS_OF_OP: Readonly<Record<OpRecord["kind"], readonly TaskState[]>> = {
  spawn: ["SPAWNING"],
  destroy: ["DELETING"],
  power_on: ["POWERING_ON"],
  power_off: ["POWERING_OFF"],
  reboot: ["REBOOTING", "REBOOTING_HARD"],
  pause: ["PAUSING"],
  unpause: ["UNPAUSING"],
  suspend: ["SUSPENDING"],
  resume: ["RESUMING"],
  migrate_disk: ["RESIZE_MIGRATING"],
  finish_migration: ["RESIZE_FINISH"],
  confirm_migration: ["RESIZE_CONFIRMING"],
  revert_migration: ["RESIZE_REVERTING"],
  finish_revert_migration: ["RESIZE_REVERTING"],
  abort: [],
  rebuild: ["REBUILDING", "REBUILD_SPAWNING"],
  snapshot: ["IMAGE_SNAPSHOT", "IMAGE_UPLOADING"],
  shelve: ["SHELVING", "SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"],
  pre_live_migration: ["MIGRATING"],
  live_migrate: ["MIGRATING"],
  post_live_migration: ["MIGRATING"],
  rollback_live_migration: [],
};

/** The vm_state and default power state each simple power op ends in. */
const POWER_OPS: Partial<Record<OpRecord["kind"], { vm: VmState; power: PowerState }>> = {
  power_on: { vm: "ACTIVE", power: "RUNNING" },
  power_off: { vm: "STOPPED", power: "SHUTDOWN" },
  reboot: { vm: "ACTIVE", power: "RUNNING" },
  pause: { vm: "PAUSED", power: "PAUSED" },
  unpause: { vm: "ACTIVE", power: "RUNNING" },
  suspend: { vm: "SUSPENDED", power: "SUSPENDED" },
  resume: { vm: "ACTIVE", power: "RUNNING" },
};

class ResultApplier {
  constructor(
    private readonly conn: PoolConnection,
    private readonly op: OpRecord,
    private readonly inst: Instance,
    private readonly o: OpOutcome,
    private readonly opts: ApplyOptions,
    private readonly effects: ApplyEffects,
  ) {}

  private get power(): PowerState | undefined {
    return this.o.powerState ?? undefined;
  }

  private fault(): Fault {
    const e = this.o.error!;
    return { code: e.code || "OP_FAILED", message: e.message, details: { host: this.op.host, op: this.op.kind }, createdAt: new Date().toISOString() };
  }

  private opError(): OperationError {
    const e = this.o.error!;
    return { code: status.UNKNOWN, reason: e.code || "OP_FAILED", message: `${this.op.kind} on ${this.op.host} failed: ${e.message}`, metadata: { host: this.op.host } };
  }

  private update(patch: Parameters<typeof updateInstance>[2]): Promise<Instance> {
    return updateInstance(this.conn, this.inst.uuid, patch);
  }

  private async dispatch(host: string, args: Parameters<typeof dispatchOp>[1]["args"], inst: Instance, requestId: string): Promise<void> {
    await dispatchOp(this.conn, { instance: inst, host, actionId: this.op.actionId, requestId, args, subjectPrefix: this.opts.subjectPrefix });
    await setActionStep(this.conn, this.op.actionId, { deadline: inst.taskDeadline });
    this.effects.dispatched = true;
  }

  async apply(): Promise<void> {
    const { inst, op } = this;
    if (!inst.taskState || !TASKS_OF_OP[op.kind].includes(inst.taskState)) return;
    switch (op.kind) {
      case "spawn":
        return this.spawned();
      case "destroy":
        return this.destroyed();
      case "migrate_disk":
        return this.diskMigrated();
      case "finish_migration":
        return this.migrationFinished();
      case "confirm_migration":
        return this.confirmed();
      case "revert_migration":
        return this.revertedOnTarget();
      case "finish_revert_migration":
        return this.revertFinished();
      case "rebuild":
        return this.rebuilt();
      case "snapshot":
        return this.snapshotted();
      case "shelve":
        return this.shelved();
      case "pre_live_migration":
        return this.liveMigrationPrepared();
      case "live_migrate":
        return this.liveMigrated();
      case "post_live_migration":
        return this.liveMigrationFinished();
      case "abort":
      case "rollback_live_migration":
        return;
      default:
        return this.powerOpDone();
    }
  }

  private async spawned(): Promise<void> {
    const { inst, op, o } = this;
    // A result from a host the build was since taken away from changes nothing.
    if (inst.host !== op.host) return;
    // An unshelve spawns from the shelved snapshot; it stays shelved if that fails.
    const unshelve = inst.vmState === "SHELVED_OFFLOADED";
    if (!o.error) {
      await this.update({
        vmState: "ACTIVE",
        taskState: null,
        powerState: this.power ?? "RUNNING",
        ...(unshelve ? { shelvedImageId: null, fault: null } : { launchedAt: new Date() }),
      });
      // The shelved snapshot has served its purpose, as in Nova.
      if (unshelve && inst.shelvedImageId) await deleteImage(this.conn, inst.shelvedImageId);
      await recordBuildSuccess(this.conn, op.host);
      await finishAction(this.conn, op.actionId);
      return;
    }
    // The build failure weigher steers the next builds elsewhere until this host builds one. A
    // non-retryable failure (a bad image, an impossible request) is not the host's fault.
    if (o.error.retryable) await recordBuildFailure(this.conn, op.host);
    this.effects.released = (await releaseAllocations(this.conn, inst.uuid)) > 0;
    if (o.error.retryable && inst.attempt < this.opts.maxAttempts) {
      if (await this.spawnOnAlternate(unshelve)) return;
      await this.update({ host: null, ...startTask(this.opts.taskTimeouts, unshelve ? "UNSHELVING" : "SCHEDULING"), powerState: "NOSTATE" });
      await setActionStep(this.conn, op.actionId, { message: `attempt ${inst.attempt} on ${op.host} failed; rescheduling` });
      this.effects.rescheduled = true;
      return;
    }
    const fault = this.fault();
    const exhausted = o.error.retryable ? `; gave up after ${inst.attempt} attempts` : "";
    await this.update({
      ...(unshelve ? {} : { vmState: "ERROR" as const }),
      taskState: null,
      host: null,
      powerState: "NOSTATE",
      fault: { ...fault, message: fault.message + exhausted },
    });
    await finishAction(this.conn, op.actionId, { error: this.opError() });
  }

  /**
   * Nova's alternates: after a retryable spawn failure (its claim already
   * released), claims the next alternate the scheduler chose with the build
   * and spawns there, without a new scheduling pass. The claim is the same
   * atomic conditional UPDATE (up, enabled, fits). Members of a group with a
   * hard policy go back to the scheduler instead, which checks the policy
   * under the group's lock. False when no alternate could be claimed.
   */
  private async spawnOnAlternate(unshelve: boolean): Promise<boolean> {
    const { inst, op, conn } = this;
    const left = inst.alternateHosts.filter((h) => !inst.triedHosts.includes(h));
    if (left.length === 0) return false;
    if (inst.serverGroupId) {
      const g = await getServerGroup(conn, inst.serverGroupId);
      if (g && HARD_POLICIES.includes(g.policy)) return false;
    }
    const action = await runningAction(conn, inst.uuid);
    if (!action || action.id !== op.actionId) return false;
    const upSince = new Date(Date.now() - this.opts.serviceDownTimeSeconds * 1000);
    const resources = resourcesOf(inst.flavor);
    for (let i = 0; i < left.length; i++) {
      const node = await getNodeByHost(conn, left[i]!);
      if (!node || !(await claim(conn, node.id, inst.uuid, resources, upSince))) continue;
      const attempt = inst.attempt + 1;
      const placed = await this.update({
        host: node.host,
        ...startTask(this.opts.taskTimeouts, "SPAWNING"),
        attempt,
        triedHosts: [...inst.triedHosts, node.host],
        alternateHosts: left.slice(i + 1),
        powerState: "NOSTATE",
      });
      await instantEvent(conn, {
        actionId: op.actionId,
        event: "schedule",
        host: node.host,
        result: "Success",
        details: `alternate host, attempt ${attempt} after ${op.host} failed`,
      });
      await dispatchOp(conn, {
        instance: placed,
        host: node.host,
        actionId: op.actionId,
        requestId: action.requestId,
        args: { kind: "spawn" },
        attempt,
        subjectPrefix: this.opts.subjectPrefix,
        ...(unshelve && inst.shelvedImageId ? { imageId: inst.shelvedImageId } : {}),
      });
      await setActionStep(conn, op.actionId, { deadline: placed.taskDeadline, message: `attempt ${inst.attempt} on ${op.host} failed; trying ${node.host}` });
      this.effects.dispatched = true;
      return true;
    }
    return false;
  }

  private async destroyed(): Promise<void> {
    const { inst, op, o } = this;
    // With a move open, only the server's current host finishes the delete;
    // the other copy's destroy is cleanup.
    if (inst.host && op.host !== inst.host) return;
    if (o.error) {
      await this.update({ vmState: "ERROR", taskState: null, fault: this.fault() });
      await finishAction(this.conn, op.actionId, { error: this.opError() });
      return;
    }
    this.effects.released = (await releaseEverything(this.conn, inst.uuid)) > 0;
    await this.update({ vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date() });
    await finishAction(this.conn, op.actionId);
  }

  /**
   * Power ops (start, stop, reboot, pause, unpause, suspend, resume). A
   * failure leaves the server as it was, with the fault recorded, as Nova
   * does; a failed reboot leaves it in ERROR.
   */
  private async powerOpDone(): Promise<void> {
    const { op, o } = this;
    const end = POWER_OPS[op.kind];
    if (!end) return;
    if (o.error) {
      const vmState = op.kind === "reboot" ? "ERROR" : undefined;
      await this.update({ vmState, taskState: null, powerState: this.power, fault: this.fault() });
      await finishAction(this.conn, op.actionId, { error: this.opError() });
      return;
    }
    await this.update({ vmState: end.vm, taskState: null, powerState: this.power ?? end.power, fault: null });
    await finishAction(this.conn, op.actionId);
  }

  /** The source handed the disk over: the target creates the server with the new flavor. */
  private async diskMigrated(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || !m.targetHost || op.host !== m.sourceHost) return;
    if (o.error) {
      const stopped = this.power !== undefined && this.power !== "RUNNING";
      await rollbackMove(conn, this.opts, {
        inst,
        migration: m,
        fault: this.fault(),
        error: this.opError(),
        restoreSource: stopped,
        cleanupTarget: false,
      });
      this.effects.released = true;
      this.effects.dispatched = stopped;
      return;
    }
    const finishing = await this.update({ host: m.targetHost, flavor: m.newFlavor, ...startTask(this.opts.taskTimeouts, "RESIZE_FINISH") });
    await this.dispatch(m.targetHost, { kind: "finish_migration", sourceHost: m.sourceHost, powerOn: m.oldVmState === "ACTIVE" }, finishing, m.requestId);
  }

  /** The target runs the moved server: it waits in RESIZED for confirm or revert. */
  private async migrationFinished(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || op.host !== m.targetHost) return;
    if (o.error) {
      await rollbackMove(conn, this.opts, { inst, migration: m, fault: this.fault(), error: this.opError(), restoreSource: true, cleanupTarget: true });
      this.effects.released = true;
      this.effects.dispatched = true;
      return;
    }
    await updateMigration(conn, m.id, { status: "FINISHED" });
    await this.update({ vmState: "RESIZED", taskState: null, powerState: this.power ?? (m.oldVmState === "ACTIVE" ? "RUNNING" : "SHUTDOWN") });
    await finishAction(conn, op.actionId);
  }

  /** The source copy is gone: its capacity is released. */
  private async confirmed(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m) return;
    if (o.error) {
      await updateMigration(conn, m.id, { status: "ERROR" });
      await this.update({ vmState: "ERROR", taskState: null, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    this.effects.released = (await releaseAllocations(conn, m.id)) > 0;
    await updateMigration(conn, m.id, { status: "CONFIRMED" });
    await this.update({ vmState: m.oldVmState === "STOPPED" ? "STOPPED" : "ACTIVE", taskState: null });
    await finishAction(conn, op.actionId);
  }

  /** Revert, first step: the target's copy is gone; the source brings the old one back. */
  private async revertedOnTarget(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    // A revert_migration sent as cleanup of a failed move finishes nothing.
    if (!m || m.status !== "FINISHED" || op.host !== m.targetHost) return;
    if (o.error) {
      await this.update({ vmState: "ERROR", taskState: null, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    const target = await getNodeByHost(conn, m.targetHost);
    if (target) this.effects.released = (await releaseAllocations(conn, inst.uuid, target.id)) > 0;
    await moveAllocations(conn, m.id, inst.uuid);
    const back = await this.update({ host: m.sourceHost, flavor: m.oldFlavor, ...startTask(this.opts.taskTimeouts, "RESIZE_REVERTING") });
    await this.dispatch(m.sourceHost, { kind: "finish_revert_migration", powerOn: m.oldVmState === "ACTIVE" }, back, m.requestId);
  }

  /** Revert, last step (or the rollback of a failed move): the old copy runs again on the source. */
  private async revertFinished(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await latestMigration(conn, inst.uuid);
    if (!m || op.host !== m.sourceHost) return;
    if (o.error) {
      if (m.status === "FINISHED") await updateMigration(conn, m.id, { status: "ERROR" });
      await this.update({ vmState: "ERROR", taskState: null, powerState: this.power, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    if (m.status === "FINISHED") await updateMigration(conn, m.id, { status: "REVERTED" });
    await this.update({ vmState: m.oldVmState, taskState: null, powerState: this.power ?? (m.oldVmState === "ACTIVE" ? "RUNNING" : "SHUTDOWN") });
    await finishAction(conn, op.actionId);
  }

  /** A rebuild on the server's host, or an evacuation's build on its new host. */
  private async rebuilt(): Promise<void> {
    const { inst, op, o, conn } = this;
    if (op.host !== inst.host) return;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (m?.type === "EVACUATION") return this.evacuated(m);
    if (o.error) {
      await this.update({ vmState: "ERROR", taskState: null, powerState: this.power, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    await this.update({ vmState: "ACTIVE", taskState: null, powerState: this.power ?? "RUNNING", fault: null });
    await finishAction(conn, op.actionId);
  }

  /**
   * The evacuated server runs on its new host: the dead host's capacity is
   * released, and that host destroys its old copy when it comes back.
   */
  private async evacuated(m: Migration): Promise<void> {
    const { inst, op, o, conn } = this;
    if (o.error) {
      await rollbackMove(conn, this.opts, { inst, migration: m, fault: this.fault(), error: this.opError(), restoreSource: false, cleanupTarget: true, vmState: "ERROR" });
      this.effects.released = true;
      this.effects.dispatched = true;
      return;
    }
    this.effects.released = (await releaseAllocations(conn, m.id)) > 0;
    await updateMigration(conn, m.id, { status: "COMPLETED" });
    const done = await this.update({ vmState: "ACTIVE", taskState: null, powerState: this.power ?? "RUNNING", fault: null });
    await this.dispatch(m.sourceHost, { kind: "destroy" }, done, m.requestId);
    await finishAction(conn, op.actionId);
  }

  /** A snapshot was stored: the queued image is active; the server is as it was. */
  private async snapshotted(): Promise<void> {
    const { op, o, conn } = this;
    const action = await getActionById(conn, op.actionId);
    const imageId = action?.imageId ?? null;
    if (o.error || !o.snapshot) {
      if (imageId) await deleteImage(conn, imageId);
      await this.update({ taskState: null, powerState: this.power });
      await finishAction(conn, op.actionId, {
        error: o.error ? this.opError() : { code: status.UNKNOWN, reason: "SNAPSHOT_LOST", message: `the snapshot on ${op.host} reported no image data` },
      });
      return;
    }
    if (imageId) await activateImage(conn, imageId, o.snapshot);
    await this.update({ taskState: null, powerState: this.power });
    await finishAction(conn, op.actionId);
  }

  /** Shelved: the snapshot is stored, the server is gone from its host and its capacity released. */
  private async shelved(): Promise<void> {
    const { inst, op, o, conn } = this;
    if (o.error) {
      if (inst.shelvedImageId) await deleteImage(conn, inst.shelvedImageId);
      await this.update({ taskState: null, powerState: this.power, shelvedImageId: null, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    if (inst.shelvedImageId) {
      if (o.snapshot) await activateImage(conn, inst.shelvedImageId, o.snapshot);
      else {
        // The host lost track of what it stored (a crash mid-shelve): without
        // data the image cannot be trusted; unshelve falls back to the base image.
        await deleteImage(conn, inst.shelvedImageId);
      }
    }
    this.effects.released = (await releaseAllocations(conn, inst.uuid)) > 0;
    await this.update({
      vmState: "SHELVED_OFFLOADED",
      taskState: null,
      host: null,
      powerState: "NOSTATE",
      ...(o.snapshot ? {} : { shelvedImageId: null }),
    });
    await finishAction(conn, op.actionId);
  }

  /** The target is ready to receive the server: the source starts copying (cancellable from now). */
  private async liveMigrationPrepared(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || m.type !== "LIVE_MIGRATION" || op.host !== m.targetHost) return;
    if (o.error) return this.liveMigrationFailed(m);
    const target = await getNodeByHost(conn, m.targetHost);
    await this.dispatch(m.sourceHost, { kind: "live_migrate", targetHost: m.targetHost, targetUri: target?.migrationUri ?? "" }, inst, m.requestId);
    await setActionStep(conn, op.actionId, { cancellable: true, message: `copying to ${m.targetHost}` });
  }

  /** The copy finished (or was aborted, or failed). */
  private async liveMigrated(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || m.type !== "LIVE_MIGRATION" || op.host !== m.sourceHost || !m.targetHost) return;
    if (o.error) return this.liveMigrationFailed(m);
    await setActionStep(conn, op.actionId, { cancellable: false, message: `finishing on ${m.targetHost}` });
    const moved = await this.update({ host: m.targetHost });
    await this.dispatch(m.targetHost, { kind: "post_live_migration", sourceHost: m.sourceHost }, moved, m.requestId);
  }

  /** The server runs on its new host: the source's capacity is released. */
  private async liveMigrationFinished(): Promise<void> {
    const { inst, op, o, conn } = this;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || m.type !== "LIVE_MIGRATION" || op.host !== m.targetHost) return;
    // The server left the source either way.
    this.effects.released = (await releaseAllocations(conn, m.id)) > 0;
    if (o.error) {
      await updateMigration(conn, m.id, { status: "ERROR" });
      await this.update({ vmState: "ERROR", taskState: null, powerState: this.power, fault: this.fault() });
      await finishAction(conn, op.actionId, { error: this.opError() });
      return;
    }
    await updateMigration(conn, m.id, { status: "COMPLETED" });
    const power = this.power ?? (m.oldVmState === "PAUSED" ? "PAUSED" : "RUNNING");
    await this.update({ taskState: null, powerState: power });
    await finishAction(conn, op.actionId);
  }

  /**
   * A live migration that failed or was aborted before the target took the
   * server: it stays on its source as it was, the target's claim and
   * incoming domain go.
   */
  private async liveMigrationFailed(m: Migration): Promise<void> {
    const { inst, op, o, conn } = this;
    const aborted = op.kind === "live_migrate" && o.error?.code === "ABORTED" && (await cancelRequested(conn, op.actionId));
    await rollbackMove(conn, this.opts, {
      inst,
      migration: m,
      fault: aborted ? null : this.fault(),
      error: aborted ? { code: status.CANCELLED, reason: "CANCELLED", message: "the live migration was cancelled; the server stayed on its source" } : this.opError(),
      restoreSource: false,
      cleanupTarget: true,
      cancelled: aborted,
    });
    if (this.power) await this.update({ powerState: this.power });
    this.effects.released = true;
    this.effects.dispatched = true;
  }
}

/** Whether CancelOperation asked to stop this action. */
async function cancelRequested(conn: PoolConnection, actionId: number): Promise<boolean> {
  const rows = await select(conn, "SELECT 1 FROM instance_action_events WHERE action_id = ? AND event = 'cancel_requested' LIMIT 1", [actionId]);
  return rows.length > 0;
}
