import assert from "node:assert/strict";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ApiError } from "../errors.js";
import { Admission } from "./admission.js";

test("at most `concurrency` run; the queue holds the rest; beyond it, UNAVAILABLE with a spread retry delay", async () => {
  const gate = new Admission({ concurrency: 2, maxQueued: 3, what: "agent hellos", retryMinMs: 1000, retryMaxMs: 5000, random: () => 0.5 });
  let running = 0;
  let most = 0;
  const releases: Array<() => void> = [];
  const job = () =>
    gate.run(async () => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((r) => releases.push(r));
      running--;
      return "done";
    });
  const admitted = Array.from({ length: 5 }, job);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(gate.stats, { running: 2, waiting: 3, refused: 0 });
  const refused = await job().then(
    () => assert.fail("a sixth job was admitted"),
    (e: unknown) => e,
  );
  assert.ok(refused instanceof ApiError);
  assert.equal(refused.code, status.UNAVAILABLE);
  assert.equal(refused.reason, "CONTROLLER_BUSY");
  assert.equal(refused.retryDelayMs, 3000);
  // Release one at a time: each frees a slot for exactly one waiter.
  while (releases.length || gate.stats.running) {
    releases.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(await Promise.all(admitted), ["done", "done", "done", "done", "done"]);
  assert.equal(most, 2);
  assert.deepEqual(gate.stats, { running: 0, waiting: 0, refused: 1 });
});

test("a job that throws frees its slot", async () => {
  const gate = new Admission({ concurrency: 1, maxQueued: 0, what: "x", retryMinMs: 1, retryMaxMs: 2 });
  await assert.rejects(gate.run(async () => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await gate.run(async () => 7), 7);
});

test("a caller that goes away while waiting leaves the queue and never runs", async () => {
  const gate = new Admission({ concurrency: 1, maxQueued: 5, what: "agent hellos", retryMinMs: 1, retryMaxMs: 2 });
  let release!: () => void;
  const first = gate.run(() => new Promise<void>((r) => (release = r)));
  const ac = new AbortController();
  let ran = false;
  const waiting = gate.run(async () => {
    ran = true;
  }, ac.signal);
  await new Promise((r) => setImmediate(r));
  assert.equal(gate.stats.waiting, 1);
  ac.abort();
  await assert.rejects(waiting, (e: unknown) => e instanceof ApiError && e.code === status.CANCELLED);
  assert.equal(gate.stats.waiting, 0);
  release();
  await first;
  assert.equal(ran, false);
  assert.deepEqual(gate.stats, { running: 0, waiting: 0, refused: 0 });
  await assert.rejects(gate.run(async () => 1, ac.signal), (e: unknown) => e instanceof ApiError && e.code === status.CANCELLED);
});
