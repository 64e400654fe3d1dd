import { EventEmitter, on } from "node:events";
import { status } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { ApiError, toApiError } from "../errors.js";
import type { Pool } from "../store/db.js";
import type { ChangeRecord } from "../store/changes.js";
import { lastChangeIndex, listChanges } from "../store/changes.js";
import type { ServerNetworks } from "./convert.js";
import { networksOf } from "./server-networks.js";

/** What a watch wants: the changes after an index, of a project or one server. */
export interface WatchFilter {
  /** Changes after this index; undefined: from now on. */
  readonly afterIndex?: number;
  readonly projectId?: string;
  readonly instanceUuid?: string;
  readonly signal: AbortSignal;
  /** Told at once when the watch must end: it fell too far behind (the error says where to resume) or the log cannot be read. */
  readonly onFailure?: (err: ApiError) => void;
}

export interface ChangeFeedOptions {
  /** Milliseconds between reads for other controllers' commits (local commits wake the feed at once). */
  readonly pollMs?: number;
  /** Changes a watch may have waiting for its client before it is ended. */
  readonly buffer?: number;
  /** Rows per read of the change log. */
  readonly batch?: number;
  /** Milliseconds at least between the feed's reads: commits closer together are read together (default 5). */
  readonly minGapMs?: number;
  readonly log?: Logger;
}

/** The error that ends a watch whose client fell behind: resume after the last index it was sent. */
export function fellBehind(lastSent: number, buffer: number): ApiError {
  return new ApiError(
    status.ABORTED,
    `this watch fell more than ${buffer} changes behind and was ended; resume with after_index ${lastSent} (the last index sent) or the last index received`,
    { reason: "WATCH_FELL_BEHIND", metadata: { resume_after_index: String(lastSent) } },
  );
}

/** A change with the server's interfaces as they were when the feed read it (one read per batch). */
export interface FeedChange extends ChangeRecord {
  readonly networks: ServerNetworks;
}

/** One open watch: its filter, where it is, and the changes waiting for it. */
class Subscription {
  /** Changes after `liveFrom` reach this watch from the feed; earlier ones it reads itself. */
  readonly liveFrom: number;
  /** The last index handed to the client. */
  sent: number;
  queue: FeedChange[] = [];
  failure: ApiError | null = null;
  private wakeUp: (() => void) | null = null;

  constructor(
    readonly filter: WatchFilter,
    liveFrom: number,
    start: number,
    private readonly max: number,
  ) {
    this.liveFrom = liveFrom;
    this.sent = start;
  }

  wants(c: ChangeRecord): boolean {
    if (this.filter.projectId !== undefined && c.instance.projectId !== this.filter.projectId) return false;
    if (this.filter.instanceUuid !== undefined && c.instance.uuid !== this.filter.instanceUuid) return false;
    return true;
  }

  /** A change read by the feed; a watch that has too many waiting is ended, its queue dropped. */
  push(c: FeedChange): void {
    if (this.failure || c.index <= this.liveFrom || !this.wants(c)) return;
    if (this.queue.length >= this.max) {
      this.fail(fellBehind(this.sent, this.max));
      return;
    }
    this.queue.push(c);
    this.ring();
  }

  fail(err: ApiError): void {
    if (this.failure) return;
    this.failure = err;
    this.queue = [];
    this.ring();
    this.filter.onFailure?.(err);
  }

  ring(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /** Resolves when there is something to take (or the watch is over). */
  waitForWork(): Promise<void> {
    if (this.queue.length || this.failure || this.filter.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeUp = resolve;
    });
  }
}

/**
 * The change feed behind WatchServers: one per controller process, however
 * many watches are open. It reads the server change log once per wake — a
 * commit in this process wakes it at once, and it polls every `pollMs` for
 * other controllers' commits — and hands each change to every open watch
 * whose project and server it matches. Under a stream of commits it reads
 * at most once every `minGapMs`, taking all that came meanwhile at once,
 * rather than once per commit. Indexes become visible strictly in
 * order (store/changes.ts), so a watch that resumes after an index reads the
 * changes up to where the feed was when it joined by itself, then takes the
 * feed's: every later change exactly once, in commit order.
 *
 * A slow client never holds the feed or the others up: each watch has at
 * most `buffer` changes waiting for its client; one further behind is ended
 * with ABORTED (WATCH_FELL_BEHIND, the index to resume after in its
 * metadata) and its waiting changes dropped.
 */
