import { Slots } from "../controller/slots.js";
import { settledOf } from "./settled.js";

/**
 * Runs tasks one after another per key and at most `limit` at once overall
 * (default: no limit): ops of one server in the order they arrived,
 * different servers in parallel; a volume's calls, or a client host's, in
 * turn. A task runs whether the one before it under its key succeeded or not.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly slots: Slots;

  constructor(limit: number = Number.POSITIVE_INFINITY) {
    if (limit !== Number.POSITIVE_INFINITY && (!Number.isInteger(limit) || limit < 1)) throw new RangeError(`limit must be a positive integer, got ${limit}`);
    this.slots = new Slots(limit);
  }

  /** Tasks running now. */
  get active(): number {
    return this.slots.active;
  }

  /** Runs `task` after every task queued before it under `key`, when a slot is free. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const result = previous.then(() => this.slots.run(task));
    const tail = settledOf(result);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
