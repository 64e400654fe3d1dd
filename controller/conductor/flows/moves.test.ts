/** Resize, live migration and evacuation transitions, against a store double (no MySQL). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";
import { callsOf, dispatched, instance, migration, resultOf, timeoutOf } from "./test-store.js";

const failure = { code: "MIGRATION_FAILED", message: "disk copy failed", retryable: false };

test("a finished resize waits in RESIZED with the power state it had; the migration is FINISHED", async () => {
  const world = { instance: instance({ host: "h2", taskState: "RESIZE_FINISH", taskDeadline: new Date() }), migration: migration() };
  const { r, calls } = resultOf(world, "finish_migration", "h2");
  await RESULT_RULES.finish_migration.apply!(r);
  assert.deepEqual(callsOf(calls, "updateMigration"), [["mig-1", { status: "FINISHED" }]]);
  assert.equal(world.instance.vmState, "RESIZED");
  assert.equal(world.instance.taskState, null);
  assert.equal(world.instance.powerState, "RUNNING");
  assert.deepEqual(callsOf(calls, "finishAction"), [[7]]);
});

test("a resize that fails on its target rolls back: the target's claim and copy go, the old copy runs again on the source", async () => {
  const world = {
    instance: instance({ host: "h2", taskState: "RESIZE_FINISH", taskDeadline: new Date(), flavor: migration().newFlavor }),
    migration: migration(),
    nodes: { h2: { id: "n2" } },
  };
  const { r, calls } = resultOf(world, "finish_migration", "h2", { error: failure });
  await RESULT_RULES.finish_migration.apply!(r);
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["srv-1", "n2"]], "the target's claim");
  assert.deepEqual(callsOf(calls, "moveAllocations"), [["mig-1", "srv-1"]], "the source's claim back to the server");
  assert.deepEqual(callsOf(calls, "updateMigration"), [["mig-1", { status: "ERROR" }]]);
  const [[, fin]] = callsOf(calls, "finishAction") as [[number, { state: string; error: { reason: string } }]];
  assert.equal(fin.state, "FAILED");
  assert.equal(fin.error.reason, "MIGRATION_FAILED");
  assert.equal(world.instance.host, "h1");
  assert.equal(world.instance.flavor.id, "m1.small");
  assert.equal(world.instance.fault?.code, "MIGRATION_FAILED");
  assert.equal(world.instance.taskState, "RESIZE_REVERTING", "the source brings the running copy back");
  assert.deepEqual(dispatched(calls), [
    { host: "h2", kind: "revert_migration" },
    { host: "h1", kind: "finish_revert_migration" },
  ]);
});

test("a migrate_disk result from a host that is not the move's source changes nothing", async () => {
  const world = { instance: instance({ taskState: "RESIZE_MIGRATING", taskDeadline: new Date() }), migration: migration() };
  const { r, calls } = resultOf(world, "migrate_disk", "h9");
  await RESULT_RULES.migrate_disk.apply!(r);
  assert.deepEqual(calls.map((c) => c.step), ["openMigration"]);
});

test("a confirm that outlives its deadline is confirmed here: the source's capacity is released", async () => {
  const world = { instance: instance({ vmState: "RESIZED", host: "h2", taskState: "RESIZE_CONFIRMING", taskDeadline: new Date() }), migration: migration({ status: "FINISHED" }) };
  const { t, calls } = timeoutOf(world);
  await TIMEOUT_RULES.RESIZE_CONFIRMING.reap(t);
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["mig-1"]]);
  assert.deepEqual(callsOf(calls, "updateMigration"), [["mig-1", { status: "CONFIRMED" }]]);
  assert.equal(world.instance.vmState, "ACTIVE");
  assert.equal(world.instance.fault?.code, "TASK_TIMED_OUT");
});

const live = () => migration({ type: "LIVE_MIGRATION", newFlavor: migration().oldFlavor, requestId: "req-live" });

test("a prepared target starts the copy on the source with the target's migration URI, and the operation becomes cancellable", async () => {
  const world = { instance: instance({ taskState: "MIGRATING", taskDeadline: new Date() }), migration: live(), nodes: { h2: { id: "n2", migrationUri: "qemu+tcp://h2/system" } } };
  const { r, calls } = resultOf(world, "pre_live_migration", "h2");
  await RESULT_RULES.pre_live_migration.apply!(r);
  const [[sent]] = callsOf(calls, "dispatchOp") as [[{ host: string; args: { kind: string; targetUri: string } }]];
  assert.equal(sent.host, "h1");
  assert.equal(sent.args.kind, "live_migrate");
  assert.equal(sent.args.targetUri, "qemu+tcp://h2/system");
  assert.ok(callsOf(calls, "setActionStep").some(([, s]) => (s as { cancellable?: boolean }).cancellable === true));
});

test("a copy aborted on request leaves the server on its source without a fault and ends the operation CANCELLED", async () => {
  const world = { instance: instance({ taskState: "MIGRATING", taskDeadline: new Date() }), migration: live(), nodes: { h2: { id: "n2" } }, cancelRequested: true };
  const { r, calls } = resultOf(world, "live_migrate", "h1", { error: { code: "ABORTED", message: "aborted", retryable: false }, powerState: "RUNNING" });
  await RESULT_RULES.live_migrate.apply!(r);
  const [[, fin]] = callsOf(calls, "finishAction") as [[number, { state: string; error: { reason: string } }]];
  assert.equal(fin.state, "CANCELLED");
  assert.deepEqual(callsOf(calls, "updateMigration"), [["mig-1", { status: "CANCELLED" }]]);
  assert.deepEqual(dispatched(calls), [{ host: "h2", kind: "rollback_live_migration" }]);
  assert.equal(world.instance.host, "h1");
  assert.equal(world.instance.fault, null);
  assert.equal(world.instance.taskState, null);

  const failed = resultOf({ ...world, migration: live(), cancelRequested: false }, "live_migrate", "h1", { error: { code: "ABORTED", message: "aborted", retryable: false } });
  await RESULT_RULES.live_migrate.apply!(failed.r);
  const [[, fin2]] = callsOf(failed.calls, "finishAction") as [[number, { state: string }]];
  assert.equal(fin2.state, "FAILED", "an abort nobody asked for is a failure");
});

test("a live migration that outlives its deadline mid-copy leaves both claims and the server in ERROR; one never placed is abandoned", async () => {
  const copying = timeoutOf({ instance: instance({ taskState: "MIGRATING", taskDeadline: new Date() }), migration: live() });
  await TIMEOUT_RULES.MIGRATING.reap(copying.t);
  assert.equal(copying.world.instance.vmState, "ERROR");
  assert.equal(callsOf(copying.calls, "releaseAllocations").length, 0);
  assert.deepEqual(callsOf(copying.calls, "updateMigration"), [["mig-1", { status: "ERROR" }]]);

  const waiting = timeoutOf({ instance: instance({ taskState: "MIGRATING", taskDeadline: new Date() }), migration: live() });
  waiting.world.migration = { ...live(), status: "PRE_MIGRATING", targetHost: null };
  await TIMEOUT_RULES.MIGRATING.reap(waiting.t);
  assert.equal(waiting.world.instance.vmState, "ACTIVE", "nothing moved");
  assert.deepEqual(callsOf(waiting.calls, "moveAllocations"), [["mig-1", "srv-1"]]);
});

test("an evacuated server runs on its new host; the dead host's claim is released and it is told to destroy its copy", async () => {
  const world = {
    instance: instance({ host: "h2", taskState: "REBUILD_SPAWNING", taskDeadline: new Date(), powerState: "NOSTATE" }),
    migration: migration({ type: "EVACUATION", newFlavor: migration().oldFlavor }),
  };
  const { r, calls } = resultOf(world, "rebuild", "h2", { powerState: "RUNNING" });
  await RESULT_RULES.rebuild.apply!(r);
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["mig-1"]]);
  assert.deepEqual(callsOf(calls, "updateMigration"), [["mig-1", { status: "COMPLETED" }]]);
  assert.deepEqual(dispatched(calls), [{ host: "h1", kind: "destroy" }]);
  assert.equal(world.instance.vmState, "ACTIVE");
  assert.equal(world.instance.host, "h2");
  assert.deepEqual(callsOf(calls, "finishAction"), [[7]]);
});
