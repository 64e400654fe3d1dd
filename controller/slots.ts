/**
 * At most `limit` tasks at once; the others wait in line, each handed the
 * slot of a task that finishes (so the count never dips and rises again
 * between them). The agent's per-key op queue and the controller's
 * admission of agents' Hellos both run their tasks through it.
 */
export class Slots {
  private running = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(readonly limit: number) {}

  /** Tasks running now. */
  get active(): number {
    return this.running;
  }

  /** Tasks waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Whether a task given now would wait. */
  get full(): boolean {
    return this.running >= this.limit;
  }

  /**
   * Runs `task` in a slot. A `signal` that aborts while the task waits takes
   * it out of the line: it never runs, and the call rejects with `abortError()`.
   */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal, abortError: () => Error = () => new Error("aborted while waiting for a slot")): Promise<T> {
    if (this.full) await this.wait(signal, abortError);
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** Waits for the slot of a task that finishes (running stays counted). */
  private wait(signal: AbortSignal | undefined, abortError: () => Error): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const admit = () => {
        signal?.removeEventListener("abort", leave);
        resolve();
      };
      const leave = () => {
        const i = this.waiters.indexOf(admit);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortError());
      };
      this.waiters.push(admit);
      signal?.addEventListener("abort", leave, { once: true });
    });
  }
}
