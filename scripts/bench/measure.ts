/**
 * What the benchmark does to a cloud and how it times it: servers followed
 * through WatchServers (their ACTIVE and DELETED times are the commit times
 * the feed carries), creates one at a time and in bursts, deletes, reads,
 * and idle reporting.
 */
import type { ClientReadableStream, ServiceError } from "@grpc/grpc-js";
import { ServerStatus } from "../../gen/novamesh/compute/v1/server.js";
import type { WatchServersResponse } from "../../gen/novamesh/compute/v1/server.js";
import { ServiceState } from "../../gen/novamesh/compute/v1/host.js";
import type { Clients } from "../../test/clients.js";

/** The p-th percentile (0-100) of `xs`, nearest rank; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (!xs.length) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export interface Latency {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function latency(xs: readonly number[]): Latency {
  return { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.length ? Math.max(...xs) : NaN };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows every server's changes: when each became ACTIVE, ended in ERROR, or was deleted. */
export class Tracker {
  readonly active = new Map<string, number>();
  readonly failed = new Set<string>();
  readonly deleted = new Map<string, number>();
  private stream: ClientReadableStream<WatchServersResponse> | null = null;
  private streamError: Error | null = null;

  constructor(private readonly c: Clients) {}

  private lastIndex = 0;
  private stopped = false;

  /** Follows the feed from now on (or, resuming, after the last index received). */
  start(): void {
    const stream = this.c.servers.raw.watchServers({ afterIndex: this.lastIndex, serverId: "", allProjects: true, sendInitialState: false }, this.c.servers.metadata());
    this.stream = stream;
    stream.on("data", (ev: WatchServersResponse) => {
      this.lastIndex = Math.max(this.lastIndex, Number(ev.index));
      const s = ev.server;
      if (!s) return;
      const at = ev.time?.getTime() ?? Date.now();
      if (s.status === ServerStatus.SERVER_STATUS_ACTIVE && !this.active.has(s.id)) this.active.set(s.id, at);
      else if (s.status === ServerStatus.SERVER_STATUS_ERROR) this.failed.add(s.id);
      else if (s.status === ServerStatus.SERVER_STATUS_DELETED) this.deleted.set(s.id, at);
    });
    stream.on("error", (err: ServiceError) => {
      if (this.stopped) return; // cancelled by stop()
      // A watcher that fell too far behind (the benchmark's own client, on a busy machine) resumes where it was.
      if (err.code === 10 && this.lastIndex > 0) return this.start();
      this.streamError = err;
    });
  }

  stop(): void {
    this.stopped = true;
    this.stream?.cancel();
  }

  /** Waits until every id is settled (`done` says when), the feed fails, or `timeoutMs` passes; returns those still waiting. */
  async waitFor(ids: readonly string[], done: (id: string) => boolean, timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    let left = ids.filter((id) => !done(id));
    while (left.length && Date.now() < deadline) {
      if (this.streamError) throw new Error(`WatchServers failed: ${this.streamError.message}`);
      await sleep(20);
      left = left.filter((id) => !done(id));
    }
    return left;
  }

  settled = (id: string) => this.active.has(id) || this.failed.has(id);
  gone = (id: string) => this.deleted.has(id);
}

/** Runs `n` calls of `call(i)`, `inFlight` at a time; returns each call's milliseconds and the errors by gRPC code. */
export async function pool<T>(n: number, inFlight: number, call: (i: number) => Promise<T>, onDone?: (i: number, res: T, startedAt: number) => void): Promise<{ ms: number[]; errors: Record<string, number>; elapsedMs: number }> {
  const ms: number[] = [];
  const errors: Record<string, number> = {};
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const startedAt = Date.now();
      const s = performance.now();
      try {
        const res = await call(i);
        ms.push(performance.now() - s);
        onDone?.(i, res, startedAt);
      } catch (err) {
        const code = String((err as ServiceError).code ?? (err as Error).message);
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(inFlight, n) }, worker));
  return { ms, errors, elapsedMs: performance.now() - t0 };
}

export interface Boot {
  readonly flavorId: string;
  readonly imageId: string;
}

export interface BurstResult {
  readonly requested: number;
  readonly accepted: number;
  readonly active: number;
  readonly failed: number;
  readonly stuck: number;
  readonly errors: Record<string, number>;
  readonly acceptedPerSecond: number;
  readonly activePerSecond: number;
  readonly createMs: Latency;
  readonly toActiveMs: Latency;
  readonly ids: string[];
}

