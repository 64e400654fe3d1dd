import { EventEmitter, on } from "node:events";
import type { Pool } from "../store/db.js";
import type { ChangeRecord } from "../store/instances.js";
import { lastChangeIndex, listChanges } from "../store/instances.js";

/**
 * Tails the server change log for WatchServers. A commit in this process
 * wakes watchers at once; changes committed by other controllers are found
 * by polling. Resuming from an index replays everything after it.
 */
export class ServerWatcher {
  private readonly bell = new EventEmitter();

  constructor(
    private readonly pool: Pool,
    private readonly pollMs = 250,
    private readonly gapWaitMs = 2000,
  ) {
    this.bell.setMaxListeners(0);
  }

  notify(): void {
    this.bell.emit("change");
  }

  async *watch(f: { afterIndex: number; projectId?: string; instanceUuid?: string; signal: AbortSignal }): AsyncGenerator<ChangeRecord> {
    let after = f.afterIndex > 0 ? f.afterIndex : await lastChangeIndex(this.pool);
    while (!f.signal.aborted) {
      // The raw log is read in order (gaps are only visible there) and
      // filtered here.
      const batch = await listChanges(this.pool, { afterIndex: after, limit: 500 });
      let gap = false;
      for (const c of batch) {
        // Ids are allocated at insert but become visible at commit, so a gap
        // may be a transaction still committing: wait for it a little while
        // (a rolled-back insert leaves a gap forever; it is passed after gapWaitMs).
        if (c.index !== after + 1 && Date.now() - c.time.getTime() < this.gapWaitMs) {
          gap = true;
          break;
        }
        after = c.index;
        if (f.projectId !== undefined && c.instance.projectId !== f.projectId) continue;
        if (f.instanceUuid !== undefined && c.instance.uuid !== f.instanceUuid) continue;
        yield c;
      }
      if (batch.length === 500 && !gap) continue;
      await this.waitForChange(f.signal, gap ? 50 : this.pollMs);
    }
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
