/**
 * Keeps each connected host's network as the controller has it: after its
 * hello, and whenever a change concerns it, the host is sent its tunnel
 * peers and the ports of every instance it has, with their rules and remote
 * groups resolved now.
 *
 * Each poll reads the `network_changes` rows past the last it read (one
 * query for every host this controller serves) and works out the hosts
 * they concern: those whose last update was made of what a row touched (a
 * port, server, network, group's rules or remote group's members; kept per
 * host from the computation), and those whose network, as the tables are
 * now, holds it (store hostsConcerned: a port attached, a rule or a member
 * that is new to the host). A tunnel address concerns every host. Only
 * those are computed again. A host's update is computed at most once at a
 * time; a change read meanwhile is checked against what the new update was
 * made of, and sent at the next poll when it concerns it.
 *
 * Rows are read by id, and ids are not committed in order: an id below the
 * highest read that is missing is read again at each poll for a while
 * ({@link GAP_MS}). A controller whose next row was pruned (it lagged
 * longer than {@link RETENTION_S}), and the first poll after start,
 * compute and send every host's network again.
 */
import type { Logger } from "pino";
import type { Pool } from "../store/db.js";
import type { NetworkChange } from "../store/network-changes.js";
import { hostsConcerned, networkChangeIds, networkChangesSince, networkRevision, pruneNetworkChanges } from "../store/network-changes.js";
import type { HostNetwork, HostNetworkSources } from "./host-ports.js";
import { hostNetworkOf } from "./host-ports.js";

type Send = (update: HostNetwork) => void;

/** How long an id missing below the highest read is looked for again (a transaction that inserted it may not have committed yet). */
export const GAP_MS = 120_000;
/** How old rows are before they are pruned (other controllers must have read them). */
export const RETENTION_S = 600;
/** Rows read per poll at most; more wait for the next one. */
const BATCH = 5_000;
/** Missing ids looked for at most. */
const MAX_GAPS = 10_000;

interface Subscriber {
  readonly host: string;
  readonly send: Send;
  /** What its last update was made of; null before the first. */
  sources: HostNetworkSources | null;
  /** A change concerns it that it has not been sent. */
  dirty: boolean;
  busy: boolean;
  /** What the changes read while its update was computed touched. */
  readWhileBusy: TouchedSets[];
}

/** Counters, for tests and logs. */
export interface NetworkSyncStats {
  /** Host networks computed (and sent). */
  hostsComputed: number;
  /** Reads of the change log. */
  polls: number;
}

/** What a poll's rows touched, by kind; `all` when one concerns every host (a tunnel address, a row that names nothing). */
interface TouchedSets {
  readonly all: boolean;
  readonly ports: ReadonlySet<string>;
  readonly servers: ReadonlySet<string>;
  readonly rules: ReadonlySet<string>;
  readonly members: ReadonlySet<string>;
  readonly networks: ReadonlySet<string>;
}

function touchedBy(changes: readonly NetworkChange[]): TouchedSets {
  const of = (kind: string) => new Set(changes.filter((c) => c.kind === kind).map((c) => c.ref));
  const named = ["port", "server", "rules", "members", "network"];
  return {
    all: changes.some((c) => !named.includes(c.kind)),
    ports: of("port"),
    servers: of("server"),
    rules: of("rules"),
    members: of("members"),
    networks: of("network"),
  };
}

/** Whether two sets share an element (walking the smaller). */
function meet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const x of small) if (large.has(x)) return true;
  return false;
}

/** Whether `t` touched something `s` was made of (or every host). */
function concerns(t: TouchedSets, s: HostNetworkSources): boolean {
  return t.all || meet(t.ports, s.ports) || meet(t.servers, s.servers) || meet(t.rules, s.groups) || meet(t.members, s.remoteGroups) || meet(t.networks, s.networks);
}

/** The rows of one poll, and whether every host must be sent its full network. */
interface Read {
  readonly changes: NetworkChange[];
  readonly everyHost: boolean;
}

/** Reads the log past the last row read, rows that were missing below it included. */
class ChangeCursor {
  private last: number | null = null;
  /** Ids missing below `last`, with when they were first missed. */
  private readonly gaps = new Map<number, number>();