export class ChangeFeed {
  private readonly bell = new EventEmitter();
  private readonly subs = new Set<Subscription>();
  /** The last index the feed read; changes after it are the next read's. */
  private head = 0;
  private running = false;
  private again = false;
  private sleeper: (() => void) | null = null;
  private readonly pollMs: number;
  private readonly buffer: number;
  private readonly batch: number;
  private readonly minGapMs: number;
  private readonly log: Logger | undefined;
  /** Reads of the change log (the feed's and those of watches catching up), for tests and benchmarks. */
  readonly stats = { changeLogReads: 0 };

  constructor(
    private readonly pool: Pool,
    opts: ChangeFeedOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 250;
    this.buffer = opts.buffer ?? 1000;
    this.batch = opts.batch ?? 500;
    this.minGapMs = opts.minGapMs ?? 5;
    this.log = opts.log;
    this.bell.setMaxListeners(0);
  }

  /** Open watches. */
  get watches(): number {
    return this.subs.size;
  }

  /** A commit in this process changed servers: wakes the feed (and WaitOperation's waiters). */
  notify(): void {
    this.bell.emit("change");
    if (!this.subs.size) return;
    this.again = true;
    this.sleeper?.();
  }

  /** Changes after `afterIndex` (undefined: from now on) that match the filter, until the signal aborts. */
  async *watch(f: WatchFilter): AsyncGenerator<FeedChange> {
    let now: number | undefined;
    if (!this.running) {
      // Idle: the feed's place may be old; start it where the log is now.
      now = await lastChangeIndex(this.pool);
      if (!this.running) this.head = Math.max(this.head, now);
    }
    const start = f.afterIndex ?? now ?? (await lastChangeIndex(this.pool));
    const sub = new Subscription(f, this.head, start, this.buffer);
    this.subs.add(sub);
    this.start();
    const onAbort = () => sub.ring();
    f.signal.addEventListener("abort", onAbort, { once: true });
    try {
      // What was committed before the watch joined the feed, read by itself.
      let cursor = start;
      while (cursor < sub.liveFrom && !f.signal.aborted) {
        const batch = await this.read(cursor);
        if (!batch.length) break;
        for (const c of batch) {
          if (c.index > sub.liveFrom) {
            cursor = sub.liveFrom;
            break;
          }
          cursor = c.index;
          if (sub.failure) throw sub.failure;
          if (!sub.wants(c)) continue;
          sub.sent = c.index;
          yield c;
        }
      }
      // Then the feed's.
      for (;;) {
        await sub.waitForWork();
        if (f.signal.aborted) return;
        if (sub.failure) throw sub.failure;
        const c = sub.queue.shift()!;
        if (c.index <= cursor) continue;
        cursor = c.index;
        sub.sent = c.index;
        yield c;
      }
    } finally {
      f.signal.removeEventListener("abort", onAbort);
      this.subs.delete(sub);
    }
  }

  /** Resolves at the next local change, after `ms`, or when `signal` aborts. */
  changed(ms: number, signal: AbortSignal): Promise<void> {
    return waitFor(this.bell, ms, signal);
  }

  private async read(afterIndex: number): Promise<FeedChange[]> {
    this.stats.changeLogReads++;
    const changes = await listChanges(this.pool, { afterIndex, limit: this.batch });
    if (!changes.length) return [];
    const networks = await networksOf(this.pool, [...new Set(changes.map((c) => c.instance.uuid))]);
    return changes.map((c) => ({ ...c, networks: networks.get(c.instance.uuid)! }));
  }

  private start(): void {
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  /** Reads and fans out while there are watches; stops when the last one is gone. */
  private async run(): Promise<void> {
    try {
      while (this.subs.size) {
        this.again = false;
        const started = performance.now();
        try {
          for (;;) {
            const batch = await this.read(this.head);
            for (const c of batch) {
              for (const sub of this.subs) sub.push(c);
              this.head = c.index;
            }
            if (batch.length < this.batch) break;
          }
        } catch (e) {
          // The log cannot be read (the database is away): every watch ends with that status.
          const err = toApiError(e);
          this.log?.warn({ err: err.cause ?? err }, "the change feed could not read the change log");
          for (const sub of this.subs) sub.fail(err);
        }
        if (!this.subs.size) break;
        if (!this.again) await this.sleep();
        const gap = started + this.minGapMs - performance.now();
        if (gap > 0) await new Promise((r) => setTimeout(r, gap));
      }
    } finally {
      this.running = false;
    }
  }

  private sleep(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleeper = null;
        resolve();
      };
      const timer = setTimeout(done, this.pollMs);
      this.sleeper = done;
    });
  }
}

async function waitFor(bell: EventEmitter, ms: number, signal: AbortSignal): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  const onAbort = () => ac.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const _ of on(bell, "change", { signal: ac.signal })) break;
  } catch (err) {
    // The timeout or the caller's abort ends the wait; anything else is not ours to hide.
    if (!ac.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}
