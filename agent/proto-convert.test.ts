import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PowerState, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { testInstance } from "./drivers/test-instance.js";
import type { AgentOp } from "./ops/agent-op.js";
import { testOp } from "./ops/test-ops.js";
import { agentOpFromProto, opProgressToProto, opResultToProto } from "./proto-convert.js";
import { computeOpOf } from "./test-compute-op.js";

describe("ComputeOp in: the agent's own op", () => {
  test("every kind of ComputeOp comes in as the AgentOp of that kind, with its arguments, instance and header", () => {
    const inst = testInstance({ extraSpecs: { "hw:cpu_policy": "dedicated" }, metadata: { role: "db" } });
    const deadline = new Date(Date.now() + 60_000);
    const ops: AgentOp[] = [
      testOp(inst, { kind: "spawn" }),
      testOp(inst, { kind: "destroy" }),
      testOp(inst, { kind: "power_on" }),
      testOp(inst, { kind: "power_off", timeoutSeconds: 30 }),
      testOp(inst, { kind: "reboot", hard: false, softTimeoutSeconds: 12 }),
      testOp(inst, { kind: "pause" }),
      testOp(inst, { kind: "unpause" }),
      testOp(inst, { kind: "suspend" }),
      testOp(inst, { kind: "resume" }),
      testOp(inst, { kind: "snapshot", imageId: "img-1", imageName: "before upgrade" }),
      testOp(inst, { kind: "shelve", imageId: "img-2", imageName: "shelved", timeoutSeconds: 5 }),
      testOp(inst, { kind: "rebuild", recreate: true }),
      testOp(inst, { kind: "migrate_disk", targetHost: "b", timeoutSeconds: 7 }),
      testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: false }),
      testOp(inst, { kind: "confirm_migration" }),
      testOp(inst, { kind: "revert_migration" }),
      testOp(inst, { kind: "finish_revert_migration", powerOn: false }),
      testOp(inst, { kind: "pre_live_migration", sourceHost: "a" }),
      testOp(inst, { kind: "live_migrate", targetHost: "b", targetUri: "qemu+tcp://b/system" }),
      testOp(inst, { kind: "post_live_migration", sourceHost: "a" }),
      testOp(inst, { kind: "rollback_live_migration" }),
      { ...testOp(inst, { kind: "abort", targetOpId: "op-1" }), deadline },
    ];
    for (const op of ops) assert.deepEqual(agentOpFromProto(computeOpOf(op)), op, op.kind);
  });

  test("a ComputeOp without an operation, an instance or an op id, or an abort without a target or of itself, comes in as an InvalidOp", () => {
    const inst = testInstance();
    const spawn = computeOpOf(testOp(inst, { kind: "spawn" }));
    assert.deepEqual(agentOpFromProto({ ...spawn, op: undefined }), {
      opId: spawn.opId,
      serverId: inst.id,
      problem: "the op names no operation (unknown to this agent version?)",
    });
    assert.deepEqual(agentOpFromProto({ ...spawn, instance: undefined }), { opId: spawn.opId, serverId: "", problem: "instance.id is empty" });
    assert.deepEqual(agentOpFromProto({ ...spawn, opId: "" }), { opId: "", serverId: inst.id, problem: "op_id is empty" });
    const noTarget = computeOpOf(testOp(inst, { kind: "abort", targetOpId: "" }));
    assert.equal(agentOpFromProto(noTarget).opId, noTarget.opId);
    assert.deepEqual(agentOpFromProto(noTarget), { opId: noTarget.opId, serverId: inst.id, problem: "abort.target_op_id is empty" });
    const self = testOp(inst, { kind: "abort", targetOpId: "x" }, "x");
    assert.deepEqual(agentOpFromProto(computeOpOf(self)), { opId: "x", serverId: inst.id, problem: "an abort op cannot abort itself" });
  });
});

describe("Outcomes and progress out: OpResult and OpProgress", () => {
  test("a failed outcome goes out with its failure as OpError and no note as an empty one", () => {
    const startTime = new Date(Date.now() - 1_000);
    const finishTime = new Date();
    const failure = { code: "DISK_FULL", message: "no space on pool", retryable: true };
    assert.deepEqual(opResultToProto({ opId: "o", serverId: "s", failure, powerState: "SHUTDOWN", startTime, finishTime }), {
      opId: "o",
      serverId: "s",
      error: failure,
      powerState: PowerState.POWER_STATE_SHUTDOWN,
      startTime,
      finishTime,
      snapshot: undefined,
      note: "",
    });
  });

  test("a successful outcome goes out with its snapshot and note; an unknown power state is UNSPECIFIED", () => {
    const now = new Date();
    const snapshot = { sizeBytes: 1024, checksum: "ab", diskFormat: "qcow2" };
    const result = opResultToProto({ opId: "o", serverId: "s", snapshot, note: "n", startTime: now, finishTime: now });
    assert.equal(result.error, undefined);
    assert.deepEqual(result.snapshot, snapshot);
    assert.equal(result.note, "n");
    assert.equal(result.powerState, PowerState.POWER_STATE_UNSPECIFIED);
  });

  test("progress goes out with its task step, or none", () => {
    const step = opProgressToProto({ opId: "o", serverId: "s", percent: 0, message: "m", stage: "SHELVING_OFFLOADING" });
    assert.equal(step.taskState, TaskState.TASK_STATE_SHELVING_OFFLOADING);
    const plain = opProgressToProto({ opId: "o", serverId: "s", percent: 50, message: "m" });
    assert.deepEqual(plain, { opId: "o", serverId: "s", percent: 50, message: "m", taskState: TaskState.TASK_STATE_UNSPECIFIED });
  });
});
