/**
 * The reaper: no server stays in a task past its deadline. Whatever kept the
 * task from finishing — a dead agent, a lost op, a controller restarted
 * half-way — the reaper ends it in a defined state with a TASK_TIMED_OUT
 * fault, and marks the task's outstanding ops done so a late result changes
 * nothing. It also confirms resizes left unconfirmed past the confirm window,
 * as Nova's _poll_unconfirmed_resizes does.
 *
 * Every controller runs it; instances are taken with SKIP LOCKED.
 */
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { TaskState } from "../domain/states.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import type { Fault, Instance, OperationError } from "../domain/types.js";
import { isUp } from "../domain/service.js";
import { finishAction, finishOpEvent, getActionById, instantEvent, runningAction } from "../store/actions.js";
import { deleteImage } from "../store/catalog.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { withTx } from "../store/db.js";
import { lockOverdue, updateInstance } from "../store/instances.js";
import { dueForAutoConfirm, openMigration, updateMigration } from "../store/moves.js";
import { getNodeByHost, moveAllocations, releaseAllocations } from "../store/nodes.js";
import { finishOp, pendingOps } from "../store/ops.js";
import { Pump } from "../pump.js";
import { dispatchOp } from "./dispatch.js";
import type { Lifecycle } from "./lifecycle.js";
import { releaseEverything, rollbackMove } from "./moves.js";

export interface ReaperOptions {
  readonly subjectPrefix: string;
  readonly taskTimeouts: TaskTimeouts;
  readonly serviceDownTimeSeconds: number;
  /** Seconds between passes. */
  readonly intervalSeconds: number;
  /**
   * Seconds after start before the first pass, so agents can reconnect and
   * report results held while no controller ran.
   */
  readonly graceSeconds: number;
  /** Seconds a finished resize waits for confirm or revert before it is confirmed (0: never). */
  readonly resizeConfirmWindowSeconds: number;
}

export interface ReapEffects {
  reaped: number;
  released: boolean;
  dispatched: boolean;
}

