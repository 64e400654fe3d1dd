/**
 * Long calls (WatchServers, agent streams) authenticate once, when they open.
 * TokenWatch checks the tokens of all of them again in one query every few
 * seconds and ends those whose token was deleted or expired, as a new call
 * with it would be refused: one read per interval per controller, however
 * many streams are open.
 */
import type { Logger } from "pino";
import { unauthenticated, type ApiError } from "../errors.js";
import type { Pool } from "../store/db.js";
import { liveTokenIds } from "../store/tokens.js";

export class TokenWatch {
  private readonly held = new Map<string, Set<(err: ApiError) => void>>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly intervalMs = 5_000,
  ) {}

  /**
   * Calls `end` (once) when token `tokenId` is deleted or expires while the
   * returned release has not been called.
   */
  hold(tokenId: string, end: (err: ApiError) => void): () => void {
    let ends = this.held.get(tokenId);
    if (!ends) this.held.set(tokenId, (ends = new Set()));
    ends.add(end);
    this.timer ??= setInterval(() => void this.check(), this.intervalMs).unref();
    return () => {
      ends.delete(end);
      if (!ends.size && this.held.get(tokenId) === ends) this.held.delete(tokenId);
      if (!this.held.size) this.stop();
    };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private async check(): Promise<void> {
    const ids = [...this.held.keys()];
    let live: Set<string>;
    try {
      live = await liveTokenIds(this.pool, ids);
    } catch (err) {
      // The next round tries again; open streams go on meanwhile.
      this.log.warn({ err }, "could not check the tokens of open streams; trying again");
      return;
    }
    for (const id of ids) {
      if (live.has(id)) continue;
      const ends = this.held.get(id);
      this.held.delete(id);
      for (const end of ends ?? []) end(unauthenticated("the token was deleted or expired"));
    }
    if (!this.held.size) this.stop();
  }
}
