import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_TASK_TIMEOUTS, TASK_STATES } from "./states.js";
import { parseTaskTimeouts, parseVolumeTimeouts, startTask, stepDeadline } from "./tasks.js";
import { DEFAULT_VOLUME_TIMEOUTS } from "./volume.js";

test("task timeouts: named tasks override, * covers every task not named", () => {
  const t = parseTaskTimeouts("PAUSING=3, *=20, SPAWNING=600");
  assert.equal(t.PAUSING, 3);
  assert.equal(t.SPAWNING, 600);
  for (const task of TASK_STATES) if (task !== "PAUSING" && task !== "SPAWNING") assert.equal(t[task], 20, task);
  assert.deepEqual(parseTaskTimeouts(""), DEFAULT_TASK_TIMEOUTS);
});

test("task timeouts: unknown tasks, bad syntax and non-positive values are refused", () => {
  assert.throws(() => parseTaskTimeouts("NAPPING=3"), /unknown task state NAPPING/);
  assert.throws(() => parseTaskTimeouts("PAUSING"), /not NAME=SECONDS/);
  assert.throws(() => parseTaskTimeouts("PAUSING=0"), /must be positive/);
  assert.throws(() => parseTaskTimeouts("PAUSING=-1"), /not NAME=SECONDS/);
});

test("a started task carries its deadline", () => {
  const t = parseTaskTimeouts("PAUSING=3");
  assert.deepEqual(startTask(t, "PAUSING", 1_000), { taskState: "PAUSING", taskDeadline: new Date(4_000) });
});

test("a reported step gets its own timeout from now, never an earlier deadline than the task had", () => {
  const t = parseTaskTimeouts("IMAGE_SNAPSHOT=10,IMAGE_UPLOADING=30,REBUILDING=60,REBUILD_SPAWNING=5");
  // Reached at 8 s of a task due at 10 s: the upload may take its 30 s.
  assert.deepEqual(stepDeadline(t, "IMAGE_UPLOADING", new Date(10_000), 8_000), new Date(38_000));
  // A short step does not cut the task's deadline.
  assert.deepEqual(stepDeadline(t, "REBUILD_SPAWNING", new Date(60_000), 2_000), new Date(60_000));
  assert.deepEqual(stepDeadline(t, "REBUILD_SPAWNING", null, 2_000), new Date(7_000));
});

test("volume timeouts: the working statuses only, with the same syntax", () => {
  const t = parseVolumeTimeouts("CREATING=4, *=30");
  assert.deepEqual(t, { CREATING: 4, DELETING: 30, EXTENDING: 30 });
  assert.deepEqual(parseVolumeTimeouts(""), DEFAULT_VOLUME_TIMEOUTS);
  assert.throws(() => parseVolumeTimeouts("AVAILABLE=3"), /unknown volume status AVAILABLE/);
  assert.throws(() => parseVolumeTimeouts("PAUSING=3"), /unknown volume status PAUSING/);
});
