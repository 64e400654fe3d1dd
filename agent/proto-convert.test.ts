import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PowerState, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { testInstance } from "./drivers/test-instance.js";
import { GIB } from "../controller/domain/volume-ops.js";
import type { AgentOp, AgentVolumeOp } from "./ops/agent-op.js";
import { testOp, testVolume, testVolumeOp } from "./ops/test-ops.js";
import { agentOpFromProto, opProgressToProto, opResultToProto } from "./proto-convert.js";
import { computeOpOf, computeOpOfVolumeOp } from "./test-compute-op.js";

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

describe("ComputeOp in: a volume op", () => {
  const image = { id: "img-1", name: "debian", diskFormat: "qcow2", checksum: "ab".repeat(32) };

  test("each volume op kind comes in as the AgentVolumeOp of that kind, with its volume, source or size, and header", () => {
    const vol = testVolume({ sizeBytes: 3 * GIB });
    const deadline = new Date(Date.now() + 60_000);
    const ops: AgentVolumeOp[] = [
      testVolumeOp(vol, { kind: "create_volume" }),
      { ...testVolumeOp(vol, { kind: "create_volume", source: { kind: "image", image } }), deadline },
      testVolumeOp(vol, { kind: "create_volume", source: { kind: "snapshot", volumeId: "vol-src", snapshotId: "snap-1" } }),
      testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 5 * GIB }),
      testVolumeOp(vol, { kind: "delete_volume" }),
    ];
    for (const op of ops) assert.deepEqual(agentOpFromProto(computeOpOfVolumeOp(op)), op, op.kind);
  });

  test("a volume op that names no usable volume, size or source comes in as an InvalidOp carrying the volume id", () => {
    const vol = testVolume();
    const create = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "create_volume" }));
    const problem = (o: typeof create) => {
      const got = agentOpFromProto(o);
      assert.ok("problem" in got, `came in as a runnable op: ${JSON.stringify(got)}`);
      return got;
    };
    assert.deepEqual(problem({ ...create, volume: undefined }), { opId: create.opId, serverId: "", volumeId: "", problem: "create_volume names no volume" });
    assert.equal(problem({ ...create, volume: { ...vol, id: "" } }).problem, "volume.id is empty");
    assert.equal(problem({ ...create, volume: { ...vol, id: "../etc/passwd" } }).problem, 'volume.id "../etc/passwd" is not a volume id');
    assert.equal(problem({ ...create, volume: { ...vol, pool: "" } }).problem, "volume.pool is empty");
    assert.equal(problem({ ...create, volume: { ...vol, sizeBytes: 0 } }).problem, "volume.size_bytes 0 is not a positive whole number of bytes");
    assert.equal(problem({ ...create, volume: { ...vol, sizeBytes: 1.5 } }).problem, "volume.size_bytes 1.5 is not a positive whole number of bytes");
    assert.deepEqual(problem({ ...create, opId: "" }), { opId: "", serverId: "", volumeId: vol.id, problem: "op_id is empty" });
    const both = { $case: "createVolume" as const, createVolume: { image: { ...image, properties: {} }, sourceVolumeId: "v", sourceSnapshotId: "s" } };
    assert.equal(problem({ ...create, op: both }).problem, "create_volume names both an image and a snapshot to copy");
    const halfSnapshot = { $case: "createVolume" as const, createVolume: { image: undefined, sourceVolumeId: "v", sourceSnapshotId: "" } };
    assert.equal(problem({ ...create, op: halfSnapshot }).problem, 'create_volume.source_snapshot_id "" is not a snapshot id');
    const noImageId = { $case: "createVolume" as const, createVolume: { image: { ...image, id: "", properties: {} }, sourceVolumeId: "", sourceSnapshotId: "" } };
    assert.equal(problem({ ...create, op: noImageId }).problem, "create_volume.image.id is empty");
    const extend = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 0 }));
    assert.equal(problem(extend).problem, "extend_volume.size_bytes 0 is not a positive whole number of bytes");
    const withInstance = { ...create, instance: computeOpOf(testOp(testInstance(), { kind: "spawn" })).instance };
    assert.equal(problem(withInstance).problem, "create_volume acts on a volume; the op carries an instance");
  });

  test("a delete needs only the volume's id: a cleanup is not refused over a pool or size it does not use", () => {
    const vol = testVolume();
    const del = computeOpOfVolumeOp(testVolumeOp(vol, { kind: "delete_volume" }));
    const got = agentOpFromProto({ ...del, volume: { ...vol, pool: "", sizeBytes: 0 } });
    assert.equal("problem" in got, false);
    assert.deepEqual(agentOpFromProto({ ...del, volume: { ...vol, id: "" } }), { opId: del.opId, serverId: "", volumeId: "", problem: "volume.id is empty" });
    assert.deepEqual(agentOpFromProto({ ...del, volume: undefined }), { opId: del.opId, serverId: "", volumeId: "", problem: "delete_volume names no volume" });
  });

  test("an op on an instance that carries a volume instead of an instance is an InvalidOp", () => {
    const spawn = computeOpOf(testOp(testInstance(), { kind: "spawn" }));
    assert.deepEqual(agentOpFromProto({ ...spawn, instance: undefined, volume: testVolume() }), {
      opId: spawn.opId,
      serverId: "",
      problem: "an op on an instance (spawn) carries a volume",
    });
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
      volumeId: "",
      volume: undefined,
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

  test("a volume op's outcome goes out with its volume id and the volume's size, and no server id", () => {
    const now = new Date();
    const created = opResultToProto({ opId: "o", serverId: "", volumeId: "vol-1", volume: { sizeBytes: 3 * GIB }, startTime: now, finishTime: now });
    assert.equal(created.serverId, "");
    assert.equal(created.volumeId, "vol-1");
    assert.deepEqual(created.volume, { sizeBytes: 3 * GIB });
    assert.equal(created.powerState, PowerState.POWER_STATE_UNSPECIFIED);
    const deleted = opResultToProto({ opId: "o", serverId: "", volumeId: "vol-1", startTime: now, finishTime: now });
    assert.equal(deleted.volume, undefined);
  });

  test("progress goes out with its task step, or none", () => {
    const step = opProgressToProto({ opId: "o", serverId: "s", percent: 0, message: "m", stage: "SHELVING_OFFLOADING" });
    assert.equal(step.taskState, TaskState.TASK_STATE_SHELVING_OFFLOADING);
    const plain = opProgressToProto({ opId: "o", serverId: "s", percent: 50, message: "m" });
    assert.deepEqual(plain, { opId: "o", serverId: "s", percent: 50, message: "m", taskState: TaskState.TASK_STATE_UNSPECIFIED });
  });
});
