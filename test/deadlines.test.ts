/**
 * No server stays in a task past its deadline: an agent killed mid-action
 * and a controller restarted mid-action each leave the server in a defined
 * state, with a fault that says what timed out when it did; a late op is not
 * run after its deadline; a finished resize is confirmed after the confirm
 * window.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { PowerState, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import { driverCalls } from "./agents.js";
import { assertCapacityExact, eventually, servicesUp, waitServers } from "./harness.js";
import { stack } from "./stack.js";

describe("task deadlines", () => {
  // Pauses hang (a guest that never answers); suspends take 2.5 s.
  const faults = { pause: { delayMs: 600_000 }, suspend: { delayMs: 2500 } };
  const fx = stack({
    name: "deadlines",
    fixedPort: true,
    // A host is down after 20 s without a report (not the environment's 5 s): an agent process just restarted on a
    // loaded machine may go that long between its first reports, and a create must not find every host down then.
    controller: { taskTimeouts: "PAUSING=3,SUSPENDING=30", reaperIntervalSeconds: 1, reaperGraceSeconds: 0, resizeConfirmWindowSeconds: 2, serviceDownTimeSeconds: 20 },
    flavor: "m1.tiny",
    agents: ({ id }) => [{ host: `dl${id}`, hosts: 2, faults }],
  });
  const { env, admin, alice, dir, settled, boot } = fx;
  const host = `dl${env.id}`;
  const up = (n: number) => servicesUp(admin, n);

  test("an agent killed mid-pause: the task ends at its deadline with a fault, and the late op never runs", async () => {
    const s = await boot("hang");
    const res = await alice.servers.pauseServer({ id: s.id });
    const deadline = res.server!.taskDeadline!.getTime();
    assert.ok(Math.abs(deadline - Date.now() - 3000) < 1500, "PAUSING has its 3 s deadline");
    const statePath = join(dir, s.host, "fake-domains.json");
    await eventually(async () => (await driverCalls(statePath)).some((c) => c.method === "pause" && c.instanceId === s.id), { what: "pause started" });
    await fx.agents.stop(host, "SIGKILL");

    const [ended] = await waitServers(alice, [s.id], (x) => x.taskState === TaskState.TASK_STATE_UNSPECIFIED, "task ended", 15_000);
    assert.equal(ended!.vmState, VmState.VM_STATE_ACTIVE, "the server keeps its last known state");
    assert.equal(ended!.fault!.code, "TASK_TIMED_OUT");
    assert.match(ended!.fault!.message, /PAUSING did not finish within 3 s on host/);
    const op = (await alice.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(op.error!.code, status.DEADLINE_EXCEEDED);
    const action = (await alice.servers.listServerActions({ serverId: s.id })).actions[0]!;
    assert.deepEqual(
      action.events.map((e) => `${e.name}:${e.result}`),
      ["compute_pause:Error", "task_timeout:Error"],
    );
    // Reaped within a reaper interval (1 s) of the deadline, by the
    // controller's own record of when (not by when this test polled).
    const reapedAt = action.events[1]!.startTime!.getTime();
    assert.ok(reapedAt >= deadline - 100 && reapedAt - deadline < 2500, `reaped ${reapedAt - deadline} ms after the deadline`);

    // The agent comes back: JetStream redelivers the pause, past its
    // deadline, so the agent does not run it; the server stays running.
    const pausesBefore = (await driverCalls(statePath)).filter((c) => c.method === "pause").length;
    fx.agents.restart(host);
    await up(2);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await driverCalls(statePath)).filter((c) => c.method === "pause").length, pausesBefore);
    const after = (await alice.servers.getServer({ id: s.id })).server!;
    assert.deepEqual([after.vmState, after.powerState, after.taskState], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING, TaskState.TASK_STATE_UNSPECIFIED]);
  });

  test("a controller restarted mid-suspend: the new one applies the agent's result before the deadline", async () => {
    const s = await boot("restart");
    const res = await alice.servers.suspendServer({ id: s.id });
    await fx.stopController();
    await new Promise((r) => setTimeout(r, 3000));
    await fx.startController();
    const [done] = await waitServers(alice, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_SUSPENDED && x.taskState === TaskState.TASK_STATE_UNSPECIFIED, "SUSPENDED", 25_000);
    assert.ok(Date.now() < res.server!.taskDeadline!.getTime(), "before the deadline");
    assert.equal(done!.powerState, PowerState.POWER_STATE_SUSPENDED);
    assert.equal(done!.fault, undefined);
    const op = (await alice.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);
  });

  test("a finished resize is confirmed automatically after the confirm window", async () => {
    // Both agents report to the restarted controller again.
    const since = Date.now();
    await eventually(
      async () => (await admin.hosts.listServices({})).services.every((svc) => (svc.lastSeenTime?.getTime() ?? 0) > since),
      { what: "both agents reporting", timeoutMs: 30_000 },
    );
    const s = await boot("autoconfirm");
    await alice.servers.migrateServer({ id: s.id });
    const moved = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    const confirmed = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(confirmed.host, moved.host);
    const action = (await alice.servers.listServerActions({ serverId: s.id })).actions[0]!;
    assert.equal(action.action, "confirm_resize");
    assert.match(action.requestId, /^auto-confirm-/);
    await assertCapacityExact(env, admin);
    const source = (await admin.hypervisors()).find((h) => h.hostname === s.host)!;
    assert.equal(source.runningVms, (await admin.servers.listServers({ host: s.host, allProjects: true })).servers.length);
  });
});
