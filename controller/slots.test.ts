import assert from "node:assert/strict";
import { test } from "node:test";
import { Slots } from "./slots.js";

test("at most `limit` run; waiters start in order as slots free; a waiter whose signal aborts never runs", async () => {
  const slots = new Slots(2);
  const started: number[] = [];
  const releases = new Map<number, () => void>();
  const job = (n: number, signal?: AbortSignal) =>
    slots.run(
      () =>
        new Promise<number>((resolve) => {
          started.push(n);
          releases.set(n, () => resolve(n));
        }),
      signal,
      () => new Error(`job ${n} left the line`),
    );
  const ac = new AbortController();
  const jobs = [job(1), job(2), job(3, ac.signal), job(4)];
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [1, 2]);
  assert.deepEqual([slots.active, slots.waiting, slots.full], [2, 2, true]);
  ac.abort();
  await assert.rejects(jobs[2]!, /job 3 left the line/);
  assert.equal(slots.waiting, 1);
  releases.get(1)!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(started, [1, 2, 4], "job 4 took job 1's slot; job 3 never ran");
  releases.get(2)!();
  releases.get(4)!();
  assert.deepEqual(await Promise.all([jobs[0], jobs[1], jobs[3]]), [1, 2, 4]);
  assert.deepEqual([slots.active, slots.waiting, slots.full], [0, 0, false]);
});
