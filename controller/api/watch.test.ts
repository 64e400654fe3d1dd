import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ApiError } from "../errors.js";
import type { Pool } from "../store/db.js";
import { ChangeFeed } from "./watch.js";

/** The change log in memory, answering the reads the feed makes. */
function fakeLog() {
  const rows: { id: number; created_at: Date; snapshot: string }[] = [];
  let reads = 0;
  const pool = {
    async query(sql: string, params: unknown[]) {
      if (sql.startsWith("SELECT id, created_at, snapshot FROM server_changes")) {
        reads++;
        const [after, limit] = params as [number, number];
        return [rows.filter((r) => r.id > after).slice(0, limit)];
      }
      if (sql.startsWith("SELECT n FROM change_counter")) return [[{ n: rows.length }]];
      // The servers' interfaces, read with each batch: these servers have none.
      if (/FROM ports p WHERE p.device_id IN/.test(sql)) return [[]];
      throw new Error(`unexpected query ${sql}`);
    },
  } as unknown as Pool;
  const append = (project = "p", uuid = `s${rows.length + 1}`) =>
    rows.push({ id: rows.length + 1, created_at: new Date(), snapshot: JSON.stringify({ uuid, projectId: project, createdAt: new Date(), updatedAt: new Date() }) });
  return { pool, append, reads: () => reads, count: () => rows.length };
}

test("a watch resuming behind the feed reads up to it by itself, then takes the feed's: every change once, in order", async () => {
  const log = fakeLog();
  for (let i = 0; i < 10; i++) log.append();
  const feed = new ChangeFeed(log.pool, { pollMs: 10_000, batch: 3 });
  const ac = new AbortController();
  const got: number[] = [];
  const it = feed.watch({ afterIndex: 2, signal: ac.signal });
  for await (const c of it) {
    got.push(c.index);
    // Changes keep coming while it catches up.
    if (log.count() < 20) {
      log.append();
      feed.notify();
    }
    if (c.index === 20) break;
  }
  ac.abort();
  assert.deepEqual(got, Array.from({ length: 18 }, (_, i) => i + 3));
  assert.equal(feed.watches, 0, "a finished watch leaves the feed");
});

test("one read serves every watch; each keeps its project's changes", async () => {
  const log = fakeLog();
  const feed = new ChangeFeed(log.pool, { pollMs: 10_000 });
  const ac = new AbortController();
  const watches = ["a", "b", "a", "b"].map((project) => ({ project, it: feed.watch({ projectId: project, signal: ac.signal }), got: [] as string[] }));
  const firsts = watches.map((w) => w.it.next().then((r) => w.got.push((r.value as { instance: { projectId: string } }).instance.projectId)));
  await new Promise((r) => setTimeout(r, 20));
  const before = log.reads();
  log.append("a");
  log.append("b");
  feed.notify();
  await Promise.all(firsts);
  assert.deepEqual(watches.map((w) => w.got), [["a"], ["b"], ["a"], ["b"]]);
  assert.ok(log.reads() - before <= 2, `${log.reads() - before} reads for 4 watches`);
  ac.abort();
  await Promise.all(watches.map((w) => w.it.return(undefined)));
});

test("a watch with more changes waiting than its buffer is ended with ABORTED and the index to resume after", async () => {
  const log = fakeLog();
  const feed = new ChangeFeed(log.pool, { pollMs: 10_000, buffer: 2 });
  const ac = new AbortController();
  let failure: ApiError | undefined;
  const it = feed.watch({ afterIndex: 0, signal: ac.signal, onFailure: (err) => (failure = err) });
  const first = it.next();
  log.append();
  feed.notify();
  assert.equal((await first).value?.index, 1);
  // The client takes nothing more while five changes arrive.
  for (let i = 0; i < 5; i++) log.append();
  feed.notify();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(failure?.code, status.ABORTED);
  assert.equal(failure?.reason, "WATCH_FELL_BEHIND");
  assert.equal(failure?.metadata.resume_after_index, "1");
  await assert.rejects(it.next(), (err: ApiError) => err.code === status.ABORTED);
  assert.equal(feed.watches, 0);
});

test("commits coming faster than the feed's gap are read together, and every change still reaches the watch once", async () => {
  const log = fakeLog();
  const feed = new ChangeFeed(log.pool, { pollMs: 10_000, minGapMs: 50 });
  const ac = new AbortController();
  const it = feed.watch({ signal: ac.signal });
  const got: number[] = [];
  const all = (async () => {
    for await (const c of it) {
      got.push(c.index);
      if (c.index === 40) break;
    }
  })();
  await new Promise((r) => setTimeout(r, 20));
  const before = log.reads();
  const started = performance.now();
  // 40 commits, each announced at once, over about 200 ms.
  for (let i = 0; i < 40; i++) {
    log.append();
    feed.notify();
    await new Promise((r) => setTimeout(r, 5));
  }
  await all;
  const elapsed = performance.now() - started;
  assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => i + 1));
  // One read per 50 ms at most (and the one the first commit woke), not one per commit.
  assert.ok(log.reads() - before <= Math.ceil(elapsed / 50) + 2, `${log.reads() - before} reads in ${elapsed.toFixed(0)} ms`);
  ac.abort();
});
