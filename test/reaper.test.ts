/**
 * The reaper on real MySQL + NATS with fake agents slower than short
 * configured deadlines: a build, a resize and a snapshot upload that
 * outlive their task's deadline each end in a defined state with a
 * TASK_TIMED_OUT fault, with every host's capacity equal to its
 * allocations; a step the host reports gets its own deadline; and an op
 * lost while the controller was down (it never reaches the agent) is ended
 * at its deadline by the restarted controller.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { MigrationStatus, PowerState, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server } from "../gen/novamesh/compute/v1/server.js";
import { assertCapacityExact, eventually, failure, operationError, waitServers, withOnlyHost } from "./harness.js";
import { stack } from "./stack.js";

describe("the reaper", () => {
  const fx = stack({
    name: "reaper",
    fixedPort: true,
    controller: {
      taskTimeouts: "SPAWNING=3,RESIZE_FINISH=3,PAUSING=3,REBUILDING=3,REBUILD_SPAWNING=5,IMAGE_SNAPSHOT=5,IMAGE_UPLOADING=2",
      reaperIntervalSeconds: 1,
      reaperGraceSeconds: 0,
      resizeConfirmWindowSeconds: 0,
    },
    agents: ({ id }) => [
      // A: a rebuild's two steps take 2 s each, a snapshot's 4 s each.
      { host: `rp${id}-a`, faults: { rebuild: { delayMs: 2000 }, snapshot: { delayMs: 4000 } } },
      // F: finishing a migration takes 8 s.
      { host: `rp${id}-f`, faults: { finishMigration: { delayMs: 8000 } } },
      // S: a spawn takes 8 s.
      { host: `rp${id}-s`, faults: { spawn: { delayMs: 8000 } } },
    ],
  });
  const { env, admin, alice, imageId, agents: hosts, settled, bootOn } = fx;
  // Servers, operations and moves are read as an admin sees them, with host names (members see host ids).
  const [A, F, S] = fx.hosts as [string, string, string];
  // Set by the tests, checked again once the slow hosts have finished.
  let unbuilt: Server;
  let unresized: Server;

  const taskEnded = async (id: string, timeoutMs = 20_000) =>
    (await waitServers(admin, [id], (x) => x.taskState === TaskState.TASK_STATE_UNSPECIFIED, "task ended", timeoutMs))[0]!;
  const taskIs = async (id: string, task: TaskState) => (await waitServers(admin, [id], (x) => x.taskState === task, TaskState[task], 15_000))[0]!;
  const events = async (id: string) =>
    (await admin.servers.listServerActions({ serverId: id })).actions[0]!.events.map((e) => `${e.name}:${e.result}`);

  test("a build that outlives SPAWNING's deadline goes to ERROR with a fault, and its claim is released exactly", async () => {
    const before = await assertCapacityExact(env, admin);
    const building = await withOnlyHost(admin, S, async () => {
      const s = (await alice.servers.createServer({ name: "slow-build", flavorId: "m1.small", imageId })).server!;
      return (await waitServers(admin, [s.id], (x) => x.taskState === TaskState.TASK_STATE_SPAWNING && x.host === S, "SPAWNING on S"))[0]!;
    });
    const deadline = building.taskDeadline!;
    assert.equal((await assertCapacityExact(env, admin)).get(S)!.vms, before.get(S)!.vms + 1, "S holds the claim while it builds");

    const ended = await taskEnded(building.id);
    assert.deepEqual([ended.vmState, ended.host, ended.powerState], [VmState.VM_STATE_ERROR, "", PowerState.POWER_STATE_NOSTATE]);
    assert.equal(ended.fault!.code, "TASK_TIMED_OUT");
    assert.equal(ended.fault!.message, `SPAWNING did not finish within 3 s on host ${S}; the build failed and the host will remove what it made`);
    assert.deepEqual(ended.fault!.details, { task_state: "SPAWNING", timeout_seconds: "3", host: S });
    assert.ok(ended.fault!.createTime!.getTime() >= deadline.getTime(), "not ended before its deadline");
    const op = (await alice.operations.listOperations({ serverId: building.id })).operations[0]!;
    assert.deepEqual([op.action, op.state], ["create", OperationState.OPERATION_STATE_FAILED]);
    const err = operationError(op);
    assert.deepEqual([err.code, err.reason, err.metadata["task_state"]], [status.DEADLINE_EXCEEDED, "TASK_TIMED_OUT", "SPAWNING"]);
    const reaped = (await fx.ctl.metrics!.registry.getSingleMetric("novamesh_tasks_timed_out_total")!.get()).values;
    assert.deepEqual(reaped.map((v) => [v.labels.task, v.value]), [["SPAWNING", 1]], "the metric counts the reaped task");
    // The host is told to destroy what it made; that waits for the spawn to end.
    assert.deepEqual(await events(building.id), ["schedule:Success", "compute_spawn:Error", "task_timeout:Error", "compute_terminate:"]);
    assert.deepEqual(await assertCapacityExact(env, admin), before, "the claim on S is released");
    unbuilt = ended;
  });

  test("a resize whose finish outlives RESIZE_FINISH's deadline is rolled back to its source, capacity exact", async () => {
    const s = await bootOn(A, "slow-resize");
    const before = await assertCapacityExact(env, admin);
    const res = await withOnlyHost(admin, F, async () => {
      const r = await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium" });
      await taskIs(s.id, TaskState.TASK_STATE_RESIZE_FINISH);
      return r;
    });
    const during = await assertCapacityExact(env, admin);
    assert.equal(during.get(F)!.vms, before.get(F)!.vms + 1, "the target is claimed while the move finishes");

    const back = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(
      [back.host, back.flavor!.name, back.vmState, back.powerState],
      [A, "m1.small", VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING],
    );
    // Running again on its source, the server is in no error: the timeout is the resize operation's.
    assert.equal(back.fault, undefined);
    assert.equal((await hosts.domains(A))[s.id]?.powerState, "RUNNING", "the source runs it again");
    const op = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.deepEqual([operationError(op).code, operationError(op).reason], [status.DEADLINE_EXCEEDED, "TASK_TIMED_OUT"]);
    assert.equal(operationError(op).message, `RESIZE_FINISH did not finish within 3 s on host ${F}; the move was rolled back to the source host`);
    const actions = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.ok(actions.some((a) => a.events.some((e) => e.name === "task_timeout" && e.fault.includes("RESIZE_FINISH did not finish"))), "the action log keeps the timeout");
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(m!.status, MigrationStatus.MIGRATION_STATUS_ERROR);
    assert.deepEqual(await assertCapacityExact(env, admin), before, "the target's claim is released and the source's handed back");
    unresized = back;
  });

  test("a step the host reports gets its own deadline: a rebuild outlasting REBUILDING's finishes; an upload past IMAGE_UPLOADING's is reaped", async () => {
    const s = await bootOn(A, "steps");
    // REBUILDING=3: the rebuild takes 4 s, but its second step has REBUILD_SPAWNING's 5 s from when it began.
    const res = await alice.servers.rebuildServer({ id: s.id });
    const first = res.server!.taskDeadline!.getTime();
    const spawning = await taskIs(s.id, TaskState.TASK_STATE_REBUILD_SPAWNING);
    assert.ok(spawning.taskDeadline!.getTime() - first >= 3000, "the step's deadline is 5 s after it began, 2 s into the task");
    const shown = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(shown.deadline!.getTime(), spawning.taskDeadline!.getTime(), "the operation shows the step's deadline");
    const rebuilt = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(rebuilt.fault, undefined);
    assert.equal((await admin.operations.getOperation({ name: res.operation!.name })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);

    // IMAGE_SNAPSHOT=5, IMAGE_UPLOADING=2: the capture takes 4 s, the upload 4 more.
    const snap = await alice.servers.createServerImage({ id: s.id, name: "slow-upload" });
    const snapDeadline = snap.server!.taskDeadline!.getTime();
    const uploading = await taskIs(s.id, TaskState.TASK_STATE_IMAGE_UPLOADING);
    const uploadDeadline = uploading.taskDeadline!.getTime();
    assert.ok(uploadDeadline > snapDeadline, "the upload's 2 s run from when it began, past the snapshot's deadline");
    const ended = await taskEnded(s.id);
    assert.deepEqual([ended.vmState, ended.powerState, ended.host], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING, A]);
    assert.equal(ended.fault!.code, "TASK_TIMED_OUT");
    assert.equal(
      ended.fault!.message,
      `IMAGE_UPLOADING did not finish within 2 s on host ${A}; the snapshot was abandoned and its image deleted; the server is unchanged`,
    );
    assert.ok(ended.fault!.createTime!.getTime() >= uploadDeadline, "reaped at the step's deadline, not the task's first one");
    const op = (await admin.operations.getOperation({ name: snap.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    const err = operationError(op);
    assert.deepEqual([err.code, err.reason, err.metadata["task_state"], err.metadata["timeout_seconds"]], [status.DEADLINE_EXCEEDED, "TASK_TIMED_OUT", "IMAGE_UPLOADING", "2"]);
    assert.equal((await failure(alice.images.getImage({ id: snap.imageId }))).code, status.NOT_FOUND, "the abandoned image is gone");
  });

  test("late results change nothing: the slow hosts finish, then remove what the reaper gave up", async () => {
    assert.ok(unbuilt && unresized, "set up by the tests before");
    await eventually(
      async () => !(unbuilt.id in (await hosts.domains(S))) && !(unresized.id in (await hosts.domains(F))),
      { what: "the slow hosts removed their copies", timeoutMs: 20_000 },
    );
    const calls = (await hosts.calls(S)).filter((c) => c.instanceId === unbuilt.id).map((c) => c.method);
    assert.deepEqual(calls, ["spawn", "destroy"]);
    assert.equal((await events(unbuilt.id)).at(-1), "compute_terminate:Success");
    const [b, r] = await Promise.all([unbuilt.id, unresized.id].map(async (id) => (await admin.servers.getServer({ id })).server!));
    assert.deepEqual([b!.status, b!.fault!.code], [ServerStatus.SERVER_STATUS_ERROR, "TASK_TIMED_OUT"]);
    assert.deepEqual([r!.status, r!.host, r!.flavor!.name], [ServerStatus.SERVER_STATUS_ACTIVE, A, "m1.small"]);
    await assertCapacityExact(env, admin);
  });

  test("an op lost while the controller was down never reaches the agent; the restarted controller ends its task at the deadline", async () => {
    const s = await bootOn(A, "lost-op");
    // This controller commits ops to its outbox but never publishes them.
    await fx.stopController();
    await fx.startController({ holdOutbox: true });
    const res = await eventually(() => alice.servers.pauseServer({ id: s.id, requestId: "lost-pause" }), { what: "pause accepted" });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_PAUSING);
    const deadline = res.server!.taskDeadline!;
    const queued = await env.sql<{ msg_id: string; kind: string }>("SELECT o.msg_id, c.kind FROM outbox o JOIN compute_ops c ON c.op_id = o.msg_id");
    assert.deepEqual(queued.map((q) => q.kind), ["pause"], "the pause op is committed, not sent");
    // The controller goes, and the op with it: its outbox row is lost.
    await fx.stopController();
    await env.sql("DELETE FROM outbox WHERE msg_id = ?", [queued[0]!.msg_id]);
    await fx.startController();

    const ended = await taskEnded(s.id);
    assert.deepEqual([ended.vmState, ended.powerState, ended.host], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING, A]);
    assert.equal(ended.fault!.code, "TASK_TIMED_OUT");
    assert.equal(ended.fault!.message, `PAUSING did not finish within 3 s on host ${A}; the server keeps its last known state`);
    assert.ok(ended.fault!.createTime!.getTime() >= deadline.getTime(), "not ended before its deadline");
    const op = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    const err = operationError(op);
    assert.deepEqual([err.code, err.reason, err.metadata["task_state"], err.metadata["host"]], [status.DEADLINE_EXCEEDED, "TASK_TIMED_OUT", "PAUSING", A]);
    assert.match(err.message, /PAUSING did not finish within 3 s/);
    assert.deepEqual(await events(s.id), ["compute_pause:Error", "task_timeout:Error"]);
    assert.ok(!(await hosts.calls(A)).some((c) => c.method === "pause" && c.instanceId === s.id), "the host never paused it");
    assert.equal((await hosts.domains(A))[s.id]?.powerState, "RUNNING");

    // Not stuck: the next pause reaches the host.
    await alice.servers.pauseServer({ id: s.id });
    const paused = await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    assert.equal(paused.fault, undefined);
  });
});
