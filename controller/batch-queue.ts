/**
 * Items that arrive together, handled together (group commit): an item that
 * comes while fewer than `maxConcurrent` batches run starts one at once,
 * alone, with no wait; items that come while the batches run wait and go
 * together in the next, up to `maxBatch`. Each item keeps its own outcome:
 * `together` settles each item, and a batch whose handling fails as a
 * whole is handled again item by item (`alone`), so one item's failure is
 * its own. Op results are applied through one.
 */
export interface BatchQueueOptions<T, R> {
  readonly maxBatch: number;
  readonly maxConcurrent: number;
  /** Handles a batch (two items or more): one outcome per item, in order. */
  readonly together: (items: T[]) => Promise<PromiseSettledResult<R>[]>;
  /** Handles one item: a batch of one, or each item of a batch that failed as a whole. */
  readonly alone: (item: T) => Promise<R>;
  /** Told when a batch failed as a whole (its items are then handled alone). */
  readonly onBatchFailed?: (err: unknown, items: number) => void;
  /** Items of a failed batch handled at once, at most (default: all of them). */
  readonly aloneConcurrency?: number;
  /** Items with the same key never share a batch: the later one waits for the next, keeping their order. */
  readonly keyOf?: (item: T) => string;
}

interface Waiting<T, R> {
  readonly item: T;
  readonly resolve: (r: R) => void;
  readonly reject: (err: unknown) => void;
}

export class BatchQueue<T, R> {
  private queue: Waiting<T, R>[] = [];
  private running = 0;

  constructor(private readonly o: BatchQueueOptions<T, R>) {
    if (!(o.maxBatch >= 1 && o.maxConcurrent >= 1)) throw new Error("a batch queue needs maxBatch and maxConcurrent of at least 1");
  }

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.queue.length) {
      const batch = this.take();
      this.running++;
      void this.handle(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  /** The next batch: the first `maxBatch` waiting items, but at most one per key. */
  private take(): Waiting<T, R>[] {
    const keyOf = this.o.keyOf;
    if (!keyOf) return this.queue.splice(0, this.o.maxBatch);
    const batch: Waiting<T, R>[] = [];
    const rest: Waiting<T, R>[] = [];
    const keys = new Set<string>();
    for (const w of this.queue) {
      const key = keyOf(w.item);
      if (batch.length < this.o.maxBatch && !keys.has(key)) {
        keys.add(key);
        batch.push(w);
      } else rest.push(w);
    }
    this.queue = rest;
    return batch;
  }

  private async handle(batch: Waiting<T, R>[]): Promise<void> {
    if (batch.length > 1) {
      let outcomes: PromiseSettledResult<R>[] | null = null;
      try {
        outcomes = await this.o.together(batch.map((w) => w.item));
        if (outcomes.length !== batch.length) throw new Error(`a batch of ${batch.length} gave ${outcomes.length} outcomes`);
      } catch (err) {
        outcomes = null;
        try {
          this.o.onBatchFailed?.(err, batch.length);
        } catch {
          // Being told is not worth an item's outcome.
        }
      }
      if (outcomes) {
        outcomes.forEach((out, i) => (out.status === "fulfilled" ? batch[i]!.resolve(out.value) : batch[i]!.reject(out.reason)));
        return;
      }
    }
    // Alone, at most aloneConcurrency at a time: a failed batch need not become a storm of its items.
    let next = 0;
    const worker = async () => {
      while (next < batch.length) {
        const w = batch[next++]!;
        await this.o.alone(w.item).then(w.resolve, w.reject);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.aloneConcurrency ?? batch.length, batch.length) }, worker));
  }
}
