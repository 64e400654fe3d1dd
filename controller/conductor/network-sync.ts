/**
 * Keeps each connected host's network as the controller has it: after its
 * hello, and whenever the network's revision moves (a port made, changed or
 * gone, a security rule, a host's tunnel address), the host is sent its
 * tunnel peers and the ports of every instance it has, with their rules
 * and remote groups resolved now. One query per poll finds the revision for
 * every host this controller serves; a host's update is computed at most
 * once per poll, and a change that lands meanwhile is sent at the next.
 */
import type { Logger } from "pino";
import type { Pool } from "../store/db.js";
import { networkRevision, pruneNetworkChanges } from "../store/network-changes.js";
import type { HostNetwork } from "./host-ports.js";
import { hostNetworkOf } from "./host-ports.js";

type Send = (update: HostNetwork) => void;

interface Subscriber {
  readonly host: string;
  readonly send: Send;
  /** The revision last sent; -1 before the first. */
  sent: number;
  busy: boolean;
}

export class NetworkSync {
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private revision = 0;
  private polls = 0;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly pollMs = 2_000,
  ) {}

  /** Sends `host` its network now and after every change, until the returned function is called. */
  subscribe(host: string, send: Send): () => void {
    const s: Subscriber = { host, send, sent: -1, busy: false };
    this.subscribers.add(s);
    this.start();
    void this.refresh(s, this.revision);
    return () => {
      this.subscribers.delete(s);
    };
  }

  private start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async poll(): Promise<void> {
    if (this.subscribers.size === 0) return;
    try {
      this.revision = await networkRevision(this.pool);
      // Old rows go now and then; the latest is the revision.
      if (++this.polls % 150 === 0 && this.revision > 0) await pruneNetworkChanges(this.pool, this.revision);
    } catch (err) {
      this.log.warn({ err }, "reading the network revision failed; hosts' networks are refreshed at the next poll");
      return;
    }
    for (const s of this.subscribers) if (s.sent < this.revision) void this.refresh(s, this.revision);
  }

  private async refresh(s: Subscriber, revision: number): Promise<void> {
    if (s.busy) return;
    s.busy = true;
    try {
      const update = await hostNetworkOf(this.pool, s.host);
      if (!this.subscribers.has(s)) return;
      s.send(update);
      s.sent = Math.max(s.sent, revision);
    } catch (err) {
      this.log.warn({ err, host: s.host }, "computing a host's network failed; it is tried again at the next poll");
    } finally {
      s.busy = false;
    }
  }
}
