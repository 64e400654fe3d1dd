/**
 * Power results and timeouts checked without MySQL: the flows' steps go
 * through ResultContext / TimeoutContext, replaced here by doubles that
 * record what the flow asked of the store.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { OpFailure, OpKind } from "../../domain/ops.js";
import type { PowerState, TaskState } from "../../domain/states.js";
import type { InstancePatch } from "../../store/instances.js";
import type { ResultContext, TimeoutContext } from "../flow.js";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";

type Call = { step: "succeed" | "fail" | "end"; patch: InstancePatch };

function resultDouble(kind: OpKind, o: { error?: OpFailure; power?: PowerState } = {}) {
  const calls: Call[] = [];
  const r = {
    op: { kind, host: "h1", actionId: 1, opId: "op", instanceUuid: "i", attempt: 1, state: "PENDING" },
    error: o.error ?? null,
    power: o.power,
    succeed: async (patch: InstancePatch) => void calls.push({ step: "succeed", patch }),
    fail: async (patch: InstancePatch = {}) => void calls.push({ step: "fail", patch }),
  };
  return { r: r as unknown as ResultContext, calls };
}

function timeoutDouble(task: TaskState) {
  const calls: Call[] = [];
  const t = { task, end: async (patch: InstancePatch = {}) => void calls.push({ step: "end", patch }) };
  return { t: t as unknown as TimeoutContext, calls };
}

test("a power op's success sets its end state, with the host's power state when it reported one", async () => {
  const cases: [OpKind, string, string][] = [
    ["power_on", "ACTIVE", "RUNNING"],
    ["power_off", "STOPPED", "SHUTDOWN"],
    ["reboot", "ACTIVE", "RUNNING"],
    ["pause", "PAUSED", "PAUSED"],
    ["unpause", "ACTIVE", "RUNNING"],
    ["suspend", "SUSPENDED", "SUSPENDED"],
    ["resume", "ACTIVE", "RUNNING"],
  ];
  for (const [kind, vm, power] of cases) {
    const { r, calls } = resultDouble(kind);
    await RESULT_RULES[kind].apply!(r);
    assert.deepEqual(calls, [{ step: "succeed", patch: { vmState: vm, powerState: power, fault: null } }], kind);
  }
  const { r, calls } = resultDouble("power_off", { power: "CRASHED" });
  await RESULT_RULES.power_off.apply!(r);
  assert.equal(calls[0]!.patch.powerState, "CRASHED");
});

test("a failed power op keeps the server's state; a failed reboot leaves it in ERROR", async () => {
  const error = { code: "GUEST_PANIC", message: "kernel panic", retryable: false };
  const stop = resultDouble("power_off", { error, power: "RUNNING" });
  await RESULT_RULES.power_off.apply!(stop.r);
  assert.deepEqual(stop.calls, [{ step: "fail", patch: { vmState: undefined, powerState: "RUNNING" } }]);
  const reboot = resultDouble("reboot", { error });
  await RESULT_RULES.reboot.apply!(reboot.r);
  assert.equal(reboot.calls[0]!.step, "fail");
  assert.equal(reboot.calls[0]!.patch.vmState, "ERROR");
});

test("a power result finishes only its own task; a hard reboot's result finishes a soft one it took over", () => {
  assert.deepEqual(RESULT_RULES.power_on.tasks, ["POWERING_ON"]);
  assert.deepEqual(RESULT_RULES.reboot.tasks, ["REBOOTING", "REBOOTING_HARD"]);
  assert.ok(!RESULT_RULES.pause.tasks.includes("UNPAUSING"));
});

test("a timed-out power task keeps the last known state; a build that never got a host fails; an unshelve stays shelved", async () => {
  for (const task of ["POWERING_OFF", "POWERING_ON", "REBOOTING", "REBOOTING_HARD", "PAUSING", "UNPAUSING", "SUSPENDING", "RESUMING"] as const) {
    const { t, calls } = timeoutDouble(task);
    await TIMEOUT_RULES[task].reap(t);
    assert.deepEqual(calls, [{ step: "end", patch: {} }], task);
    assert.match(TIMEOUT_RULES[task].outcome, /keeps its last known state/);
  }
  const build = timeoutDouble("SCHEDULING");
  await TIMEOUT_RULES.SCHEDULING.reap(build.t);
  assert.deepEqual(build.calls, [{ step: "end", patch: { vmState: "ERROR" } }]);
  const unshelve = timeoutDouble("UNSHELVING");
  await TIMEOUT_RULES.UNSHELVING.reap(unshelve.t);
  assert.deepEqual(unshelve.calls, [{ step: "end", patch: {} }]);
  assert.equal(TIMEOUT_RULES.UNSHELVING.outcome, "the server stays shelved");
});
