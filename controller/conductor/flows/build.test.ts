/** The build flow's results and timeouts, against a store double (no MySQL). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";
import { callsOf, dispatched, instance, resultOf, timeoutOf } from "./test-store.js";

const spawning = () => instance({ vmState: "BUILDING", taskState: "SPAWNING", taskDeadline: new Date(), powerState: "NOSTATE", launchedAt: null });
const flaky = { code: "SPAWN_FAILED", message: "no bridge", retryable: true };

test("a spawn's success makes the server ACTIVE and RUNNING, counts a good build for the host and finishes the action", async () => {
  const { r, calls, world } = resultOf({ instance: spawning() }, "spawn", "h1", { powerState: "RUNNING" });
  await RESULT_RULES.spawn.apply!(r);
  assert.equal(world.instance.vmState, "ACTIVE");
  assert.equal(world.instance.taskState, null);
  assert.equal(world.instance.powerState, "RUNNING");
  assert.ok(world.instance.launchedAt);
  assert.deepEqual(callsOf(calls, "recordBuildSuccess"), [["h1"]]);
  assert.deepEqual(callsOf(calls, "finishAction"), [[7]]);
});

test("a retryable spawn failure claims the next alternate and spawns there as the next attempt", async () => {
  const world = { instance: spawning(), nodes: { h2: { id: "n2" }, h3: { id: "n3" } }, claimable: ["h3"] };
  world.instance = { ...world.instance, alternateHosts: ["h2", "h3"] };
  const { r, calls } = resultOf(world, "spawn", "h1", { error: flaky });
  await RESULT_RULES.spawn.apply!(r);
  assert.deepEqual(callsOf(calls, "recordBuildFailure"), [["h1"]], "the failed host is counted against");
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["srv-1"]], "the failed host's claim is released");
  assert.deepEqual(dispatched(calls), [{ host: "h3", kind: "spawn", attempt: 2, imageId: "img-base" }], "h2's claim was lost, h3 takes it");
  assert.equal(world.instance.host, "h3");
  assert.equal(world.instance.taskState, "SPAWNING");
  assert.deepEqual(world.instance.triedHosts, ["h1", "h3"]);
  assert.deepEqual(world.instance.alternateHosts, []);
  assert.equal(callsOf(calls, "finishAction").length, 0, "the action goes on");
  const schedule = callsOf(calls, "instantEvent").map(([e]) => e as { event: string; host: string });
  assert.deepEqual(schedule.map((e) => [e.event, e.host]), [["schedule", "h3"]]);
});

test("with no alternate left a retryable failure goes back to placement; after the last attempt the build fails with the fault", async () => {
  const again = resultOf({ instance: spawning() }, "spawn", "h1", { error: flaky });
  await RESULT_RULES.spawn.apply!(again.r);
  assert.equal(again.world.instance.taskState, "SCHEDULING");
  assert.equal(again.world.instance.host, null);
  assert.equal(dispatched(again.calls).length, 0);

  const last = resultOf({ instance: { ...spawning(), attempt: 3 } }, "spawn", "h1", { error: flaky });
  await RESULT_RULES.spawn.apply!(last.r);
  assert.equal(last.world.instance.vmState, "ERROR");
  assert.equal(last.world.instance.fault?.code, "SPAWN_FAILED");
  assert.match(last.world.instance.fault!.message, /no bridge; gave up after 3 attempts/);
  const [[actionId, failure]] = callsOf(last.calls, "finishAction") as [[number, { error: { reason: string } }]];
  assert.equal(actionId, 7);
  assert.equal(failure.error.reason, "SPAWN_FAILED");
});

test("a non-retryable failure is not the host's fault and is not retried; a group with a hard policy goes back to placement", async () => {
  const bad = resultOf({ instance: spawning() }, "spawn", "h1", { error: { code: "IMAGE_INVALID", message: "bad image", retryable: false } });
  await RESULT_RULES.spawn.apply!(bad.r);
  assert.equal(callsOf(bad.calls, "recordBuildFailure").length, 0);
  assert.equal(bad.world.instance.vmState, "ERROR");

  const world = { instance: { ...spawning(), serverGroupId: "g1", alternateHosts: ["h2"] }, nodes: { h2: { id: "n2" } }, claimable: ["h2"], serverGroupPolicy: "anti-affinity" };
  const grouped = resultOf(world, "spawn", "h1", { error: flaky });
  await RESULT_RULES.spawn.apply!(grouped.r);
  assert.equal(dispatched(grouped.calls).length, 0, "no alternate for a hard-policy member");
  assert.equal(grouped.world.instance.taskState, "SCHEDULING");
});

test("a result from a host the build was taken from changes nothing", async () => {
  const { r, calls, world } = resultOf({ instance: { ...spawning(), host: "h2" } }, "spawn", "h1", { powerState: "RUNNING" });
  await RESULT_RULES.spawn.apply!(r);
  assert.equal(world.instance.vmState, "BUILDING");
  assert.equal(callsOf(calls, "updateInstance").length, 0);
});

test("an unshelve that spawned deletes the shelved snapshot and stays no more shelved; one that fails for good stays shelved", async () => {
  const shelved = () => instance({ vmState: "SHELVED_OFFLOADED", taskState: "SPAWNING", taskDeadline: new Date(), shelvedImageId: "img-shelved" });
  const ok = resultOf({ instance: shelved() }, "spawn", "h1", {});
  await RESULT_RULES.spawn.apply!(ok.r);
  assert.equal(ok.world.instance.vmState, "ACTIVE");
  assert.equal(ok.world.instance.shelvedImageId, null);
  assert.deepEqual(callsOf(ok.calls, "deleteImage"), [["img-shelved"]]);

  const bad = resultOf({ instance: { ...shelved(), attempt: 3 } }, "spawn", "h1", { error: flaky });
  await RESULT_RULES.spawn.apply!(bad.r);
  assert.equal(bad.world.instance.vmState, "SHELVED_OFFLOADED");
  assert.equal(bad.world.instance.host, null);
});

test("a spawn that outlives its deadline fails the build and tells the host to remove what it made", async () => {
  const { t, calls, world } = timeoutOf({ instance: spawning() });
  await TIMEOUT_RULES.SPAWNING.reap(t);
  assert.deepEqual(dispatched(calls), [{ host: "h1", kind: "destroy" }]);
  assert.deepEqual(callsOf(calls, "releaseAllocations"), [["srv-1"]]);
  assert.equal(world.instance.vmState, "ERROR");
  assert.equal(world.instance.fault?.code, "TASK_TIMED_OUT");
  assert.equal(world.instance.host, null);
  assert.equal(callsOf(calls, "finishAction").length, 1);
});
