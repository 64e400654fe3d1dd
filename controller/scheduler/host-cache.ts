import type { ComputeNode, ResourceRequest } from "../domain/types.js";
import type { Pool } from "../store/db.js";
import { listNodes } from "../store/nodes.js";
import { aggregatesByHost } from "../store/aggregates.js";
import type { AggregateView, HostState } from "./types.js";
import { isUp } from "../domain/service.js";

/**
 * The scheduler's in-memory view of every host, refreshed from the database
 * periodically and adjusted locally after each claim, so a placement never
 * scans the hosts table. A stale view costs at most a failed claim (the
 * claim re-checks in MySQL), never a double booking.
 *
 * It reads through a pool of its own: the scheduler reloads it inside its
 * placing transaction, and waiting there for a connection of the main pool
 * (all of them perhaps waiting for the row locks that transaction holds)
 * would stall everything until the lock wait timeout. Its reads see what is
 * committed now, not the placing transaction's snapshot.
 */
export class HostCache {
  private hosts = new Map<string, HostState>();
  private loadedAt = 0;
  /** Counts reloads: a caller holding uncommitted claims re-applies them when it changes. */
  generation = 0;

  constructor(
    private readonly pool: Pool,
    private readonly opts: { serviceDownTimeSeconds: number; maxAgeMs: number },
  ) {}

  static toState(n: ComputeNode, downTimeSeconds: number, now = Date.now(), aggregates: readonly AggregateView[] = []): HostState {
    return { ...n, up: isUp(n, downTimeSeconds, now), aggregates };
  }

  /** Current hosts, reloaded when older than maxAgeMs (or when forced). */
  async get(force = false): Promise<Iterable<HostState>> {
    if (force || Date.now() - this.loadedAt > this.opts.maxAgeMs) await this.reload();
    return this.hosts.values();
  }

  async reload(): Promise<void> {
    const [nodes, aggregates] = await Promise.all([listNodes(this.pool), aggregatesByHost(this.pool)]);
    const now = Date.now();
    this.hosts = new Map(
      nodes.map((n) => [n.host, HostCache.toState(n, this.opts.serviceDownTimeSeconds, now, aggregates.get(n.host) ?? [])]),
    );
    this.loadedAt = now;
    this.generation++;
  }

  /** Marks the view stale (after a release elsewhere, a new host, an enable). */
  invalidate(): void {
    this.loadedAt = 0;
  }

  /** Applies a successful claim to the in-memory view. */
  consume(host: string, r: ResourceRequest): void {
    const h = this.hosts.get(host);
    if (!h) return;
    this.hosts.set(host, {
      ...h,
      vcpusUsed: h.vcpusUsed + r.vcpus,
      memoryMbUsed: h.memoryMbUsed + r.memoryMb,
      diskGbUsed: h.diskGbUsed + r.diskGb,
      runningVms: h.runningVms + 1,
    });
  }
}
