import assert from "node:assert/strict";
import { test } from "node:test";
import { SERVER_STATUSES, serverStatus, statusFilter } from "./states.js";

test("status is derived as Nova derives it", () => {
  assert.equal(serverStatus("BUILDING", "SCHEDULING"), "BUILD");
  assert.equal(serverStatus("ACTIVE", null), "ACTIVE");
  assert.equal(serverStatus("ACTIVE", "POWERING_OFF"), "ACTIVE");
  assert.equal(serverStatus("ACTIVE", "REBOOTING"), "REBOOT");
  assert.equal(serverStatus("STOPPED", "REBOOTING_HARD"), "HARD_REBOOT");
  assert.equal(serverStatus("STOPPED", null), "SHUTOFF");
});

test("every status has a filter that selects servers showing it", () => {
  for (const st of SERVER_STATUSES) {
    const f = statusFilter(st);
    assert.ok(f.vmState || f.tasks?.length, st);
  }
});

test("moves and rebuilds show their own statuses", () => {
  assert.equal(serverStatus("ACTIVE", "RESIZE_PREP"), "RESIZE");
  assert.equal(serverStatus("STOPPED", "RESIZE_FINISH"), "RESIZE");
  assert.equal(serverStatus("RESIZED", null), "VERIFY_RESIZE");
  assert.equal(serverStatus("RESIZED", "RESIZE_CONFIRMING"), "VERIFY_RESIZE");
  assert.equal(serverStatus("RESIZED", "RESIZE_REVERTING"), "REVERT_RESIZE");
  assert.equal(serverStatus("PAUSED", "MIGRATING"), "MIGRATING");
  assert.equal(serverStatus("ERROR", "REBUILDING"), "REBUILD");
  assert.equal(serverStatus("ACTIVE", "REBUILD_SPAWNING"), "REBUILD");
  assert.equal(serverStatus("SHELVED_OFFLOADED", "UNSHELVING"), "SHELVED_OFFLOADED");
});
