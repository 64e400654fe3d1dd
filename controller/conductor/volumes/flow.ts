/**
 * The shape of a volume flow: what an op's result does to its volume, and
 * what the reaper does to a volume left in a working status past its
 * deadline. As for servers (conductor/flow.ts), each flow declares its rows;
 * volumes/index.ts assembles them into complete tables.
 */
import { status } from "@grpc/grpc-js";
import type { OpFailure, OpOutcome } from "../../domain/ops.js";
import type { Volume, VolumeFault, VolumeSnapshot, VolumeTask } from "../../domain/volume.js";
import type { VolumeOpKind } from "../../domain/volume-ops.js";
import type { PoolConnection } from "../../store/db.js";
import type { VolumeOpRecord } from "../../store/volume-actions.js";
import { finishVolumeAction } from "../../store/volume-actions.js";
import type { VolumePatch } from "../../store/volumes.js";
import { updateVolume } from "../../store/volumes.js";
import type { ConductorContext } from "../context.js";
import { faultOf, operationErrorOf, operationErrorOfFault } from "../flow.js";

/**
 * A volume op kind's row: the status its result may end (the volume's, or
 * for a snapshot op its snapshot's), and what it does. In any other status
 * the result is stale and changes nothing.
 */
export type VolumeResultRule = ({ readonly status: VolumeTask } | { readonly snapshot: "CREATING" | "DELETING" }) & {
  readonly apply: (r: VolumeResultContext) => Promise<void>;
};

/** A working status's row: what a timeout leaves. */
export interface VolumeTimeoutRule {
  /** What the fault says happened. */
  readonly outcome: string;
  readonly reap: (t: VolumeTimeoutContext) => Promise<void>;
}

/** What applying one volume op result sees, with the steps results take. */
export class VolumeResultContext {
  constructor(
    readonly conn: PoolConnection,
    readonly ctx: ConductorContext,
    readonly op: VolumeOpRecord,
    readonly volume: Volume,
    readonly outcome: OpOutcome,
    /** The snapshot a snapshot op is about. */
    readonly snapshot: VolumeSnapshot | null = null,
  ) {}

  get error(): OpFailure | null {
    return this.outcome.error;
  }

  update(patch: VolumePatch): Promise<void> {
    return updateVolume(this.conn, this.volume.id, patch);
  }

  /** The work is done: `patch` applied, no deadline, no fault, the action SUCCEEDED. */
  async succeed(patch: VolumePatch): Promise<void> {
    await this.update({ taskDeadline: null, fault: null, ...patch });
    await finishVolumeAction(this.conn, this.op.actionId);
  }

  /** The host failed: the fault on the volume with `patch`, the action FAILED. */
  async fail(patch: VolumePatch): Promise<void> {
    const f = this.outcome.error!;
    await this.update({ taskDeadline: null, fault: faultOf(f, this.op), ...patch });
    await finishVolumeAction(this.conn, this.op.actionId, operationErrorOf(f, this.op));
  }
}

/** What ending one overdue volume sees. */
export class VolumeTimeoutContext {
  constructor(
    readonly conn: PoolConnection,
    readonly ctx: ConductorContext,
    readonly volume: Volume,
    /** The action the working status belongs to, if one is still open. */
    readonly actionId: number | null,
    readonly fault: VolumeFault,
  ) {}

  /** The volume ends with the timeout's fault and `patch`; the action FAILED. */
  async end(patch: VolumePatch): Promise<void> {
    await updateVolume(this.conn, this.volume.id, { taskDeadline: null, fault: this.fault, ...patch });
    if (this.actionId !== null) {
      await finishVolumeAction(this.conn, this.actionId, operationErrorOfFault(this.fault, status.DEADLINE_EXCEEDED));
    }
  }
}

export type VolumeResultRules<K extends VolumeOpKind> = { readonly [P in K]: VolumeResultRule };
export type VolumeTimeoutRules<T extends VolumeTask> = { readonly [P in T]: VolumeTimeoutRule };
