import { EventEmitter, on } from "node:events";
import type { Pool } from "../store/db.js";
import type { ChangeRecord } from "../store/changes.js";
import { lastChangeIndex, listChanges } from "../store/changes.js";

/**
 * Tails the server change log for WatchServers. A commit in this process
 * wakes watchers at once; changes committed by other controllers are found
 * by polling. Indexes become visible strictly in order (store/changes.ts),
 * so resuming after an index replays everything after it exactly once.
 */
export class ServerWatcher {
  private readonly bell = new EventEmitter();

  constructor(
    private readonly pool: Pool,
    private readonly pollMs = 250,
  ) {
    this.bell.setMaxListeners(0);
  }

  notify(): void {
    this.bell.emit("change");
  }

  /** Changes after `afterIndex` (undefined: from now on) that match the filters, until `signal`. */
  async *watch(f: { afterIndex?: number; projectId?: string; instanceUuid?: string; signal: AbortSignal }): AsyncGenerator<ChangeRecord> {
    let after = f.afterIndex ?? (await lastChangeIndex(this.pool));
    while (!f.signal.aborted) {
      const batch = await listChanges(this.pool, { afterIndex: after, limit: 500 });
      for (const c of batch) {
        after = c.index;
        if (f.projectId !== undefined && c.instance.projectId !== f.projectId) continue;
        if (f.instanceUuid !== undefined && c.instance.uuid !== f.instanceUuid) continue;
        yield c;
      }
      if (batch.length === 500) continue;
      await this.waitForChange(f.signal);
    }
  }

  /** Resolves at the next local change, after `ms`, or when `signal` aborts. */
  changed(ms: number, signal: AbortSignal): Promise<void> {
    return this.waitForChange(signal, ms);
  }

  private async waitForChange(signal: AbortSignal, ms = this.pollMs): Promise<void> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), ms);
    const onAbort = () => ac.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const _ of on(this.bell, "change", { signal: ac.signal })) break;
    } catch {
      // timeout or caller gone
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }
}
