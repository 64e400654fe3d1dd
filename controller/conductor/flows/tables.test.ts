import assert from "node:assert/strict";
import { test } from "node:test";
import { OP_KINDS } from "../../domain/ops.js";
import { ACTIONS, TASK_STATES } from "../../domain/states.js";
import { ACTION_RULES, ALLOWED_FROM, RESULT_RULES, TIMEOUT_RULES } from "./index.js";

test("the allowed-state table matches Nova's checks", () => {
  assert.ok(ALLOWED_FROM.start.has("STOPPED"));
  assert.ok(!ALLOWED_FROM.start.has("ACTIVE"));
  assert.ok(ALLOWED_FROM.stop.has("ACTIVE"));
  assert.ok(!ALLOWED_FROM.reboot_soft.has("STOPPED"));
  assert.ok(ALLOWED_FROM.reboot_hard.has("STOPPED"));
  assert.ok(!ALLOWED_FROM.delete.has("DELETED"));
});

test("the table of the newer actions", () => {
  assert.ok(!ALLOWED_FROM.evacuate.has("BUILDING"));
  assert.ok(ALLOWED_FROM.evacuate.has("ERROR"));
  assert.deepEqual([...ALLOWED_FROM.unshelve], ["SHELVED_OFFLOADED"]);
  assert.ok(ALLOWED_FROM.live_migrate.has("PAUSED") && !ALLOWED_FROM.live_migrate.has("STOPPED"));
  assert.ok(ALLOWED_FROM.lock.has("ERROR") && !ALLOWED_FROM.lock.has("DELETED"));
});

test("every action, op kind and task has exactly one flow's row", () => {
  assert.deepEqual(Object.keys(ACTION_RULES).sort(), ACTIONS.filter((a) => a !== "create").sort());
  assert.deepEqual(Object.keys(RESULT_RULES).sort(), [...OP_KINDS].sort());
  assert.deepEqual(Object.keys(TIMEOUT_RULES).sort(), [...TASK_STATES].sort());
});

test("a result's task steps start with a task it may finish", () => {
  for (const [kind, rule] of Object.entries(RESULT_RULES)) {
    if (rule.steps) assert.ok(rule.steps.every((s) => rule.tasks.includes(s)), kind);
  }
});
