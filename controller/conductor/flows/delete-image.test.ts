/** Delete, snapshot and shelve transitions, against a store double (no MySQL). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";
import { callsOf, instance, migration, resultOf, timeoutOf } from "./test-store.js";

const deleting = () => instance({ taskState: "DELETING", taskDeadline: new Date() });

test("a destroy on the server's host deletes it and releases what it and its migrations hold", async () => {
  const world = { instance: deleting(), migration: migration({ status: "CANCELLED" }) };
  const { r, calls } = resultOf(world, "destroy", "h1");
  await RESULT_RULES.destroy.apply!(r);
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["srv-1"], ["mig-1"]]);
  assert.equal(world.instance.vmState, "DELETED");
  assert.ok(world.instance.deletedAt);
  assert.deepEqual(callsOf(calls, "finishAction"), [[7]]);
});

test("the destroy of a move's other copy is cleanup; a failed destroy leaves the server in ERROR", async () => {
  const other = resultOf({ instance: deleting() }, "destroy", "h2");
  await RESULT_RULES.destroy.apply!(other.r);
  assert.equal(other.world.instance.vmState, "ACTIVE");
  assert.equal(callsOf(other.calls, "finishAction").length, 0);

  const failed = resultOf({ instance: deleting() }, "destroy", "h1", { error: { code: "DESTROY_FAILED", message: "busy", retryable: false } });
  await RESULT_RULES.destroy.apply!(failed.r);
  assert.equal(failed.world.instance.vmState, "ERROR");
  assert.equal(failed.world.instance.fault?.code, "DESTROY_FAILED");
});

test("a delete whose host never answers is done here: the server is DELETED with the timeout's fault", async () => {
  const { t, calls, world } = timeoutOf({ instance: deleting() });
  await TIMEOUT_RULES.DELETING.reap(t);
  assert.equal(world.instance.vmState, "DELETED");
  assert.equal(world.instance.fault?.code, "TASK_TIMED_OUT");
  assert.ok(callsOf(calls, "instantEvent").some(([e]) => (e as { event: string }).event === "local_delete"));
});

test("a stored snapshot activates its image; one that reported no data deletes it and fails the operation SNAPSHOT_LOST", async () => {
  const snapping = () => instance({ taskState: "IMAGE_UPLOADING", taskDeadline: new Date() });
  const data = { sizeBytes: 4096, checksum: "ab", diskFormat: "qcow2" };
  const ok = resultOf({ instance: snapping(), actionImageId: "img-snap" }, "snapshot", "h1", { snapshot: data, powerState: "RUNNING" });
  await RESULT_RULES.snapshot.apply!(ok.r);
  assert.deepEqual(callsOf(ok.calls, "activateImage"), [["img-snap", data]]);
  assert.equal(ok.world.instance.taskState, null);
  assert.equal(ok.world.instance.vmState, "ACTIVE");

  const lost = resultOf({ instance: snapping(), actionImageId: "img-snap" }, "snapshot", "h1");
  await RESULT_RULES.snapshot.apply!(lost.r);
  assert.deepEqual(callsOf(lost.calls, "deleteImage"), [["img-snap"]]);
  const [[, fin]] = callsOf(lost.calls, "finishAction") as [[number, { error: { reason: string } }]];
  assert.equal(fin.error.reason, "SNAPSHOT_LOST");
});

test("a shelved server is offloaded: no host, capacity released, its snapshot active; a shelve that lost its data keeps no image", async () => {
  const shelving = () => instance({ taskState: "SHELVING_OFFLOADING", taskDeadline: new Date(), shelvedImageId: "img-shelved" });
  const data = { sizeBytes: 1, checksum: "cd", diskFormat: "qcow2" };
  const ok = resultOf({ instance: shelving() }, "shelve", "h1", { snapshot: data });
  await RESULT_RULES.shelve.apply!(ok.r);
  assert.equal(ok.world.instance.vmState, "SHELVED_OFFLOADED");
  assert.equal(ok.world.instance.host, null);
  assert.equal(ok.world.instance.powerState, "NOSTATE");
  assert.equal(ok.world.instance.shelvedImageId, "img-shelved");
  assert.deepEqual(callsOf(ok.calls, "releaseAllocations"), [["srv-1"]]);
  assert.deepEqual(callsOf(ok.calls, "activateImage"), [["img-shelved", data]]);

  const lost = resultOf({ instance: shelving() }, "shelve", "h1");
  await RESULT_RULES.shelve.apply!(lost.r);
  assert.equal(lost.world.instance.vmState, "SHELVED_OFFLOADED");
  assert.equal(lost.world.instance.shelvedImageId, null, "unshelve falls back to the base image");
  assert.deepEqual(callsOf(lost.calls, "deleteImage"), [["img-shelved"]]);
});

test("progress steps: a shelve moves through its upload and offload steps; a snapshot through its upload", () => {
  assert.deepEqual(RESULT_RULES.shelve.steps, ["SHELVING", "SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"]);
  assert.deepEqual(RESULT_RULES.snapshot.steps, ["IMAGE_SNAPSHOT", "IMAGE_UPLOADING"]);
  assert.deepEqual(RESULT_RULES.rebuild.steps, ["REBUILDING", "REBUILD_SPAWNING"]);
});

test("a fault describes the current error only: a later action that succeeds clears an earlier one", async () => {
  const stale = { code: "NO_VALID_HOST", message: "No valid host was found", details: {}, createdAt: new Date().toISOString() };
  const world = { instance: instance({ taskState: "IMAGE_UPLOADING", taskDeadline: new Date(), fault: stale }), actionImageId: "img-snap" };
  const { r } = resultOf(world, "snapshot", "h1", { snapshot: { sizeBytes: 1, checksum: "ef", diskFormat: "qcow2" } });
  await RESULT_RULES.snapshot.apply!(r);
  assert.equal(world.instance.fault, null);
});
