import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_TASK_TIMEOUTS, TASK_STATES } from "./states.js";
import { parseTaskTimeouts, startTask } from "./tasks.js";

test("task timeouts: named tasks override, * covers every task not named", () => {
  const t = parseTaskTimeouts("PAUSING=3, *=20, SPAWNING=600");
  assert.equal(t.PAUSING, 3);
  assert.equal(t.SPAWNING, 600);
  for (const task of TASK_STATES) if (task !== "PAUSING" && task !== "SPAWNING") assert.equal(t[task], 20, task);
  assert.deepEqual(parseTaskTimeouts(""), DEFAULT_TASK_TIMEOUTS);
});

test("task timeouts: unknown tasks, bad syntax and non-positive values are refused", () => {
  assert.throws(() => parseTaskTimeouts("NAPPING=3"), /unknown task state NAPPING/);
  assert.throws(() => parseTaskTimeouts("PAUSING"), /not TASK=SECONDS/);
  assert.throws(() => parseTaskTimeouts("PAUSING=0"), /must be positive/);
  assert.throws(() => parseTaskTimeouts("PAUSING=-1"), /not TASK=SECONDS/);
});

test("a started task carries its deadline", () => {
  const t = parseTaskTimeouts("PAUSING=3");
  assert.deepEqual(startTask(t, "PAUSING", 1_000), { taskState: "PAUSING", taskDeadline: new Date(4_000) });
});
