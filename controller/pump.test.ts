import assert from "node:assert/strict";
import { test } from "node:test";
import { Pump } from "./pump.js";

test("kicks during a step coalesce into one more pass, and stop waits for the step in flight", async () => {
  let passes = 0;
  let release!: () => void;
  const pump = new Pump(
    async () => {
      passes++;
      if (passes === 1) await new Promise<void>((r) => (release = r));
      return false;
    },
    { pollMs: 60_000, onError: () => false },
  );
  pump.start();
  pump.kick();
  pump.kick();
  pump.kick();
  release();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(passes, 2);
  await pump.stop();
  pump.kick();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(passes, 2, "a stopped pump does not run");
});

test("a step that reports more work runs again at once; an error retries only when asked", async () => {
  let n = 0;
  const errors: unknown[] = [];
  const pump = new Pump(
    async () => {
      n++;
      if (n === 3) throw new Error("deadlock");
      return n < 5;
    },
    { pollMs: 60_000, onError: (e) => (errors.push(e), true) },
  );
  pump.start();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(n, 5);
  assert.equal(errors.length, 1);
  await pump.stop();
});
