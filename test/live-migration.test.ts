/**
 * Live migration (with progress and cancel) on real MySQL + NATS, each host
 * a fake agent in its own process so one can be slow: where the server
 * runs, what each hypervisor holds, the migration record, the operation,
 * and every host's capacity. Evacuation is in evacuation.test.ts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import type { Operation } from "../gen/novamesh/compute/v1/operation.js";
import { MigrationStatus, MigrationType, PowerState, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import { assertCapacityExact, eventually, plusSmall, failure } from "./harness.js";
import { stack } from "./stack.js";


describe("live migration", () => {
  const fx = stack({
    name: "live-migration",
    agents: ({ id }) => [
      { host: `lm${id}-a` },
      { host: `lm${id}-b` },
      // Its live-migration copy takes 4 × 1.5 s, its stops 1.5 s.
      { host: `lm${id}-s`, faults: { liveMigrate: { delayMs: 1500 }, powerOff: { delayMs: 1500 } } },
    ],
  });
  const { env, admin, alice, agents: hosts, settled, bootOn } = fx;
  // Servers, operations and moves are read as an admin sees them, with host names (members see host ids).
  const [A, B, SLOW] = fx.hosts as [string, string, string];

  test("an ACTIVE server moves while running: target claimed, source released, steps recorded in order", async () => {
    const s = await bootOn(A, "lm-active");
    const before = await assertCapacityExact(env, admin);

    const denied = await failure(alice.servers.liveMigrateServer({ id: s.id, host: B }));
    assert.equal(denied.code, status.PERMISSION_DENIED, "only admins choose the host");

    const res = await alice.servers.liveMigrateServer({ id: s.id });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_MIGRATING);
    assert.equal(res.server!.status, ServerStatus.SERVER_STATUS_MIGRATING);
    assert.equal(res.operation!.action, "live_migrate");
    assert.equal(res.operation!.name, `servers/${s.id}/operations/${encodeURIComponent(res.operation!.requestId)}`);

    const done = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const target = done.host;
    assert.ok(target !== A && target.startsWith(`lm${env.id}-`), `moved to ${target}`);
    assert.deepEqual([done.vmState, done.powerState, done.flavor!.name], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING, "m1.small"]);
    const op = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.deepEqual([op.state, op.done, op.progressPercent], [OperationState.OPERATION_STATE_SUCCEEDED, true, 100]);

    const usage = await assertCapacityExact(env, admin);
    assert.deepEqual(usage.get(A), plusSmall(before.get(A)!, -1), "the source is released");
    assert.deepEqual(usage.get(target), plusSmall(before.get(target)!, 1), "the target is claimed");
    const migs = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(migs.length, 1);
    assert.deepEqual(
      [migs[0]!.type, migs[0]!.status, migs[0]!.sourceHost, migs[0]!.targetHost],
      [MigrationType.MIGRATION_TYPE_LIVE_MIGRATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, A, target],
    );
    const [action] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.equal(action!.action, "live_migrate");
    assert.deepEqual(
      action!.events.map((e) => `${e.name}@${e.host}:${e.result}`),
      [
        `schedule@${target}:Success`,
        `compute_pre_live_migration@${target}:Success`,
        `compute_live_migration@${A}:Success`,
        `compute_post_live_migration@${target}:Success`,
      ],
    );
    // The hypervisors agree: only the target runs it.
    assert.ok(!(s.id in (await hosts.domains(A))), "the source no longer has it");
    const dom = (await hosts.domains(target))[s.id];
    assert.equal(dom?.powerState, "RUNNING");
    assert.equal(dom?.incoming, undefined, "the target took it over");
  });

  test("an admin moves a PAUSED server to a named host, where it stays paused; STOPPED servers and bad hosts are refused", async () => {
    const s = await bootOn(A, "lm-paused");
    await alice.servers.pauseServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    const before = await assertCapacityExact(env, admin);

    const here = await failure(admin.servers.liveMigrateServer({ id: s.id, host: A }));
    assert.equal(here.code, status.INVALID_ARGUMENT, here.message);
    assert.deepEqual(here.fields, ["host"]);
    assert.equal((await failure(admin.servers.liveMigrateServer({ id: s.id, host: "no-such-host" }))).code, status.NOT_FOUND);

    const res = await admin.servers.liveMigrateServer({ id: s.id, host: B });
    assert.equal(res.server!.status, ServerStatus.SERVER_STATUS_MIGRATING);
    const moved = await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    assert.deepEqual([moved.host, moved.vmState, moved.powerState], [B, VmState.VM_STATE_PAUSED, PowerState.POWER_STATE_PAUSED]);
    assert.equal((await hosts.domains(B))[s.id]?.powerState, "PAUSED", "it lands paused");
    assert.ok(!(s.id in (await hosts.domains(A))));
    const usage = await assertCapacityExact(env, admin);
    assert.deepEqual(usage.get(A), plusSmall(before.get(A)!, -1));
    assert.deepEqual(usage.get(B), plusSmall(before.get(B)!, 1));
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.deepEqual([m!.type, m!.status, m!.sourceHost, m!.targetHost], [MigrationType.MIGRATION_TYPE_LIVE_MIGRATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, A, B]);

    // A stopped server cannot be live-migrated.
    await alice.servers.unpauseServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    const stopped = await failure(alice.servers.liveMigrateServer({ id: s.id }));
    assert.equal(stopped.code, status.FAILED_PRECONDITION, stopped.message);
    assert.equal(stopped.reason, "INVALID_STATE");
    assert.equal(stopped.metadata["vm_state"], "STOPPED");
    assert.equal((await admin.servers.listMigrations({ serverId: s.id })).migrations.length, 1, "the refused call recorded no migration");
  });

  test("a slow copy shows progress and can be cancelled: the server stays running on its source; a stop cannot be cancelled", async () => {
    const s = await bootOn(SLOW, "lm-cancel");
    const before = await assertCapacityExact(env, admin);

    const res = await alice.servers.liveMigrateServer({ id: s.id });
    const name = res.operation!.name;
    const copying = await eventually(
      async () => {
        const op = (await admin.operations.getOperation({ name })).operation!;
        return op.cancellable && op.progressPercent > 0 && op.progressPercent < 100 ? op : null;
      },
      { what: "the copy under way with progress", timeoutMs: 15_000, intervalMs: 100 },
    );
    assert.equal(copying.state, OperationState.OPERATION_STATE_RUNNING);
    assert.equal(copying.done, false);
    const during = (await admin.servers.getServer({ id: s.id })).server!;
    assert.deepEqual([during.status, during.taskState], [ServerStatus.SERVER_STATUS_MIGRATING, TaskState.TASK_STATE_MIGRATING]);
    const [pending] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    const target = pending!.targetHost;
    assert.ok(target && target !== SLOW, `copying to ${target}`);

    const cancel = await alice.operations.cancelOperation({ name });
    assert.equal(cancel.operation!.name, name);
    const ended: Operation = (await admin.operations.waitOperation({ name, timeoutSeconds: 20 })).operation!;
    assert.equal(ended.state, OperationState.OPERATION_STATE_CANCELLED);
    assert.equal(ended.done, true);
    assert.equal(ended.error!.code, status.CANCELLED);

    const stayed = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual([stayed.host, stayed.vmState, stayed.powerState], [SLOW, VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING]);
    const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(m!.status, MigrationStatus.MIGRATION_STATUS_CANCELLED);
    assert.deepEqual(await assertCapacityExact(env, admin), before, "the target's claim is released");
    assert.equal((await hosts.domains(SLOW))[s.id]?.powerState, "RUNNING", "the source still runs it");
    await eventually(async () => !(s.id in (await hosts.domains(target))), { what: "the target's incoming copy removed" });

    const late = await failure(alice.operations.cancelOperation({ name }));
    assert.equal(late.code, status.FAILED_PRECONDITION);
    assert.equal(late.reason, "OPERATION_DONE");

    // A stop (1.5 s on this host) runs, but cannot be cancelled.
    const stop = await alice.servers.stopServer({ id: s.id });
    const refused = await failure(alice.operations.cancelOperation({ name: stop.operation!.name }));
    assert.equal(refused.code, status.FAILED_PRECONDITION, refused.message);
    assert.equal(refused.reason, "NOT_CANCELLABLE");
    const stopped = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(stopped.host, SLOW);
    assert.equal((await admin.operations.getOperation({ name: stop.operation!.name })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
  });
});