export class Reaper {
  private readonly pump: Pump;
  private startTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly lifecycle: Lifecycle,
    private readonly log: Logger,
    private readonly opts: ReaperOptions,
    private readonly onChange: (e: ReapEffects) => void,
  ) {
    this.pump = new Pump(
      async () => {
        const e = await this.pass();
        if (e.reaped > 0) this.onChange(e);
        await this.autoConfirm();
        return e.reaped === 50;
      },
      {
        pollMs: opts.intervalSeconds * 1000,
        onError: (err) => {
          this.log.warn({ err }, "reaper pass failed; will retry");
          return false;
        },
      },
    );
  }

  start(): void {
    this.startTimer = setTimeout(() => this.pump.start(), this.opts.graceSeconds * 1000);
  }

  async stop(): Promise<void> {
    if (this.startTimer) clearTimeout(this.startTimer);
    await this.pump.stop();
  }

  /** Ends every overdue task (one batch); returns what it did. */
  async pass(now = new Date()): Promise<ReapEffects> {
    return withTx(this.pool, async (conn) => {
      const effects: ReapEffects = { reaped: 0, released: false, dispatched: false };
      for (const inst of await lockOverdue(conn, now, 50)) {
        await this.reap(conn, inst, effects);
        effects.reaped++;
      }
      return effects;
    });
  }

  private async reap(conn: PoolConnection, inst: Instance, effects: ReapEffects): Promise<void> {
    const task = inst.taskState as TaskState;
    const seconds = this.opts.taskTimeouts[task];
    const hostNode = inst.host ? await getNodeByHost(conn, inst.host) : null;
    const hostDown = hostNode !== null && !isUp(hostNode, this.opts.serviceDownTimeSeconds);
    const why = `${task} did not finish within ${seconds} s${inst.host ? ` on host ${inst.host}${hostDown ? " (host is down)" : ""}` : ""}`;
    const fault: Fault = {
      code: "TASK_TIMED_OUT",
      message: `${why}; ${OUTCOME[task]}`,
      details: { task_state: task, timeout_seconds: String(seconds), ...(inst.host ? { host: inst.host } : {}) },
      createdAt: new Date().toISOString(),
    };
    const error: OperationError = { code: status.DEADLINE_EXCEEDED, reason: "TASK_TIMED_OUT", message: fault.message, metadata: fault.details };
    // Outstanding ops are done: a late result must not move the server again.
    const ops = await pendingOps(conn, inst.uuid);
    for (const op of ops) {
      await finishOp(conn, op.opId, { code: "TASK_TIMED_OUT", message: why, retryable: false });
      await finishOpEvent(conn, op.opId, { result: "Error", fault: `TASK_TIMED_OUT: ${why}` });
    }
    const actionId = ops.at(-1)?.actionId ?? (await runningAction(conn, inst.uuid))?.id ?? null;
    if (actionId !== null) await instantEvent(conn, { actionId, event: "task_timeout", host: inst.host ?? "", result: "Error", fault: fault.message });
    const fail = async () => {
      if (actionId !== null) await finishAction(conn, actionId, { error });
    };
    this.log.warn({ server: inst.uuid, task, host: inst.host }, `task timed out: ${fault.message}`);

    switch (task) {
      case "SCHEDULING":
        await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault });
        return fail();
      case "SPAWNING":
        // Whatever the host made, it destroys when it gets to it.
        if (inst.host && actionId !== null) {
          await dispatchOp(conn, { instance: inst, host: inst.host, actionId, requestId: inst.requestId, args: { kind: "destroy" }, subjectPrefix: this.opts.subjectPrefix });
          effects.dispatched = true;
        }
        effects.released = (await releaseAllocations(conn, inst.uuid)) > 0 || effects.released;
        // An unshelve stays shelved; a build fails.
        await updateInstance(conn, inst.uuid, {
          ...(inst.vmState === "SHELVED_OFFLOADED" ? {} : { vmState: "ERROR" as const }),
          taskState: null,
          host: null,
          powerState: "NOSTATE",
          fault,
        });
        return fail();
      case "UNSHELVING":
        await updateInstance(conn, inst.uuid, { taskState: null, fault });
        return fail();
      case "IMAGE_SNAPSHOT":
      case "IMAGE_UPLOADING": {
        const image = actionId !== null ? (await getActionById(conn, actionId))?.imageId : null;
        if (image) await deleteImage(conn, image);
        await updateInstance(conn, inst.uuid, { taskState: null, fault });
        return fail();
      }
      case "SHELVING":
      case "SHELVING_IMAGE_UPLOADING":
      case "SHELVING_OFFLOADING":
        if (inst.shelvedImageId) await deleteImage(conn, inst.shelvedImageId);
        await updateInstance(conn, inst.uuid, { taskState: null, shelvedImageId: null, fault });
        return fail();
      case "MIGRATING":
      case "REBUILDING":
      case "REBUILD_SPAWNING": {
        const m = await openMigration(conn, inst.uuid, { lock: true });
        if (m?.status === "PRE_MIGRATING") {
          // No host was chosen: nothing moved.
          await moveAllocations(conn, m.id, inst.uuid);
          await updateMigration(conn, m.id, { status: "ERROR" });
          await updateInstance(conn, inst.uuid, { taskState: null, fault });
          return fail();
        }
        if (m?.type === "EVACUATION" && task === "REBUILD_SPAWNING") {
          await rollbackMove(conn, this.opts, { inst, migration: m, fault, error, restoreSource: false, cleanupTarget: true, vmState: "ERROR" });
          effects.released = true;
          effects.dispatched = true;
          return;
        }
        if (m && task === "MIGRATING") {
          // The copy may or may not have completed: the server may run on
          // either host, so both keep their claims until an operator acts.
          await updateMigration(conn, m.id, { status: "ERROR" });
        }
        // A rebuild that did not finish leaves the disk in an unknown state.
        await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault });
        return fail();
      }
      case "DELETING":
        // The destroy op stays queued for the host; the server is gone now.
        effects.released = (await releaseEverything(conn, inst.uuid)) > 0 || effects.released;
        await updateInstance(conn, inst.uuid, { vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date(), fault });
        if (actionId !== null) await instantEvent(conn, { actionId, event: "local_delete", host: inst.host ?? "", result: "Success" });
        return fail();
      case "RESIZE_PREP": {
        const m = await openMigration(conn, inst.uuid, { lock: true });
        if (m) {
          await moveAllocations(conn, m.id, inst.uuid);
          await updateMigration(conn, m.id, { status: "ERROR" });
        }
        await updateInstance(conn, inst.uuid, { taskState: null, fault });
        return fail();
      }
      case "RESIZE_MIGRATING":
      case "RESIZE_FINISH": {
        const m = await openMigration(conn, inst.uuid, { lock: true });
        if (!m) {
          await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault });
          return fail();
        }
        await rollbackMove(conn, this.opts, { inst, migration: m, fault, error, restoreSource: true, cleanupTarget: true });
        effects.released = true;
        effects.dispatched = true;
        return;
      }
      case "RESIZE_CONFIRMING": {
        // The source's confirm (a cleanup op) stays queued; the move is confirmed.
        const m = await openMigration(conn, inst.uuid, { lock: true });
        if (m) {
          effects.released = (await releaseAllocations(conn, m.id)) > 0 || effects.released;
          await updateMigration(conn, m.id, { status: "CONFIRMED" });
        }
        await updateInstance(conn, inst.uuid, { vmState: m?.oldVmState === "STOPPED" ? "STOPPED" : "ACTIVE", taskState: null, fault });
        return fail();
      }
      case "RESIZE_REVERTING": {
        const m = await openMigration(conn, inst.uuid, { lock: true });
        if (m) await updateMigration(conn, m.id, { status: "ERROR" });
        await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault });
        return fail();
      }
      default:
        // Power tasks: the server keeps its last known state; the host's
        // reports correct the power state (and the vm_state) when it is back.
        await updateInstance(conn, inst.uuid, { taskState: null, fault });
        return fail();
    }
  }

  /** Confirms finished resizes left unconfirmed past the confirm window. */
  private async autoConfirm(): Promise<void> {
    if (this.opts.resizeConfirmWindowSeconds <= 0) return;
    const due = await dueForAutoConfirm(this.pool, new Date(Date.now() - this.opts.resizeConfirmWindowSeconds * 1000), 20);
    for (const d of due) {
      try {
        await this.lifecycle.confirmResize({ tokenId: "system", projectId: d.projectId, role: "admin" }, d.instanceUuid, `auto-confirm-${d.id}`);
        this.log.info({ server: d.instanceUuid, migration: d.id }, "resize confirmed automatically after the confirm window");
      } catch (err) {
        this.log.warn({ err, server: d.instanceUuid }, "automatic resize confirm failed");
      }
    }
  }
}

