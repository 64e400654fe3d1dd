/**
 * Live migration (with progress and cancel) and evacuation on real MySQL +
 * NATS, each host a fake agent in its own process so one can be slow and
 * one can die: where the server runs, what each hypervisor holds, the
 * migration record, the operation, and every host's capacity.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import type { Operation } from "../gen/novamesh/compute/v1/operation.js";
import { MigrationStatus, MigrationType, PowerState, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server, WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import type { Controller } from "../controller/controller.js";
import { fakeDomains, spawnAgent, stopAgent, tempDir } from "./agents.js";
import { TestEnv, assertCapacityExact, eventually, servicesUp, settled as settledIn, withOnlyHost, failure } from "./harness.js";
import type { Clients } from "./harness.js";

const SMALL = { vcpus: 1, ram: 2048, disk: 20 };
type Usage = { vcpus: number; ram: number; disk: number; vms: number };
const plus = (u: Usage, sign: 1 | -1): Usage => ({ vcpus: u.vcpus + sign * SMALL.vcpus, ram: u.ram + sign * SMALL.ram, disk: u.disk + sign * SMALL.disk, vms: u.vms + sign });

/** Agents of one test environment, one process per host, each with its own state dir. */
class Hosts {
  readonly procs = new Map<string, ChildProcess>();
  constructor(
    private readonly env: TestEnv,
    private readonly address: () => string,
    readonly dir: string,
  ) {}

  start(host: string, faults?: object): ChildProcess {
    const child = spawnAgent({
      controller: this.address(),
      token: this.env.adminToken,
      logFile: join(this.dir, `${host}.log`),
      args: ["--host", host, "--driver", "fake", "--state-dir", join(this.dir, host), "--vcpus", "8", "--memory-mb", "16384", "--disk-gb", "200", ...(faults ? ["--fake-faults", JSON.stringify(faults)] : [])],
    });
    this.procs.set(host, child);
    return child;
  }

  domains(host: string) {
    return fakeDomains(join(this.dir, host, "fake-domains.json"));
  }

  async stopAll(): Promise<void> {
    for (const p of this.procs.values()) await stopAgent(p);
  }
}

