/**
 * How an op ended, in the agent's own terms: the one failure shape (made
 * from whatever was thrown, journaled as it is, turned into the wire's
 * OpError only at the edge) and the outcome reported for every op.
 */
import { DriverError, type DriverErrorCode } from "../drivers/errors.js";
import type { VolumeExport } from "../../controller/domain/ops.js";
import type { PowerState, SnapshotInfo } from "../drivers/types.js";

/** How an op failed, as reported to the controller. */
export interface OpFailure {
  /** Machine-readable, such as "NOT_FOUND" or "ABORTED". */
  readonly code: string;
  readonly message: string;
  /** Whether running the op again (here or on another host) may succeed. */
  readonly retryable: boolean;
}

/** Anything thrown, as a failure: see {@link DriverError.from} for the codes. */
export function toFailure(reason: unknown, fallbackCode?: DriverErrorCode): OpFailure {
  const e = DriverError.from(reason, fallbackCode);
  return { code: e.code, message: e.message, retryable: e.retryable };
}

/** A failure that no retry can mend. */
export function finalFailure(code: string, message: string): OpFailure {
  return { code, message, retryable: false };
}

/**
 * The failure of an op that must not start (again) because its deadline
 * passed before `start` — the controller has given up on it; undefined
 * while it may run (or it has no deadline).
 */
export function pastDeadline(deadline: Date | null, start: Date): OpFailure | undefined {
  if (deadline === null || start.getTime() <= deadline.getTime()) return undefined;
  return finalFailure("DEADLINE_EXCEEDED", `not started: the op's deadline ${deadline.toISOString()} had passed`);
}

/**
 * What an op that succeeded reports of a volume: its size as the backend
 * holds it (create_volume, extend_volume, grow_volume; extend_volume_disk:
 * the size the instance now sees), its export (export_volume), or
 * the device the instance got it as (attach_volume).
 */
export interface VolumeResult {
  readonly sizeBytes?: number;
  readonly export?: VolumeExport;
  readonly device?: string;
}

/** The outcome of one op, to report to the controller. */
export interface OpOutcome {
  readonly opId: string;
  /** The instance the op acted on, or an export was for ("" if the op named none, and for the other volume ops). */
  readonly serverId: string;
  /** The volume a volume op acted on ("" if it named none); absent for other ops. */
  readonly volumeId?: string;
  /** See {@link VolumeResult} (not after delete, unexport, detach). */
  readonly volume?: VolumeResult;
  /** Absent on success. */
  readonly failure?: OpFailure;
  /** The instance's power state after the op; absent if not known. */
  readonly powerState?: PowerState;
  /** The image data the op stored, if it took a snapshot. */
  readonly snapshot?: SnapshotInfo;
  /** How the op went, if worth saying (a soft reboot that fell back to hard, an abort, …). */
  readonly note?: string;
  /** When the op started. */
  readonly startTime: Date;
  /** When it finished. */
  readonly finishTime: Date;
}

/** The outcome of an execution of an op. */
export interface Execution {
  /** The outcome to report to the controller. */
  readonly outcome: OpOutcome;
  /** The outcome came from the journal; nothing was run. */
  readonly replayed: boolean;
  /** The op had been started by a previous process and was reconciled (or, a volume op, run again). */
  readonly reconciled: boolean;
  /** Another delivery of the op was already running it: this one shares that execution (counted once). */
  readonly joined?: boolean;
}

/** The executor closed before the op finished; the op did not complete and must be redelivered. */
export class ExecutorClosedError extends Error {
  constructor(opId: string) {
    super(`op executor closed before op ${opId} finished`);
    this.name = "ExecutorClosedError";
  }
}
