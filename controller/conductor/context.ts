/**
 * What every conductor step needs, given once: the database, the subject
 * prefix, the task timeouts and the deployment's settings; and `Tx`, one
 * transaction of the conductor with the steps every flow takes in it.
 */
import type { Logger } from "pino";
import type { TaskState } from "../domain/states.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { startTask } from "../domain/tasks.js";
import type { Instance } from "../domain/types.js";
import type { VolumeTimeouts } from "../domain/volume.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { afterCommit } from "../store/db.js";
import type { ControllerMetrics } from "../metrics.js";
import type { InstancePatch } from "../store/instances.js";
import type { DispatchRequest } from "./dispatch.js";
import type { TxStore } from "./tx-store.js";
import { bindStore } from "./tx-store.js";

export interface ConductorContext {
  readonly pool: Pool;
  readonly log: Logger;
  readonly subjectPrefix: string;
  /** How long each task may run. */
  readonly taskTimeouts: TaskTimeouts;
  /** A host is down when its last report is older than this many seconds. */
  readonly serviceDownTimeSeconds: number;
  /** Build attempts per server (the first and the reschedules). */
  readonly maxAttempts: number;
  /** Seconds a guest gets to shut down cleanly on stop (and before a move). */
  readonly powerOffTimeoutSeconds: number;
  /** Seconds a guest gets to finish a soft reboot before the host reboots it hard. */
  readonly softRebootTimeoutSeconds: number;
  /** A resize may choose the server's own host (Nova's allow_resize_to_same_host). */
  readonly allowResizeToSameHost: boolean;
  /** How long a volume may stay in each working status. */
  readonly volumeTimeouts: VolumeTimeouts;
  /** Volumes a pool takes, as a multiple of its capacity. */
  readonly volumeOversubscriptionRatio: number;
  /** Where op results, build times and timed-out tasks are counted (none in unit tests). */
  readonly metrics?: ControllerMetrics | null;
}

/** One conductor transaction: its connection, the context, the store bound to it, and the common steps. */
export class Tx {
  constructor(
    readonly conn: PoolConnection,
    readonly ctx: ConductorContext,
    /** What flows read and write, in this transaction. */
    readonly store: TxStore = bindStore(conn),
  ) {}

  /** `task` with its deadline from now, for an instance patch. */
  task(task: TaskState): { taskState: TaskState; taskDeadline: Date } {
    return startTask(this.ctx.taskTimeouts, task);
  }

  update(uuid: string, patch: InstancePatch): Promise<Instance> {
    return this.store.updateInstance(uuid, patch);
  }

  /** Sends an op to a host (recorded with its event, queued in the outbox; logged once that commits). */
  async dispatch(o: Omit<DispatchRequest, "subjectPrefix">): Promise<string> {
    const opId = await this.store.dispatchOp({ ...o, subjectPrefix: this.ctx.subjectPrefix });
    const fields = { op_id: opId, request_id: o.requestId, server_id: o.instance.uuid, host: o.host, op: o.args.kind, ...(o.volume ? { volume_id: o.volume.id } : {}) };
    this.afterCommit(() => this.ctx.log.info(fields, "op queued for its host"));
    return opId;
  }

  /** Runs `fn` once the transaction commits (never if it rolls back): log lines and metrics of what it did. */
  afterCommit(fn: () => void): void {
    afterCommit(this.conn, fn);
  }

  /** Hosts seen since then are up (claims need an up host). */
  upSince(): Date {
    return new Date(Date.now() - this.ctx.serviceDownTimeSeconds * 1000);
  }
}