/** `n` creates, `inFlight` at a time, spread over the projects of `cs`, then the wait for all of them to settle. */
export async function burst(cs: readonly Clients[], tracker: Tracker, boot: Boot, n: number, inFlight: number, name: string): Promise<BurstResult> {
  const started = new Map<string, number>();
  const t0 = Date.now();
  const res = await pool(
    n,
    inFlight,
    (i) => cs[i % cs.length]!.servers.createServer({ name: `${name}-${i}`, flavorId: boot.flavorId, imageId: boot.imageId }),
    (_i, r, at) => started.set(r.server!.id, at),
  );
  const ids = [...started.keys()];
  const stuck = await tracker.waitFor(ids, tracker.settled, 60_000 + n * 200);
  const active = ids.filter((id) => tracker.active.has(id));
  const lastActive = Math.max(t0, ...active.map((id) => tracker.active.get(id)!));
  return {
    requested: n,
    accepted: ids.length,
    active: active.length,
    failed: ids.filter((id) => tracker.failed.has(id)).length,
    stuck: stuck.length,
    errors: res.errors,
    acceptedPerSecond: ids.length / (res.elapsedMs / 1000),
    activePerSecond: active.length / (Math.max(1, lastActive - t0) / 1000),
    createMs: latency(res.ms),
    toActiveMs: latency(active.map((id) => tracker.active.get(id)! - started.get(id)!)),
    ids,
  };
}

/** Creates one at a time, each waited for until ACTIVE: create→ACTIVE per server. */
export async function serial(c: Clients, tracker: Tracker, boot: Boot, n: number): Promise<{ toActiveMs: Latency; ids: string[] }> {
  const times: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const at = Date.now();
    const s = (await c.servers.createServer({ name: `serial-${i}`, flavorId: boot.flavorId, imageId: boot.imageId })).server!;
    ids.push(s.id);
    const left = await tracker.waitFor([s.id], tracker.settled, 30_000);
    if (left.length || !tracker.active.has(s.id)) throw new Error(`server ${s.id} did not become ACTIVE one at a time`);
    times.push(tracker.active.get(s.id)! - at);
  }
  return { toActiveMs: latency(times), ids };
}

/** Deletes `ids`, `inFlight` at a time; servers gone per second (until the last DELETED). */
export async function deletes(c: Clients, tracker: Tracker, ids: readonly string[], inFlight: number): Promise<{ perSecond: number; deleteMs: Latency; stuck: number; errors: Record<string, number> }> {
  const t0 = Date.now();
  const res = await pool(ids.length, inFlight, (i) => c.servers.deleteServer({ id: ids[i]! }));
  const stuck = await tracker.waitFor(ids, tracker.gone, 60_000 + ids.length * 100);
  const last = Math.max(t0, ...ids.map((id) => tracker.deleted.get(id) ?? t0));
  return { perSecond: (ids.length - stuck.length) / (Math.max(1, last - t0) / 1000), deleteMs: latency(res.ms), stuck: stuck.length, errors: res.errors };
}

/** Read calls, `inFlight` at a time: their latency and rate. */
export async function reads(c: Clients, serverIds: readonly string[], n: number, inFlight: number): Promise<Record<string, { perSecond: number; ms: Latency }>> {
  const calls: Record<string, (i: number) => Promise<unknown>> = {
    ListFlavors: () => c.flavors.listFlavors({}),
    GetServer: (i) => c.servers.getServer({ id: serverIds[i % serverIds.length]! }),
    "ListServers(50)": () => c.servers.listServers({ pageSize: 50 }),
  };
  const out: Record<string, { perSecond: number; ms: Latency }> = {};
  for (const [name, call] of Object.entries(calls)) {
    const res = await pool(n, inFlight, call);
    out[name] = { perSecond: res.ms.length / (res.elapsedMs / 1000), ms: latency(res.ms) };
  }
  return out;
}

/** Waits until `hosts` services are UP; the seconds it took, or null when `timeoutMs` passed first. */
export async function allUp(c: Clients, hosts: number, timeoutMs: number, alive: () => boolean): Promise<{ seconds: number | null; up: number }> {
  const t0 = Date.now();
  let up = 0;
  while (Date.now() - t0 < timeoutMs) {
    if (!alive()) return { seconds: null, up };
    try {
      const res = await c.hosts.listServices({});
      up = res.services.filter((s) => s.state === ServiceState.SERVICE_STATE_UP).length;
      if (up >= hosts) return { seconds: (Date.now() - t0) / 1000, up };
    } catch {
      // not answering yet (starting) or overloaded: asked again
    }
    await sleep(500);
  }
  return { seconds: null, up };
}

/** ListFlavors one after another every `everyMs` for `seconds`: its latency while the hosts report. */
export async function probeWhileIdle(c: Clients, seconds: number, everyMs = 50): Promise<Latency> {
  const ms: number[] = [];
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const s = performance.now();
    await c.flavors.listFlavors({});
    ms.push(performance.now() - s);
    await sleep(everyMs);
  }
  return latency(ms);
}

/** Samples the controller's event-loop lag (prom-client's per-scrape p99 and max) every second until stopped. */
export function lagSampler(metricsUrl: string): { stop: () => Promise<{ p99MaxMs: number; maxMs: number }> } {
  let p99Max = 0;
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const text = await (await fetch(metricsUrl)).text();
        const value = (name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)`, "m").exec(text)?.[1] ?? 0) * 1000;
        p99Max = Math.max(p99Max, value("nodejs_eventloop_lag_p99_seconds"));
        max = Math.max(max, value("nodejs_eventloop_lag_max_seconds"));
      } catch {
        // a scrape that fails under load is skipped
      }
      await sleep(1000);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { p99MaxMs: p99Max, maxMs: max };
    },
  };
}