  async read(pool: Pool): Promise<Read> {
    const now = Date.now();
    if (this.last === null) {
      const last = await networkRevision(pool);
      // Rows below it that are not there yet may be uncommitted: look for them again.
      const there = new Set(await networkChangeIds(pool, Math.max(1, last - 255), last, 256));
      for (let id = Math.max(1, last - 255); id <= last; id++) if (!there.has(id)) this.gaps.set(id, now);
      this.last = last;
      return { changes: [], everyHost: true };
    }
    for (const [id, since] of this.gaps) if (now - since > GAP_MS) this.gaps.delete(id);
    const { changes, oldest } = await networkChangesSince(pool, this.last, [...this.gaps.keys()], BATCH);
    // The next row after the last read was pruned before this controller read it.
    const pruned = oldest !== null && oldest > this.last + 1;
    let next = this.last + 1;
    for (const c of changes) {
      this.gaps.delete(c.id);
      if (c.id < next) continue;
      // Ids skipped (a rollback, a larger increment) are looked for a while; at most the 1,000 below each row.
      for (let id = Math.max(next, c.id - 1_000); id < c.id; id++) this.gaps.set(id, now);
      next = c.id + 1;
    }
    this.last = next - 1;
    // The oldest go first when there are too many to look for.
    for (const id of this.gaps.keys()) {
      if (this.gaps.size <= MAX_GAPS) break;
      this.gaps.delete(id);
    }
    return { changes, everyHost: pruned };
  }
}

export class NetworkSync {
  readonly stats: NetworkSyncStats = { hostsComputed: 0, polls: 0 };
  private readonly subscribers = new Set<Subscriber>();
  private readonly cursor = new ChangeCursor();
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly pollMs = 2_000,
  ) {}

  /** Sends `host` its network now and after every change that concerns it, until the returned function is called. */
  subscribe(host: string, send: Send): () => void {
    const s: Subscriber = { host, send, sources: null, dirty: true, busy: false, readWhileBusy: [] };
    this.subscribers.add(s);
    this.start();
    void this.refresh(s);
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

  /**
   * Reads the changes since the last poll and computes again the hosts they
   * concern (and those a failure or a change read meanwhile left due).
   * Resolves when those are sent. Runs on a timer; exposed for tests.
   */
  async poll(): Promise<void> {
    if (this.subscribers.size === 0 || this.polling) return;
    this.polling = true;
    try {
      await this.mark();
    } finally {
      this.polling = false;
    }
    await Promise.all([...this.subscribers].filter((s) => s.dirty && !s.busy).map((s) => this.refresh(s)));
  }

  /** Whether a host is being computed or due to be (for tests). */
  due(): boolean {
    return [...this.subscribers].some((s) => s.dirty || s.busy);
  }

  /** Marks the hosts the new changes concern (all when the cursor says so). */
  private async mark(): Promise<void> {
    let read: Read;
    let t: TouchedSets;
    let now: Set<string>;
    try {
      read = await this.cursor.read(this.pool);
      if (read.changes.length === 0 && !read.everyHost) return this.prune();
      t = touchedBy(read.changes);
      now = await hostsConcerned(this.pool, { ports: [...t.ports], servers: [...t.servers], rules: [...t.rules], members: [...t.members], networks: [...t.networks] });
    } catch (err) {
      // The cursor may have moved past changes whose hosts are unknown now:
      // every host is computed again, so none misses one.
      this.log.warn({ err }, "reading the network's changes failed; every host is computed again");
      for (const s of this.subscribers) {
        s.dirty = true;
        s.sources = null;
      }
      return;
    }
    for (const s of this.subscribers) {
      if (s.busy) s.readWhileBusy.push(t);
      if (read.everyHost || now.has(s.host) || s.sources === null || concerns(t, s.sources)) s.dirty = true;
    }
    await this.prune();
  }

  /** Removes old change rows now and then; a failure only delays it. */
  private async prune(): Promise<void> {
    if (++this.stats.polls % 150 !== 0) return;
    try {
      await pruneNetworkChanges(this.pool, RETENTION_S);
    } catch (err) {
      this.log.warn({ err }, "pruning old network changes failed; tried again later");
    }
  }

  private async refresh(s: Subscriber): Promise<void> {
    if (s.busy) return;
    s.busy = true;
    s.dirty = false;
    s.readWhileBusy = [];
    try {
      const { sources, ...update } = await hostNetworkOf(this.pool, s.host);
      this.stats.hostsComputed++;
      if (!this.subscribers.has(s)) return;
      s.send(update);
      s.sources = sources;
      // A change read while this was computed may not be in it.
      if (s.readWhileBusy.some((t) => concerns(t, sources))) s.dirty = true;
    } catch (err) {
      s.dirty = true;
      this.log.warn({ err, host: s.host }, "computing a host's network failed; it is tried again at the next poll");
    } finally {
      s.busy = false;
      s.readWhileBusy = [];
    }
  }
}
