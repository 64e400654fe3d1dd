/**
 * A background loop that runs `step` when kicked (after a local commit) and
 * every `pollMs` (for work left by other controllers or a crash). Kicks that
 * arrive while a step runs coalesce into one more pass. `step` returns true
 * when more work may be waiting right away.
 */
export class Pump {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  private stopped = false;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly step: () => Promise<boolean>,
    private readonly opts: {
      readonly pollMs: number;
      /** Handles a failed step; returns true to retry at once (e.g. a deadlock). */
      readonly onError: (err: unknown) => boolean;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.opts.pollMs);
    this.kick();
  }

  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.idle = this.loop().finally(() => {
      this.running = false;
    });
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        if (await this.step()) this.again = true;
      } catch (err) {
        if (this.opts.onError(err)) this.again = true;
      }
    } while (this.again && !this.stopped);
  }

  /** Stops polling and waits for the step in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    // The loop hands every failed step to onError, so this only waits.
    await this.idle;
  }
}

/**
 * A background worker on a {@link Pump}: `step` runs when kicked and every
 * `pollMs`; `failed` handles a failed step (true: run again at once).
 */
export abstract class PumpWorker {
  private readonly pump: Pump;

  constructor(pollMs: number) {
    this.pump = new Pump(() => this.step(), { pollMs, onError: (err) => this.failed(err) });
  }

  /** One pass; true when more work may be waiting right away. */
  protected abstract step(): Promise<boolean>;

  protected abstract failed(err: unknown): boolean;

  start(): void {
    this.pump.start();
  }

  /** Asks for a pass now (after a commit that left work for it). */
  kick(): void {
    this.pump.kick();
  }

  /** Stops polling and waits for the pass in flight. */
  stop(): Promise<void> {
    return this.pump.stop();
  }
}
