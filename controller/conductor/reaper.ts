/**
 * The reaper: no server stays in a task past its deadline. Whatever kept the
 * task from finishing — a dead agent, a lost op, a controller restarted
 * half-way — the reaper ends it in a defined state with a TASK_TIMED_OUT
 * fault, and marks the task's outstanding ops done so a late result changes
 * nothing. What "a defined state" is for each task is its flow's timeout
 * rule (conductor/flows/). It also confirms resizes left unconfirmed past
 * the confirm window, as Nova's _poll_unconfirmed_resizes does.
 *
 * Volumes left in a working status (CREATING, DELETING, EXTENDING) past
 * their deadline are ended the same way, by their flows' timeout rules
 * (conductor/volumes/).
 *
 * Every controller runs it; instances and volumes are taken with SKIP LOCKED.
 */
import { status } from "@grpc/grpc-js";
import type { TaskState } from "../domain/states.js";
import { isUp } from "../domain/service.js";
import type { Fault, Instance } from "../domain/types.js";
import { instantEvent, runningAction } from "../store/actions.js";
import type { PoolConnection } from "../store/db.js";
import { afterCommit, withTx } from "../store/db.js";
import { lockOverdue } from "../store/instances.js";
import { dueForAutoConfirm } from "../store/moves.js";
import { getNodeByHost } from "../store/nodes.js";
import { finishOp, pendingOps } from "../store/ops.js";
import { PumpWorker } from "../pump.js";
import type { ConductorContext } from "./context.js";
import { Tx } from "./context.js";
import { TimeoutContext, operationErrorOfFault } from "./flow.js";
import { TIMEOUT_RULES, resize } from "./flows/index.js";
import { VOLUME_REAP_BATCH, reapVolumes } from "./volumes/results.js";

export interface ReaperOptions {
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

/** Servers reaped per transaction. */
const BATCH = 50;

export class Reaper extends PumpWorker {
  private startTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: ConductorContext,
    private readonly opts: ReaperOptions,
  ) {
    super(opts.intervalSeconds * 1000);
  }

  protected async step(): Promise<boolean> {
    const reaped = await this.pass();
    const volumes = await reapVolumes(this.ctx);
    await this.autoConfirm();
    return reaped === BATCH || volumes === VOLUME_REAP_BATCH;
  }

  protected failed(err: unknown): boolean {
    this.ctx.log.warn({ err }, "reaper pass failed; will retry");
    return false;
  }

  /** The first pass comes after the grace period. */
  override start(): void {
    this.startTimer = setTimeout(() => super.start(), this.opts.graceSeconds * 1000);
  }

  override async stop(): Promise<void> {
    if (this.startTimer) clearTimeout(this.startTimer);
    await super.stop();
  }

  /** Ends every overdue task (one batch); returns how many. */
  async pass(now = new Date()): Promise<number> {
    return withTx(this.ctx.pool, async (conn) => {
      const overdue = await lockOverdue(conn, now, BATCH);
      for (const inst of overdue) await this.reap(conn, inst);
      return overdue.length;
    });
  }

  private async reap(conn: PoolConnection, inst: Instance): Promise<void> {
    const task = inst.taskState as TaskState;
    const rule = TIMEOUT_RULES[task];
    const seconds = this.ctx.taskTimeouts[task];
    const hostNode = inst.host ? await getNodeByHost(conn, inst.host) : null;
    const hostDown = hostNode !== null && !isUp(hostNode, this.ctx.serviceDownTimeSeconds);
    const why = `${task} did not finish within ${seconds} s${inst.host ? ` on host ${inst.host}${hostDown ? " (host is down)" : ""}` : ""}`;
    const fault: Fault = {
      code: "TASK_TIMED_OUT",
      message: `${why}; ${rule.outcome}`,
      details: { task_state: task, timeout_seconds: String(seconds), ...(inst.host ? { host: inst.host } : {}) },
      createdAt: new Date().toISOString(),
    };
    // Outstanding ops are done: a late result must not move the server again.
    const ops = await pendingOps(conn, inst.uuid);
    for (const op of ops) {
      await finishOp(conn, op.opId, { code: "TASK_TIMED_OUT", message: why, retryable: false }, { result: "Error", fault: `TASK_TIMED_OUT: ${why}` });
    }
    const actionId = ops.at(-1)?.actionId ?? (await runningAction(conn, inst.uuid))?.id ?? null;
    if (actionId !== null) await instantEvent(conn, { actionId, event: "task_timeout", host: inst.host ?? "", result: "Error", fault: fault.message });
    afterCommit(conn, () => {
      this.ctx.log.warn({ server_id: inst.uuid, task, host: inst.host }, `task timed out: ${fault.message}`);
      this.ctx.metrics?.tasksTimedOut.inc({ task });
    });
    await rule.reap(new TimeoutContext(new Tx(conn, this.ctx), inst, task, actionId, fault, operationErrorOfFault(fault, status.DEADLINE_EXCEEDED)));
  }

  /** Confirms finished resizes left unconfirmed past the confirm window. */
  private async autoConfirm(): Promise<void> {
    if (this.opts.resizeConfirmWindowSeconds <= 0) return;
    const due = await dueForAutoConfirm(this.ctx.pool, new Date(Date.now() - this.opts.resizeConfirmWindowSeconds * 1000), 20);
    for (const d of due) {
      try {
        await resize.autoConfirm(this.ctx, d);
        this.ctx.log.info({ server_id: d.instanceUuid, migration_id: d.id }, "resize confirmed automatically after the confirm window");
      } catch (err) {
        this.ctx.log.warn({ err, server_id: d.instanceUuid }, "automatic resize confirm failed");
      }
    }
  }
}
