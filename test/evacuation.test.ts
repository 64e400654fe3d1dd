/**
 * Evacuation on real MySQL + NATS, each host a fake agent in its own process
 * so one can die: servers of a dead host in every state evacuate allows
 * (ACTIVE, STOPPED, PAUSED, SUSPENDED, RESIZED, ERROR) are rebuilt on
 * another host, the capacity of every host follows, and the dead host
 * removes its old copies when it comes back.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { MigrationStatus, MigrationType, PowerState, RebootType, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server, WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { stopAgent } from "./agents.js";
import { assertCapacityExact, eventually, plusSmall, servicesUp, withOnlyHost, failure } from "./harness.js";
import { stack } from "./stack.js";
import type { HostUsage } from "./harness.js";


describe("evacuation", () => {
  // Builds on the survivors take a second, so each evacuation step can be seen.
  const slowBuilds = { spawn: { delayMs: 1000 }, rebuild: { delayMs: 1000 } };
  const fx = stack({
    name: "evacuate",
    agents: ({ id }) => [
      { host: `ev${id}-x`, faults: { reboot: { error: "guest kernel panic", failTimes: 1 } } },
      { host: `ev${id}-y`, faults: slowBuilds },
      { host: `ev${id}-z`, faults: slowBuilds },
    ],
  });
  const { env, admin, alice, agents: hosts, settled, boot } = fx;
  const [X, Y, Z] = fx.hosts as [string, string, string];
  // Servers whose host X dies: one running, one stopped, one resized onto
  // X, one paused, one suspended and one in ERROR (X's first reboot fails).
  let active: Server;
  let stoppedOne: Server;
  let resized: Server;
  let others: Array<[string, Server]>;
  let atDeath: Map<string, HostUsage>;
  let afterBoth: Map<string, HostUsage>;
  const evacuatedTo = new Map<string, string>();

  test("servers of a dead host are rebuilt on another host: the dead host's capacity is released, the new host's claimed", async () => {
    const names = ["ev-active", "ev-stopped", "ev-paused", "ev-suspended", "ev-error"];
    const booted = await withOnlyHost(admin, X, () => Promise.all(names.map((name) => boot(name))));
    assert.deepEqual(booted.map((b) => b.host), names.map(() => X));
    [active, stoppedOne] = booted as [Server, Server];
    const [, , paused, suspended, errored] = booted as [Server, Server, Server, Server, Server];
    await alice.servers.stopServer({ id: stoppedOne.id });
    await alice.servers.pauseServer({ id: paused.id });
    await alice.servers.suspendServer({ id: suspended.id });
    await alice.servers.rebootServer({ id: errored.id, type: RebootType.REBOOT_TYPE_SOFT });
    await settled(stoppedOne.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    await settled(paused.id, ServerStatus.SERVER_STATUS_PAUSED);
    await settled(suspended.id, ServerStatus.SERVER_STATUS_SUSPENDED);
    assert.equal((await settled(errored.id, ServerStatus.SERVER_STATUS_ERROR)).host, X, "in ERROR on X");
    others = [["PAUSED", paused], ["SUSPENDED", suspended], ["ERROR", errored]];
    // One more, resized (cold-migrated) from Y onto X and not yet confirmed.
    resized = await withOnlyHost(admin, Y, () => boot("ev-resized"));
    await admin.servers.migrateServer({ id: resized.id, host: X });
    resized = await settled(resized.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.equal(resized.host, X);

    // Not while the host is up.
    const up = await failure(admin.servers.evacuateServer({ id: active.id }));
    assert.equal(up.code, status.FAILED_PRECONDITION, up.message);
    assert.equal(up.reason, "HOST_UP");

    await stopAgent(hosts.procs.get(X)!, "SIGKILL");
    await eventually(async () => (await admin.hosts.listServices({ host: X })).services[0]?.state === ServiceState.SERVICE_STATE_DOWN, {
      what: `${X} down`,
      timeoutMs: 20_000,
    });
    atDeath = await assertCapacityExact(env, admin);
    assert.equal(atDeath.get(X)!.vms, 6, "the dead host still holds its servers until they are evacuated");

    const member = await failure(alice.servers.evacuateServer({ id: active.id }));
    assert.equal(member.code, status.PERMISSION_DENIED, member.message);

    // Watch the server go through the evacuation.
    const seen: WatchServersResponse[] = [];
    const stream = alice.servers.raw.watchServers({ afterIndex: 0, serverId: active.id, allProjects: false, sendInitialState: false }, alice.servers.metadata());
    stream.on("data", (ev: WatchServersResponse) => seen.push(ev));
    stream.on("error", () => undefined);
    await new Promise((r) => setTimeout(r, 300));

    const res = await admin.servers.evacuateServer({ id: active.id });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_REBUILDING);
    assert.equal(res.server!.status, ServerStatus.SERVER_STATUS_REBUILD);
    assert.equal(res.operation!.action, "evacuate");
    const moved = await settled(active.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await new Promise((r) => setTimeout(r, 300));
    stream.cancel();
    assert.ok(moved.host === Y || moved.host === Z, `rebuilt on ${moved.host}`);
    assert.deepEqual([moved.vmState, moved.powerState], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING]);
    const tasks = seen.map((e) => TaskState[e.server!.taskState]!.slice(11));
    assert.deepEqual(
      tasks.filter((t, i) => t !== tasks[i - 1]),
      ["REBUILDING", "REBUILD_SPAWNING", "UNSPECIFIED"],
      "a host is chosen, then the new host builds it",
    );
    assert.equal((await hosts.domains(moved.host))[active.id]?.powerState, "RUNNING");
    const op = (await alice.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const [m] = (await admin.servers.listMigrations({ serverId: active.id })).migrations;
    assert.deepEqual(
      [m!.type, m!.status, m!.sourceHost, m!.targetHost],
      [MigrationType.MIGRATION_TYPE_EVACUATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, X, moved.host],
    );
    const mid = await assertCapacityExact(env, admin);
    assert.deepEqual(mid.get(X), plusSmall(atDeath.get(X)!, -1), "the dead host no longer counts it");
    assert.deepEqual(mid.get(moved.host), plusSmall(atDeath.get(moved.host)!, 1), "the new host does");
    evacuatedTo.set(active.id, moved.host);

    // The stopped one, to a named host: it comes up there.
    const named = moved.host === Y ? Z : Y;
    await admin.servers.evacuateServer({ id: stoppedOne.id, host: named });
    const moved2 = await settled(stoppedOne.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual([moved2.host, moved2.powerState], [named, PowerState.POWER_STATE_RUNNING]);
    const [m2] = (await admin.servers.listMigrations({ serverId: stoppedOne.id })).migrations;
    assert.deepEqual([m2!.type, m2!.status, m2!.sourceHost, m2!.targetHost], [MigrationType.MIGRATION_TYPE_EVACUATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, X, named]);
    afterBoth = await assertCapacityExact(env, admin);
    assert.deepEqual(afterBoth.get(X), plusSmall(mid.get(X)!, -1));
    assert.deepEqual(afterBoth.get(named), plusSmall(mid.get(named)!, 1));
    evacuatedTo.set(stoppedOne.id, named);
  });

  test("a server resized onto the dead host (awaiting confirm) can be evacuated too", async () => {
    assert.ok(resized, "set up by the previous test");
    const res = await admin.servers.evacuateServer({ id: resized.id }).catch((e: ServiceError) => e);
    assert.ok(!(res instanceof Error), `evacuate from RESIZED is allowed (only BUILDING is refused), got: ${(res as ServiceError).details}`);
    const moved = await settled(resized.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.ok(moved.host === Y || moved.host === Z, `rebuilt on ${moved.host}`);
    assert.equal(moved.powerState, PowerState.POWER_STATE_RUNNING);
    const usage = await assertCapacityExact(env, admin);
    assert.deepEqual(usage.get(X), plusSmall(afterBoth.get(X)!, -1), "the dead host no longer counts it");
    evacuatedTo.set(resized.id, moved.host);
  });

  test("PAUSED, SUSPENDED and ERROR servers of the dead host are rebuilt on another host and run there", async () => {
    assert.ok(others, "set up by the first test");
    const before = await assertCapacityExact(env, admin);
    for (const [vm, s] of others) {
      const res = await admin.servers.evacuateServer({ id: s.id }).catch((e: ServiceError) => e);
      assert.ok(!(res instanceof Error), `evacuate from ${vm}: ${(res as ServiceError).details}`);
      assert.equal(res.server!.taskState, TaskState.TASK_STATE_REBUILDING, vm);
    }
    const placed = new Map<string, number>();
    for (const [vm, s] of others) {
      const moved = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
      assert.ok(moved.host === Y || moved.host === Z, `${vm}: rebuilt on ${moved.host}`);
      assert.deepEqual([moved.vmState, moved.powerState], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING], vm);
      assert.equal((await hosts.domains(moved.host))[s.id]?.powerState, "RUNNING", `${vm}: its new host runs it`);
      const [m] = (await admin.servers.listMigrations({ serverId: s.id })).migrations;
      assert.deepEqual([m!.type, m!.status, m!.sourceHost], [MigrationType.MIGRATION_TYPE_EVACUATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, X], vm);
      placed.set(moved.host, (placed.get(moved.host) ?? 0) + 1);
      evacuatedTo.set(s.id, moved.host);
    }
    const usage = await assertCapacityExact(env, admin);
    assert.deepEqual(usage.get(X), plusSmall(before.get(X)!, -1, 3), "the dead host holds none of them");
    for (const h of [Y, Z]) assert.deepEqual(usage.get(h), plusSmall(before.get(h)!, 1, placed.get(h) ?? 0), `${h} holds what it runs`);
  });

  test("the dead host comes back: it destroys its old copies, and the evacuated servers stay where they are", async () => {
    assert.equal(evacuatedTo.size, 6, "set up by the tests before");
    const usage = await assertCapacityExact(env, admin);
    const stale = await hosts.domains(X);
    for (const id of evacuatedTo.keys()) assert.ok(id in stale, "the dead host's disk still has its copy");
    hosts.start({ host: X });
    await servicesUp(admin, 3);
    await eventually(
      async () => {
        const d = await hosts.domains(X);
        return [...evacuatedTo.keys()].every((id) => !(id in d));
      },
      { what: `${X} destroyed its old copies`, timeoutMs: 20_000 },
    );
    await new Promise((r) => setTimeout(r, 1500)); // a report or two from the returned host
    for (const [id, host] of evacuatedTo) {
      const s = (await admin.servers.getServer({ id })).server!;
      assert.deepEqual([s.status, s.host, s.taskState, s.powerState], [ServerStatus.SERVER_STATUS_ACTIVE, host, TaskState.TASK_STATE_UNSPECIFIED, PowerState.POWER_STATE_RUNNING]);
      assert.equal((await hosts.domains(host))[id]?.powerState, "RUNNING");
    }
    assert.deepEqual(await assertCapacityExact(env, admin), usage, "the return changes no claim");
  });
});
