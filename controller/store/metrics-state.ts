/** What a metrics scrape reads from the database: the outbox and the hosts' reports. */
import { isUp } from "../domain/service.js";
import type { Queryable } from "./db.js";
import { listNodes } from "./nodes.js";
import { outboxStats } from "./ops.js";

export async function scrapedState(q: Queryable, serviceDownTimeSeconds: number) {
  const [outbox, nodes] = await Promise.all([outboxStats(q), listNodes(q)]);
  const now = Date.now();
  return {
    outboxDepth: outbox.depth,
    outboxOldestSeconds: outbox.oldestSeconds,
    hosts: nodes.map((n) => ({
      host: n.host,
      reportAgeSeconds: n.lastSeenAt ? Math.max(0, (now - n.lastSeenAt.getTime()) / 1000) : null,
      up: isUp(n, serviceDownTimeSeconds, now),
      enabled: n.enabled,
    })),
  };
}
