/**
 * Admission of costly work that arrives in storms: agents' Hellos after a
 * controller restart (each writes the host's rows and makes sure of its
 * JetStream consumer). At most `concurrency` run at once and `maxQueued`
 * wait; more are refused at once with UNAVAILABLE and a RetryInfo spread
 * over a window, so thousands of agents come back staggered instead of
 * all timing out together and retrying in lock step.
 */
import { status } from "@grpc/grpc-js";
import { ApiError } from "../errors.js";
import { Slots } from "../slots.js";

export interface AdmissionOptions {
  /** Runs at once. */
  readonly concurrency: number;
  /** Waiting at most; beyond, refused. */
  readonly maxQueued: number;
  /** What is admitted, for the refusal's message ("agent hellos"). */
  readonly what: string;
  /** The retry delay a refusal gives: at least this … */
  readonly retryMinMs: number;
  /** … and at most this, uniformly spread in between. */
  readonly retryMaxMs: number;
  readonly random?: () => number;
  /** Told of each refusal (a metric). */
  readonly onRefused?: () => void;
}

export class Admission {
  private readonly slots: Slots;
  private refusedCount = 0;

  constructor(private readonly o: AdmissionOptions) {
    this.slots = new Slots(o.concurrency);
  }

  /**
   * Runs `fn` once admitted; throws UNAVAILABLE (reason CONTROLLER_BUSY,
   * with a retry delay) when the queue is full. A caller that goes away
   * (`signal` aborts) while waiting leaves the queue and never runs.
   */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw cancelled(this.o.what);
    if (this.slots.full && this.slots.waiting >= this.o.maxQueued) {
      this.refusedCount++;
      this.o.onRefused?.();
      const span = this.o.retryMaxMs - this.o.retryMinMs;
      const retryDelayMs = Math.round(this.o.retryMinMs + (this.o.random ?? Math.random)() * span);
      throw new ApiError(status.UNAVAILABLE, `the controller is busy with other ${this.o.what}; retry in ${retryDelayMs} ms`, {
        reason: "CONTROLLER_BUSY",
        retryDelayMs,
      });
    }
    return this.slots.run(fn, signal, () => cancelled(this.o.what));
  }

  /** Now running, waiting, and refused so far. */
  get stats(): { running: number; waiting: number; refused: number } {
    return { running: this.slots.active, waiting: this.slots.waiting, refused: this.refusedCount };
  }
}

function cancelled(what: string): ApiError {
  return new ApiError(status.CANCELLED, `the caller went away while waiting with other ${what}`);
}
