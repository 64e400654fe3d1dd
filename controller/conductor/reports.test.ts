import assert from "node:assert/strict";
import { test } from "node:test";
import { syncedVmState } from "./reports.js";

test("power-state sync follows the hypervisor, as Nova's _sync_power_states", () => {
  // A guest that stopped or crashed on its own is STOPPED.
  assert.equal(syncedVmState("ACTIVE", "SHUTDOWN"), "STOPPED");
  assert.equal(syncedVmState("ACTIVE", "CRASHED"), "STOPPED");
  assert.equal(syncedVmState("PAUSED", "SHUTDOWN"), "STOPPED");
  // Started, paused or suspended behind the API's back.
  assert.equal(syncedVmState("STOPPED", "RUNNING"), "ACTIVE");
  assert.equal(syncedVmState("ACTIVE", "PAUSED"), "PAUSED");
  assert.equal(syncedVmState("ACTIVE", "SUSPENDED"), "SUSPENDED");
  assert.equal(syncedVmState("PAUSED", "RUNNING"), "ACTIVE");
  // Gone from its host.
  assert.equal(syncedVmState("ACTIVE", "NOSTATE"), "ERROR");
  // Agreement, and states sync leaves alone.
  assert.equal(syncedVmState("ACTIVE", "RUNNING"), null);
  assert.equal(syncedVmState("STOPPED", "CRASHED"), null);
  assert.equal(syncedVmState("ERROR", "RUNNING"), null);
  assert.equal(syncedVmState("RESIZED", "SHUTDOWN"), null);
  assert.equal(syncedVmState("BUILDING", "RUNNING"), null);
});