describe("live migration", () => {
  const env = new TestEnv();
  let ctl: Controller;
  let admin: Clients;
  let alice: Clients;
  let imageId: string;
  let hosts: Hosts;
  const A = `lm${env.id}-a`;
  const B = `lm${env.id}-b`;
  // Its live-migration copy takes 4 × 1.5 s, its stops 1.5 s.
  const SLOW = `lm${env.id}-s`;

  before(async () => {
    ctl = await env.startController();
    admin = env.admin(ctl);
    alice = await env.as(ctl, "alice");
    imageId = await env.image(ctl);
    hosts = new Hosts(env, () => env.address(ctl), await tempDir("live-migration"));
    hosts.start(A);
    hosts.start(B);
    hosts.start(SLOW, { liveMigrate: { delayMs: 1500 }, powerOff: { delayMs: 1500 } });
    await servicesUp(admin, 3);
  });
  after(async () => {
    if (hosts) await hosts.stopAll();
    await env.cleanup();
  });

  const settled = (id: string, st: ServerStatus) => settledIn(alice, id, st);
  const bootOn = (host: string, name: string) =>
    withOnlyHost(admin, host, async () => {
      const s = (await alice.servers.createServer({ name, flavorId: "m1.small", imageId })).server!;
      const active = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
      assert.equal(active.host, host);
      return active;
    });

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
    const op = (await alice.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.deepEqual([op.state, op.done, op.progressPercent], [OperationState.OPERATION_STATE_SUCCEEDED, true, 100]);

    const usage = await assertCapacityExact(env, admin);
    assert.deepEqual(usage.get(A), plus(before.get(A)!, -1), "the source is released");
    assert.deepEqual(usage.get(target), plus(before.get(target)!, 1), "the target is claimed");
    const migs = (await alice.servers.listMigrations({ serverId: s.id })).migrations;
    assert.equal(migs.length, 1);
    assert.deepEqual(
      [migs[0]!.type, migs[0]!.status, migs[0]!.sourceHost, migs[0]!.targetHost],
      [MigrationType.MIGRATION_TYPE_LIVE_MIGRATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, A, target],
    );
    const [action] = (await alice.servers.listServerActions({ serverId: s.id })).actions;
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
    assert.deepEqual(usage.get(A), plus(before.get(A)!, -1));
    assert.deepEqual(usage.get(B), plus(before.get(B)!, 1));
    const [m] = (await alice.servers.listMigrations({ serverId: s.id })).migrations;
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
    assert.equal((await alice.servers.listMigrations({ serverId: s.id })).migrations.length, 1, "the refused call recorded no migration");
  });

  test("a slow copy shows progress and can be cancelled: the server stays running on its source; a stop cannot be cancelled", async () => {
    const s = await bootOn(SLOW, "lm-cancel");
    const before = await assertCapacityExact(env, admin);

    const res = await alice.servers.liveMigrateServer({ id: s.id });
    const name = res.operation!.name;
    const copying = await eventually(
      async () => {
        const op = (await alice.operations.getOperation({ name })).operation!;
        return op.cancellable && op.progressPercent > 0 && op.progressPercent < 100 ? op : null;
      },
      { what: "the copy under way with progress", timeoutMs: 15_000, intervalMs: 100 },
    );
    assert.equal(copying.state, OperationState.OPERATION_STATE_RUNNING);
    assert.equal(copying.done, false);
    const during = (await alice.servers.getServer({ id: s.id })).server!;
    assert.deepEqual([during.status, during.taskState], [ServerStatus.SERVER_STATUS_MIGRATING, TaskState.TASK_STATE_MIGRATING]);
    const [pending] = (await alice.servers.listMigrations({ serverId: s.id })).migrations;
    const target = pending!.targetHost;
    assert.ok(target && target !== SLOW, `copying to ${target}`);

    const cancel = await alice.operations.cancelOperation({ name });
    assert.equal(cancel.operation!.name, name);
    const ended: Operation = (await alice.operations.waitOperation({ name, timeoutSeconds: 20 })).operation!;
    assert.equal(ended.state, OperationState.OPERATION_STATE_CANCELLED);
    assert.equal(ended.done, true);
    assert.equal(ended.error!.code, status.CANCELLED);

    const stayed = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual([stayed.host, stayed.vmState, stayed.powerState], [SLOW, VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING]);
    const [m] = (await alice.servers.listMigrations({ serverId: s.id })).migrations;
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
    assert.equal((await alice.operations.getOperation({ name: stop.operation!.name })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
  });
});

describe("evacuation", () => {
  const env = new TestEnv();
  let ctl: Controller;
  let admin: Clients;
  let alice: Clients;
  let imageId: string;
  let hosts: Hosts;
  const X = `ev${env.id}-x`;
  const Y = `ev${env.id}-y`;
  const Z = `ev${env.id}-z`;
  // Builds on the survivors take a second, so each evacuation step can be seen.
  const slowBuilds = { spawn: { delayMs: 1000 }, rebuild: { delayMs: 1000 } };
  // Servers whose host X dies: one running, one stopped, one resized onto X.
  let active: Server;
  let stoppedOne: Server;
  let resized: Server;
  let atDeath: Map<string, Usage>;
  let afterBoth: Map<string, Usage>;
  const evacuatedTo = new Map<string, string>();

  before(async () => {
    ctl = await env.startController();
    admin = env.admin(ctl);
    alice = await env.as(ctl, "alice");
    imageId = await env.image(ctl);
    hosts = new Hosts(env, () => env.address(ctl), await tempDir("evacuate"));
    hosts.start(X);
    hosts.start(Y, slowBuilds);
    hosts.start(Z, slowBuilds);
    await servicesUp(admin, 3);
  });
  after(async () => {
    if (hosts) await hosts.stopAll();
    await env.cleanup();
  });

  const settled = (id: string, st: ServerStatus) => settledIn(alice, id, st);
  const boot = async (name: string) => {
    const s = (await alice.servers.createServer({ name, flavorId: "m1.small", imageId })).server!;
    return settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
  };

  test("servers of a dead host are rebuilt on another host: the dead host's capacity is released, the new host's claimed", async () => {
    [active, stoppedOne] = await withOnlyHost(admin, X, () => Promise.all([boot("ev-active"), boot("ev-stopped")]));
    assert.deepEqual([active.host, stoppedOne.host], [X, X]);
    await alice.servers.stopServer({ id: stoppedOne.id });
    await settled(stoppedOne.id, ServerStatus.SERVER_STATUS_SHUTOFF);
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
    assert.equal(atDeath.get(X)!.vms, 3, "the dead host still holds its servers until they are evacuated");

    const member = await failure(alice.servers.evacuateServer({ id: active.id }));
    assert.equal(member.code, status.PERMISSION_DENIED, member.message);

    // Watch the server go through the evacuation.
    const seen: WatchServersResponse[] = [];
    const stream = alice.servers.raw.watchServers({ afterIndex: 0, serverId: active.id, allProjects: false }, alice.servers.metadata());
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
    const [m] = (await alice.servers.listMigrations({ serverId: active.id })).migrations;
    assert.deepEqual(
      [m!.type, m!.status, m!.sourceHost, m!.targetHost],
      [MigrationType.MIGRATION_TYPE_EVACUATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, X, moved.host],
    );
    const mid = await assertCapacityExact(env, admin);
    assert.deepEqual(mid.get(X), plus(atDeath.get(X)!, -1), "the dead host no longer counts it");
    assert.deepEqual(mid.get(moved.host), plus(atDeath.get(moved.host)!, 1), "the new host does");
    evacuatedTo.set(active.id, moved.host);

    // The stopped one, to a named host: it comes up there.
    const named = moved.host === Y ? Z : Y;
    await admin.servers.evacuateServer({ id: stoppedOne.id, host: named });
    const moved2 = await settled(stoppedOne.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual([moved2.host, moved2.powerState], [named, PowerState.POWER_STATE_RUNNING]);
    const [m2] = (await alice.servers.listMigrations({ serverId: stoppedOne.id })).migrations;
    assert.deepEqual([m2!.type, m2!.status, m2!.sourceHost, m2!.targetHost], [MigrationType.MIGRATION_TYPE_EVACUATION, MigrationStatus.MIGRATION_STATUS_COMPLETED, X, named]);
    afterBoth = await assertCapacityExact(env, admin);
    assert.deepEqual(afterBoth.get(X), plus(mid.get(X)!, -1));
    assert.deepEqual(afterBoth.get(named), plus(mid.get(named)!, 1));
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
    assert.deepEqual(usage.get(X), plus(afterBoth.get(X)!, -1), "the dead host no longer counts it");
    evacuatedTo.set(resized.id, moved.host);
  });

  test("the dead host comes back: it destroys its old copies, and the evacuated servers stay where they are", async () => {
    assert.ok(evacuatedTo.size >= 2, "set up by the first test");
    const usage = await assertCapacityExact(env, admin);
    const stale = await hosts.domains(X);
    for (const id of evacuatedTo.keys()) assert.ok(id in stale, "the dead host's disk still has its copy");
    hosts.start(X);
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
      const s = (await alice.servers.getServer({ id })).server!;
      assert.deepEqual([s.status, s.host, s.taskState, s.powerState], [ServerStatus.SERVER_STATUS_ACTIVE, host, TaskState.TASK_STATE_UNSPECIFIED, PowerState.POWER_STATE_RUNNING]);
      assert.equal((await hosts.domains(host))[id]?.powerState, "RUNNING");
    }
    assert.deepEqual(await assertCapacityExact(env, admin), usage, "the return changes no claim");
  });
});
