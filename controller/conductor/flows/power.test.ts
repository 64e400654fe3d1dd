/** Power results and timeouts, against a store double (no MySQL). */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { OpKind } from "../../domain/ops.js";
import type { PowerState, TaskState, VmState } from "../../domain/states.js";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";
import { callsOf, instance, resultOf, timeoutOf } from "./test-store.js";

const busy = (vmState: VmState, task: TaskState, powerState: PowerState = "RUNNING") => instance({ vmState, taskState: task, taskDeadline: new Date(), powerState });

test("a power op's success sets its end state, with the host's power state when it reported one", async () => {
  const cases: [OpKind, VmState, TaskState, VmState, PowerState][] = [
    ["power_on", "STOPPED", "POWERING_ON", "ACTIVE", "RUNNING"],
    ["power_off", "ACTIVE", "POWERING_OFF", "STOPPED", "SHUTDOWN"],
    ["reboot", "ACTIVE", "REBOOTING", "ACTIVE", "RUNNING"],
    ["pause", "ACTIVE", "PAUSING", "PAUSED", "PAUSED"],
    ["unpause", "PAUSED", "UNPAUSING", "ACTIVE", "RUNNING"],
    ["suspend", "ACTIVE", "SUSPENDING", "SUSPENDED", "SUSPENDED"],
    ["resume", "SUSPENDED", "RESUMING", "ACTIVE", "RUNNING"],
  ];
  for (const [kind, from, task, vm, power] of cases) {
    const { r, calls, world } = resultOf({ instance: busy(from, task, "NOSTATE") }, kind, "h1");
    await RESULT_RULES[kind].apply!(r);
    assert.equal(world.instance.vmState, vm, kind);
    assert.equal(world.instance.powerState, power, kind);
    assert.equal(world.instance.taskState, null, kind);
    assert.deepEqual(callsOf(calls, "finishAction"), [[7]], kind);
  }
  const { r, world } = resultOf({ instance: busy("ACTIVE", "POWERING_OFF") }, "power_off", "h1", { powerState: "CRASHED" });
  await RESULT_RULES.power_off.apply!(r);
  assert.equal(world.instance.powerState, "CRASHED");
});

test("a failed power op keeps the server's state with the fault; a failed reboot leaves it in ERROR", async () => {
  const error = { code: "GUEST_PANIC", message: "kernel panic", retryable: false };
  const stop = resultOf({ instance: busy("ACTIVE", "POWERING_OFF") }, "power_off", "h1", { error, powerState: "RUNNING" });
  await RESULT_RULES.power_off.apply!(stop.r);
  assert.equal(stop.world.instance.vmState, "ACTIVE");
  assert.equal(stop.world.instance.fault?.code, "GUEST_PANIC");
  const [[, fin]] = callsOf(stop.calls, "finishAction") as [[number, { error: { message: string } }]];
  assert.equal(fin.error.message, "power_off on h1 failed: kernel panic");

  const reboot = resultOf({ instance: busy("ACTIVE", "REBOOTING") }, "reboot", "h1", { error });
  await RESULT_RULES.reboot.apply!(reboot.r);
  assert.equal(reboot.world.instance.vmState, "ERROR");
});

test("a power result finishes only its own task; a hard reboot's result finishes a soft one it took over", () => {
  assert.deepEqual(RESULT_RULES.power_on.tasks, ["POWERING_ON"]);
  assert.deepEqual(RESULT_RULES.reboot.tasks, ["REBOOTING", "REBOOTING_HARD"]);
  assert.ok(!RESULT_RULES.pause.tasks.includes("UNPAUSING"));
});

test("a timed-out power task keeps the last known state; a build that never got a host fails; an unshelve stays shelved", async () => {
  for (const task of ["POWERING_OFF", "POWERING_ON", "REBOOTING", "REBOOTING_HARD", "PAUSING", "UNPAUSING", "SUSPENDING", "RESUMING"] as const) {
    const { t, world } = timeoutOf({ instance: busy("ACTIVE", task) });
    await TIMEOUT_RULES[task].reap(t);
    assert.equal(world.instance.vmState, "ACTIVE", task);
    assert.equal(world.instance.taskState, null, task);
    assert.equal(world.instance.fault?.code, "TASK_TIMED_OUT", task);
    assert.match(TIMEOUT_RULES[task].outcome, /keeps its last known state/);
  }
  const build = timeoutOf({ instance: busy("BUILDING", "SCHEDULING", "NOSTATE") });
  await TIMEOUT_RULES.SCHEDULING.reap(build.t);
  assert.equal(build.world.instance.vmState, "ERROR");
  const unshelve = timeoutOf({ instance: busy("SHELVED_OFFLOADED", "UNSHELVING", "NOSTATE") });
  await TIMEOUT_RULES.UNSHELVING.reap(unshelve.t);
  assert.equal(unshelve.world.instance.vmState, "SHELVED_OFFLOADED");
  assert.equal(TIMEOUT_RULES.UNSHELVING.outcome, "the server stays shelved");
});
