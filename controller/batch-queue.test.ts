import assert from "node:assert/strict";
import { test } from "node:test";
import { BatchQueue } from "./batch-queue.js";

/** A queue whose batches and lone items are recorded, each held until released. */
function recorded(o: { maxBatch: number; maxConcurrent: number; failBatches?: boolean; refuse?: (n: number) => boolean }) {
  const calls: { kind: "together" | "alone"; items: number[] }[] = [];
  const held: (() => void)[] = [];
  const hold = () => new Promise<void>((r) => held.push(r));
  const q = new BatchQueue<number, string>({
    ...o,
    together: async (items) => {
      calls.push({ kind: "together", items });
      await hold();
      if (o.failBatches) throw new Error("the batch failed");
      return items.map((n) => (o.refuse?.(n) ? { status: "rejected", reason: new Error(`refused ${n}`) } : { status: "fulfilled", value: `done ${n}` }));
    },
    alone: async (n) => {
      calls.push({ kind: "alone", items: [n] });
      await hold();
      if (o.refuse?.(n)) throw new Error(`refused ${n}`);
      return `done ${n}`;
    },
  });
  const releaseAll = async () => {
    while (held.length) {
      held.splice(0).forEach((r) => r());
      await new Promise((r) => setImmediate(r));
    }
  };
  return { q, calls, held, releaseAll };
}

const tick = () => new Promise((r) => setImmediate(r));

test("an item that comes alone goes at once; items that come while it runs go together next", async () => {
  const { q, calls, releaseAll } = recorded({ maxBatch: 64, maxConcurrent: 1 });
  const first = q.add(1);
  await tick();
  assert.deepEqual(calls, [{ kind: "alone", items: [1] }], "no wait for company");
  const rest = [2, 3, 4].map((n) => q.add(n));
  await tick();
  assert.equal(calls.length, 1, "the others wait while the first runs");
  await releaseAll();
  assert.deepEqual(await Promise.all([first, ...rest]), ["done 1", "done 2", "done 3", "done 4"]);
  assert.deepEqual(calls[1], { kind: "together", items: [2, 3, 4] });
});

test("batches hold at most maxBatch items, and at most maxConcurrent run at once", async () => {
  const { q, calls, held, releaseAll } = recorded({ maxBatch: 3, maxConcurrent: 2 });
  const all = Array.from({ length: 10 }, (_, i) => q.add(i));
  await tick();
  assert.equal(held.length, 2, "two run");
  // The first two found a free slot, so went at once, alone.
  assert.deepEqual(calls.map((c) => c.items), [[0], [1]]);
  await releaseAll();
  assert.equal((await Promise.all(all)).length, 10);
  assert.ok(calls.every((c) => c.items.length <= 3));
  assert.deepEqual(calls.flatMap((c) => c.items).sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i), "each item once");
});

test("an item refused in a batch is refused alone; the others succeed", async () => {
  const { q, releaseAll } = recorded({ maxBatch: 64, maxConcurrent: 1, refuse: (n) => n === 3 });
  const first = q.add(0);
  await tick();
  const rest = [1, 2, 3, 4].map((n) => q.add(n).catch((e: Error) => e.message));
  await releaseAll();
  assert.equal(await first, "done 0");
  assert.deepEqual(await Promise.all(rest), ["done 1", "done 2", "refused 3", "done 4"]);
});

test("a batch that fails as a whole is handled again item by item, each with its own outcome", async () => {
  const failures: number[] = [];
  const { q, calls, releaseAll } = recorded({ maxBatch: 64, maxConcurrent: 1, failBatches: true, refuse: (n) => n === 2 });
  (q as unknown as { o: { onBatchFailed: (e: unknown, n: number) => void } }).o.onBatchFailed = (_e, n) => failures.push(n);
  const first = q.add(0);
  await tick();
  const rest = [1, 2, 3].map((n) => q.add(n).catch((e: Error) => e.message));
  await releaseAll();
  assert.equal(await first, "done 0");
  assert.deepEqual(await Promise.all(rest), ["done 1", "refused 2", "done 3"]);
  assert.deepEqual(failures, [3]);
  assert.deepEqual(
    calls.slice(1).map((c) => `${c.kind} ${c.items.join(",")}`),
    ["together 1,2,3", "alone 1", "alone 2", "alone 3"],
  );
});

test("items with one key never share a batch: the later waits for the next, in order", async () => {
  const calls: number[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const q = new BatchQueue<number, number>({
    maxBatch: 64,
    maxConcurrent: 1,
    keyOf: (n) => String(n % 10),
    together: async (items) => {
      calls.push(items);
      return items.map((n) => ({ status: "fulfilled", value: n }));
    },
    alone: async (n) => {
      calls.push([n]);
      await gate;
      return n;
    },
  });
  const all = [100, 1, 11, 2, 21, 3].map((n) => q.add(n));
  await tick();
  release();
  assert.deepEqual(await Promise.all(all), [100, 1, 11, 2, 21, 3]);
  // 1, 11 and 21 share key 1: one per batch, in the order they came; 2 and 3 go with the first.
  assert.deepEqual(calls, [[100], [1, 2, 3], [11], [21]]);
});

test("the items of a failed batch are handled alone, at most aloneConcurrency at a time", async () => {
  let running = 0;
  let most = 0;
  const q = new BatchQueue<number, number>({
    maxBatch: 64,
    maxConcurrent: 1,
    aloneConcurrency: 3,
    together: async () => {
      throw new Error("the batch failed");
    },
    alone: async (n) => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 2));
      running--;
      return n;
    },
    onBatchFailed: () => {
      throw new Error("a listener that throws changes nothing");
    },
  });
  const all = Array.from({ length: 20 }, (_, i) => q.add(i));
  assert.deepEqual(await Promise.all(all), Array.from({ length: 20 }, (_, i) => i));
  assert.equal(most, 3, `${most} at once`);
});
