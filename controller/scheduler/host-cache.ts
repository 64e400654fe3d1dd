import type { HostState } from "../domain/placement.js";
import type { ResourceRequest } from "../domain/types.js";
import { shuffled } from "./types.js";

/**
 * The scheduler's in-memory view of every host, reloaded through `load`
 * when older than `maxAgeMs` and adjusted locally after each claim, so a
 * placement never scans the hosts table. A stale view costs at most a
 * failed claim (the claim re-checks in MySQL), never a double booking.
 *
 * The controller's loader reads through a pool of its own: placement
 * reloads the view inside its placing transaction, and waiting there for a
 * connection of the main pool (all of them perhaps waiting for the row
 * locks that transaction holds) would stall everything until the lock wait
 * timeout. Its reads see what is committed now, not the placing
 * transaction's snapshot.
 */
export class HostCache {
  /** The hosts in a random order (made at each reload), so that a placement sampling a stretch of them samples at random. */
  private hosts: HostState[] = [];
  /** Where each host is in `hosts`. */
  private index = new Map<string, number>();
  private loadedAt = 0;
  /** Counts reloads: a caller holding uncommitted claims re-applies them when it changes. */
  generation = 0;

  constructor(
    private readonly load: () => Promise<readonly HostState[]>,
    private readonly opts: { maxAgeMs: number },
  ) {}

  /**
   * Current hosts, reloaded when older than maxAgeMs (or when forced). The
   * array is the cache's own, changed by later claims: use it before the
   * next await.
   */
  async get(force = false): Promise<readonly HostState[]> {
    if (force || Date.now() - this.loadedAt > this.opts.maxAgeMs) await this.reload();
    return this.hosts;
  }

  async reload(): Promise<void> {
    const hosts = shuffled(await this.load(), Math.random);
    this.hosts = hosts;
    this.index = new Map(hosts.map((h, i) => [h.host, i]));
    this.loadedAt = Date.now();
    this.generation++;
  }

  /** Marks the view stale (after a release elsewhere, a new host, an enable). */
  invalidate(): void {
    this.loadedAt = 0;
  }

  /** Applies a successful claim to the in-memory view. */
  consume(host: string, r: ResourceRequest): void {
    const i = this.index.get(host);
    const h = i === undefined ? undefined : this.hosts[i];
    if (i === undefined || !h) return;
    this.hosts[i] = {
      ...h,
      vcpusUsed: h.vcpusUsed + r.vcpus,
      memoryMbUsed: h.memoryMbUsed + r.memoryMb,
      diskGbUsed: h.diskGbUsed + r.diskGb,
      runningVms: h.runningVms + 1,
    };
  }
}