/** What the reaper does for each task, as the fault says it. */
const OUTCOME: Readonly<Record<TaskState, string>> = {
  SCHEDULING: "the build failed",
  SPAWNING: "the build failed and the host will remove what it made",
  POWERING_OFF: "the server keeps its last known state",
  POWERING_ON: "the server keeps its last known state",
  REBOOTING: "the server keeps its last known state",
  REBOOTING_HARD: "the server keeps its last known state",
  DELETING: "the server was deleted here; its host removes it when it is back",
  PAUSING: "the server keeps its last known state",
  UNPAUSING: "the server keeps its last known state",
  SUSPENDING: "the server keeps its last known state",
  RESUMING: "the server keeps its last known state",
  RESIZE_PREP: "the move was abandoned before it started",
  RESIZE_MIGRATING: "the move was rolled back to the source host",
  RESIZE_FINISH: "the move was rolled back to the source host",
  RESIZE_CONFIRMING: "the move was confirmed here; the source host removes the old copy when it can",
  RESIZE_REVERTING: "the revert did not complete; the server needs an operator (hard reboot or delete)",
  MIGRATING: "the server may be on either host; both keep their capacity until an operator acts",
  REBUILDING: "the rebuild did not complete; the server is in ERROR",
  REBUILD_SPAWNING: "the rebuild did not complete (an evacuation is rolled back to the old host); the server is in ERROR",
  IMAGE_SNAPSHOT: "the snapshot was abandoned and its image deleted; the server is unchanged",
  SHELVING: "the shelve was abandoned; the server keeps its last known state",
  UNSHELVING: "the server stays shelved",
  IMAGE_UPLOADING: "the snapshot was abandoned and its image deleted; the server is unchanged",
  SHELVING_IMAGE_UPLOADING: "the shelve was abandoned; the server keeps its last known state",
  SHELVING_OFFLOADING: "the shelve was abandoned; the server keeps its last known state",
};

