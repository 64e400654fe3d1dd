/**
 * Progress of running ops, passed to the executor's listener: task steps
 * an op reaches (never throttled) and a long op's percent done (throttled
 * per op). Best effort: a listener that throws is logged, not obeyed.
 */
import type { Logger } from "pino";

/** Task steps an op reports reaching (see agent.proto, OpProgress.task_state). */
export type OpStage = "REBUILD_SPAWNING" | "IMAGE_UPLOADING" | "SHELVING_IMAGE_UPLOADING" | "SHELVING_OFFLOADING";

/** Progress of a running op. */
export interface OpProgressEvent {
  /** The op. */
  readonly opId: string;
  /** Its server. */
  readonly serverId: string;
  /** Percent done, 0–100. */
  readonly percent: number;
  /** What is happening. */
  readonly message: string;
  /**
   * The task step the op reached, when it moved on (such as
   * "REBUILD_SPAWNING"); undefined: the same step.
   */
  readonly stage?: OpStage;
}

/** Where one op's progress goes. */
export interface OpProgressSink {
  /** Reports that the op reached its next task step. */
  stage(stage: OpStage, message: string): void;
  /** Passes a driver's progress on, throttled. */
  progress(percent: number, message: string): void;
}

/** Hands progress to a listener, throttled per op. */
export class ProgressRelay {
  private readonly last = new Map<string, { time: number; percent: number; message: string }>();

  /**
   * `listener` gets at most one event per `intervalMs` per op, except that
   * 100 % and task steps always get through.
   */
  constructor(
    private readonly listener: ((progress: OpProgressEvent) => void) | undefined,
    private readonly intervalMs: number,
    private readonly logger: Logger | undefined,
  ) {}

  /** The sink of one op. */
  sinkOf(opId: string, serverId: string): OpProgressSink {
    return {
      stage: (stage, message) => this.emit({ opId, serverId, percent: 0, message, stage }),
      progress: (percent, message) => this.throttled(opId, serverId, percent, message),
    };
  }

  /** Forgets a finished op. */
  forget(opId: string): void {
    this.last.delete(opId);
  }

  private throttled(opId: string, serverId: string, percent: number, message: string): void {
    if (!this.listener) return;
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    const now = Date.now();
    const last = this.last.get(opId);
    if (last && p === last.percent && message === last.message) return;
    if (last && p < 100 && now - last.time < this.intervalMs) return;
    this.last.set(opId, { time: now, percent: p, message });
    this.emit({ opId, serverId, percent: p, message });
  }

  private emit(event: OpProgressEvent): void {
    if (!this.listener) return;
    try {
      this.listener(event);
    } catch (err) {
      this.logger?.warn({ err, op_id: event.opId }, "progress listener failed");
    }
  }
}
