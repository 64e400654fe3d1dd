/**
 * Every row of the lifecycle table on real MySQL + NATS with fake agents:
 * each action from each state it is allowed from, its task state while it
 * runs and the state it ends in; every disallowed transition refused with
 * the documented code; locks; operations.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { PowerState, RebootType, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server, WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { ALLOWED_FROM } from "../controller/conductor/flows/index.js";
import type { ServerAction, VmState as DomainVmState } from "../controller/domain/states.js";
import { SPEC } from "./spec-table.js";
import { setDomainPowerState } from "../agent/drivers/fake/domain-store.js";
import { assertCapacityExact, waitServers, withOnlyHost, failure } from "./harness.js";
import { stack } from "./stack.js";

describe("the lifecycle table", () => {
  // Guests ignore ACPI (a soft reboot falls back to hard, a stop is forced
  // after its timeout), and the first reboot fails. Builds on the slow host
  // take 6 s: a way to hold a server in BUILDING. Disabled but when asked for.
  const fx = stack({
    name: "actions",
    controller: { softRebootTimeoutSeconds: 1, powerOffTimeoutSeconds: 1, resizeConfirmWindowSeconds: 0 },
    flavor: "m1.tiny",
    agents: ({ id }) => [
      { host: `ac${id}`, hosts: 2, faults: { reboot: { error: "guest kernel panic", failTimes: 1 }, ignoreAcpi: true } },
      { host: `acslow${id}`, faults: { spawn: { delayMs: 6000 } }, disabled: "test: slow builds only on request" },
    ],
  });
  const { env, admin, alice, imageId, dir, settled, boot } = fx;
  const slowHost = `acslow${env.id}`;

  test("each action runs from each state it is allowed from, through its task, to its end state", async () => {
    const s = await boot("walker");
    const seen: WatchServersResponse[] = [];
    const stream = alice.servers.raw.watchServers({ afterIndex: 0, serverId: s.id, allProjects: false, sendInitialState: false }, alice.servers.metadata());
    stream.on("data", (ev: WatchServersResponse) => seen.push(ev));
    stream.on("error", () => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const id = s.id;
    const step = async (call: () => Promise<{ server?: Server; operation?: { state: OperationState } }>, task: TaskState, end: ServerStatus) => {
      const res = await call();
      assert.equal(res.server!.taskState, task, `task while ${TaskState[task]} runs`);
      assert.equal(res.operation!.state, OperationState.OPERATION_STATE_RUNNING);
      return settled(id, end);
    };

    // ACTIVE → soft reboot; the guest panics: ERROR with the fault.
    const crashed = await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_SOFT }), TaskState.TASK_STATE_REBOOTING, ServerStatus.SERVER_STATUS_ERROR);
    assert.equal(crashed.fault!.code, "REBOOT_FAILED");
    assert.match(crashed.fault!.message, /guest kernel panic/);
    // ERROR → hard reboot → ACTIVE, the fault cleared.
    const revived = await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }), TaskState.TASK_STATE_REBOOTING_HARD, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(revived.fault, undefined);
    // A soft reboot the guest ignores falls back to hard after the timeout.
    await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_SOFT }), TaskState.TASK_STATE_REBOOTING, ServerStatus.SERVER_STATUS_ACTIVE);
    const softAction = (await alice.servers.listServerActions({ serverId: id })).actions[0]!;
    assert.equal(softAction.events[0]!.result, "Success");
    assert.match(softAction.events[0]!.details, /hard/i);

    const paused = await step(() => alice.servers.pauseServer({ id }), TaskState.TASK_STATE_PAUSING, ServerStatus.SERVER_STATUS_PAUSED);
    assert.deepEqual([paused.vmState, paused.powerState], [VmState.VM_STATE_PAUSED, PowerState.POWER_STATE_PAUSED]);
    await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }), TaskState.TASK_STATE_REBOOTING_HARD, ServerStatus.SERVER_STATUS_ACTIVE);
    await step(() => alice.servers.pauseServer({ id }), TaskState.TASK_STATE_PAUSING, ServerStatus.SERVER_STATUS_PAUSED);
    const unpaused = await step(() => alice.servers.unpauseServer({ id }), TaskState.TASK_STATE_UNPAUSING, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(unpaused.powerState, PowerState.POWER_STATE_RUNNING);

    const suspended = await step(() => alice.servers.suspendServer({ id }), TaskState.TASK_STATE_SUSPENDING, ServerStatus.SERVER_STATUS_SUSPENDED);
    assert.deepEqual([suspended.vmState, suspended.powerState], [VmState.VM_STATE_SUSPENDED, PowerState.POWER_STATE_SUSPENDED]);
    await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }), TaskState.TASK_STATE_REBOOTING_HARD, ServerStatus.SERVER_STATUS_ACTIVE);
    await step(() => alice.servers.suspendServer({ id }), TaskState.TASK_STATE_SUSPENDING, ServerStatus.SERVER_STATUS_SUSPENDED);
    await step(() => alice.servers.resumeServer({ id }), TaskState.TASK_STATE_RESUMING, ServerStatus.SERVER_STATUS_ACTIVE);

    // The guest ignores ACPI: the stop is forced after its timeout.
    const stopped = await step(() => alice.servers.stopServer({ id }), TaskState.TASK_STATE_POWERING_OFF, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.deepEqual([stopped.vmState, stopped.powerState], [VmState.VM_STATE_STOPPED, PowerState.POWER_STATE_SHUTDOWN]);
    await step(() => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }), TaskState.TASK_STATE_REBOOTING_HARD, ServerStatus.SERVER_STATUS_ACTIVE);
    await step(() => alice.servers.stopServer({ id }), TaskState.TASK_STATE_POWERING_OFF, ServerStatus.SERVER_STATUS_SHUTOFF);
    await step(() => alice.servers.startServer({ id }), TaskState.TASK_STATE_POWERING_ON, ServerStatus.SERVER_STATUS_ACTIVE);

    const del = await alice.servers.deleteServer({ id });
    assert.equal(del.server!.taskState, TaskState.TASK_STATE_DELETING);
    await waitServers(alice, [id], (x) => x.status === ServerStatus.SERVER_STATUS_DELETED, "DELETED");
    await new Promise((r) => setTimeout(r, 500));
    stream.cancel();

    // The watch saw each task start and end, in order.
    const states = seen.map((e) => `${VmState[e.server!.vmState]!.slice(9)}/${TaskState[e.server!.taskState]!.slice(11)}`);
    assert.deepEqual(
      states.filter((x, i) => x !== states[i - 1]),
      [
        "ACTIVE/REBOOTING",
        "ERROR/UNSPECIFIED",
        "ERROR/REBOOTING_HARD",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/REBOOTING",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/PAUSING",
        "PAUSED/UNSPECIFIED",
        "PAUSED/REBOOTING_HARD",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/PAUSING",
        "PAUSED/UNSPECIFIED",
        "PAUSED/UNPAUSING",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/SUSPENDING",
        "SUSPENDED/UNSPECIFIED",
        "SUSPENDED/REBOOTING_HARD",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/SUSPENDING",
        "SUSPENDED/UNSPECIFIED",
        "SUSPENDED/RESUMING",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/POWERING_OFF",
        "STOPPED/UNSPECIFIED",
        "STOPPED/REBOOTING_HARD",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/POWERING_OFF",
        "STOPPED/UNSPECIFIED",
        "STOPPED/POWERING_ON",
        "ACTIVE/UNSPECIFIED",
        "ACTIVE/DELETING",
        "DELETED/UNSPECIFIED",
      ],
    );
    const actions = (await alice.servers.listServerActions({ serverId: id })).actions.map((a) => `${a.action}:${a.events.map((e) => e.name).join("+")}`);
    assert.deepEqual(actions.reverse(), [
      "create:schedule+compute_spawn",
      "reboot:compute_reboot",
      "reboot:compute_reboot",
      "reboot:compute_reboot",
      "pause:compute_pause",
      "reboot:compute_reboot",
      "pause:compute_pause",
      "unpause:compute_unpause",
      "suspend:compute_suspend",
      "reboot:compute_reboot",
      "suspend:compute_suspend",
      "resume:compute_resume",
      "stop:compute_stop",
      "reboot:compute_reboot",
      "stop:compute_stop",
      "start:compute_start",
      "delete:compute_terminate",
    ]);
  });

  test("every disallowed transition is refused with FAILED_PRECONDITION naming the state; a busy server with ABORTED", async () => {
    // The code's table must be the specified one.
    assert.deepEqual(
      Object.fromEntries(Object.entries(ALLOWED_FROM).map(([a, set]) => [a, [...set].sort()])),
      Object.fromEntries(Object.entries(SPEC).map(([a, list]) => [a, [...list].sort()])),
      "ALLOWED_FROM is the specified table",
    );
    // A network to attach to, made once every server of this test is built (alice's only network is her servers' default).
    let netId = "";
    // extend_volume is an action of a server only with the volume attached: test/volume-extend.test.ts holds it to the table.
    const calls: Record<Exclude<ServerAction, "delete" | "lock" | "unlock" | "extend_volume">, (id: string) => Promise<unknown>> = {
      start: (id) => alice.servers.startServer({ id }),
      stop: (id) => alice.servers.stopServer({ id }),
      reboot_soft: (id) => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_SOFT }),
      reboot_hard: (id) => alice.servers.rebootServer({ id, type: RebootType.REBOOT_TYPE_HARD }),
      pause: (id) => alice.servers.pauseServer({ id }),
      unpause: (id) => alice.servers.unpauseServer({ id }),
      suspend: (id) => alice.servers.suspendServer({ id }),
      resume: (id) => alice.servers.resumeServer({ id }),
      resize: (id) => alice.servers.resizeServer({ id, flavorId: "m1.small" }),
      migrate: (id) => alice.servers.migrateServer({ id }),
      confirm_resize: (id) => alice.servers.confirmResize({ id }),
      revert_resize: (id) => alice.servers.revertResize({ id }),
      live_migrate: (id) => alice.servers.liveMigrateServer({ id }),
      evacuate: (id) => admin.servers.evacuateServer({ id }),
      rebuild: (id) => alice.servers.rebuildServer({ id }),
      create_image: (id) => alice.servers.createServerImage({ id, name: "snap" }),
      shelve: (id) => alice.servers.shelveServer({ id }),
      unshelve: (id) => alice.servers.unshelveServer({ id }),
      attach_interface: (id) => alice.servers.attachInterface({ id, networkId: netId }),
      detach_interface: (id) => alice.servers.detachInterface({ id, portId: "4f6d2c1e-0000-4000-8000-00000000dead" }),
      attach_volume: (id) => alice.servers.attachVolume({ id, volumeId: "4f6d2c1e-0000-4000-8000-00000000beef" }),
      detach_volume: (id) => alice.servers.detachVolume({ id, volumeId: "4f6d2c1e-0000-4000-8000-00000000beef" }),
    };
    let refused = 0;
    const refusedFrom = async (vm: DomainVmState, id: string) => {
      for (const [action, call] of Object.entries(calls) as Array<[keyof typeof calls, (id: string) => Promise<unknown>]>) {
        if (SPEC[action].includes(vm)) continue;
        const f = await failure(call(id));
        assert.equal(f.code, status.FAILED_PRECONDITION, `${action} from ${vm}: ${f.message}`);
        assert.equal(f.reason, "INVALID_STATE", `${action} from ${vm}`);
        assert.equal(f.metadata["vm_state"], vm, `${action} from ${vm}`);
        assert.match(f.message, new RegExp(`while it is ${vm}`));
        refused++;
      }
    };

    const [a, st, p, su, r, sh] = await Promise.all(["in-active", "in-stopped", "in-paused", "in-suspended", "in-resized", "in-shelved"].map((name) => boot(name)));
    await alice.servers.stopServer({ id: st!.id });
    await alice.servers.pauseServer({ id: p!.id });
    await alice.servers.suspendServer({ id: su!.id });
    await alice.servers.migrateServer({ id: r!.id });
    await alice.servers.shelveServer({ id: sh!.id });
    // ERROR: a server that fits on no host.
    await admin.flavors.createFlavor({ flavor: { id: "ac.huge", name: "ac.huge", vcpus: 1, ramMb: 1 << 20, diskGb: 1, description: "", extraSpecs: {} } });
    const e = (await alice.servers.createServer({ name: "in-error", flavorId: "ac.huge", imageId })).server!;
    await settled(st!.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    await settled(p!.id, ServerStatus.SERVER_STATUS_PAUSED);
    await settled(su!.id, ServerStatus.SERVER_STATUS_SUSPENDED);
    await settled(r!.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    await settled(sh!.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    assert.equal((await settled(e.id, ServerStatus.SERVER_STATUS_ERROR)).fault!.code, "NO_VALID_HOST");
    const capacity = await assertCapacityExact(env, admin);

    // BUILDING: a build on the slow host, held there for a few seconds.
    await admin.hosts.enableService({ host: slowHost });
    const building = await withOnlyHost(admin, slowHost, async () => {
      const b = (await alice.servers.createServer({ name: "in-building", flavorId: "m1.tiny", imageId })).server!;
      return (await waitServers(alice, [b.id], (x) => x.taskState === TaskState.TASK_STATE_SPAWNING, "SPAWNING"))[0]!;
    });
    await admin.hosts.disableService({ host: slowHost, reason: "test: slow builds only on request" });
    netId = (await alice.networks.createNetwork({ name: "refusals" })).network!.id;
    await refusedFrom("BUILDING", building.id);
    assert.equal((await alice.servers.getServer({ id: building.id })).server!.vmState, VmState.VM_STATE_BUILDING, "still building");
    // Delete is allowed from BUILDING: the host removes the server once its spawn ends.
    const delBuilding = await alice.servers.deleteServer({ id: building.id });
    assert.equal(delBuilding.server!.taskState, TaskState.TASK_STATE_DELETING);

    for (const [vm, id] of [
      ["ACTIVE", a!.id],
      ["STOPPED", st!.id],
      ["PAUSED", p!.id],
      ["SUSPENDED", su!.id],
      ["RESIZED", r!.id],
      ["SHELVED_OFFLOADED", sh!.id],
      ["ERROR", e.id],
    ] as Array<[DomainVmState, string]>) {
      await refusedFrom(vm, id);
    }
    // 22 actions (all but delete, lock, unlock) from 8 states, minus the 51 allowed cells.
    assert.equal(refused, 125, "disallowed transitions checked");
    await alice.networks.deleteNetwork({ id: netId });

    // Delete from ERROR (never placed: at once) and from BUILDING (when its host is done).
    const delError = await alice.servers.deleteServer({ id: e.id });
    assert.equal(delError.server!.status, ServerStatus.SERVER_STATUS_DELETED);
    const gone = (await waitServers(alice, [building.id], (x) => x.status === ServerStatus.SERVER_STATUS_DELETED, "DELETED"))[0]!;
    assert.equal(gone.fault, undefined);
    assert.equal((await alice.operations.getOperation({ name: delBuilding.operation!.name })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.deepEqual(await assertCapacityExact(env, admin), capacity, "the build's claim is released");

    // A second action while a task runs: ABORTED naming the task. The stop
    // takes a second (the guest ignores ACPI).
    await alice.servers.stopServer({ id: a!.id });
    const busy = await failure(alice.servers.pauseServer({ id: a!.id }));
    assert.equal(busy.code, status.ABORTED);
    assert.equal(busy.reason, "TASK_IN_PROGRESS");
    assert.equal(busy.metadata["task_state"], "POWERING_OFF");
    await settled(a!.id, ServerStatus.SERVER_STATUS_SHUTOFF);
  });

  test("a locked server refuses a member's actions until unlocked; an admin's lock binds the member", async () => {
    const s = await boot("locked");
    const lock = await alice.servers.lockServer({ id: s.id, reason: "release freeze" });
    assert.equal(lock.server!.locked, true);
    assert.equal(lock.operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const refused = await failure(alice.servers.stopServer({ id: s.id }));
    assert.equal(refused.code, status.FAILED_PRECONDITION);
    assert.equal(refused.reason, "LOCKED");
    assert.match(refused.message, /release freeze/);
    assert.equal((await failure(alice.servers.deleteServer({ id: s.id }))).reason, "LOCKED");
    // An admin is not bound by the lock.
    await admin.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    const unlocked = await alice.servers.unlockServer({ id: s.id });
    assert.equal(unlocked.server!.locked, false);
    await alice.servers.startServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);

    await admin.servers.lockServer({ id: s.id, reason: "" });
    const denied = await failure(alice.servers.unlockServer({ id: s.id }));
    assert.equal(denied.code, status.PERMISSION_DENIED);
    assert.equal((await alice.servers.getServer({ id: s.id })).server!.locked, true);
    await admin.servers.unlockServer({ id: s.id });
    const actions = (await alice.servers.listServerActions({ serverId: s.id })).actions.map((x) => x.action);
    assert.deepEqual(actions.slice(0, 6), ["unlock", "lock", "start", "unlock", "stop", "lock"]);
  });

  test("operations: named after the request id, listed, awaited, and not cancellable once a stop is accepted", async () => {
    const s = await boot("ops");
    const res = await alice.servers.stopServer({ id: s.id, requestId: "stop/1 ops" });
    const name = res.operation!.name;
    assert.equal(name, `servers/${s.id}/operations/stop%2F1%20ops`);
    // The same request id again is the same operation, and nothing new happens.
    const again = await alice.servers.stopServer({ id: s.id, requestId: "stop/1 ops" });
    assert.equal(again.operation!.name, name);
    assert.ok(again.operation!.deadline, "a running operation shows its deadline");
    const cancel = await failure(alice.operations.cancelOperation({ name }));
    assert.equal(cancel.code, status.FAILED_PRECONDITION);
    assert.equal(cancel.reason, "NOT_CANCELLABLE");
    const waited = (await alice.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
    assert.equal(waited.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal(waited.done, true);
    assert.ok(waited.endTime);
    assert.equal(waited.deadline, undefined);
    assert.equal((await failure(alice.operations.cancelOperation({ name }))).reason, "OPERATION_DONE");

    const listed = (await alice.operations.listOperations({ serverId: s.id })).operations;
    assert.deepEqual(listed.map((o) => o.action), ["stop", "create"]);
    assert.ok(listed.every((o) => o.state === OperationState.OPERATION_STATE_SUCCEEDED));
    const page = await alice.operations.listOperations({ pageSize: 1 });
    assert.equal(page.operations.length, 1);
    assert.ok(page.nextPageToken);
    const failed = (await alice.operations.listOperations({ state: OperationState.OPERATION_STATE_FAILED })).operations;
    assert.ok(failed.every((o) => o.state === OperationState.OPERATION_STATE_FAILED && o.error));

    // Bad names and other projects.
    assert.equal((await failure(alice.operations.getOperation({ name: "" }))).code, status.INVALID_ARGUMENT);
    assert.equal((await failure(alice.operations.getOperation({ name: "operations/x" }))).code, status.INVALID_ARGUMENT);
    assert.equal((await failure(alice.operations.getOperation({ name: `servers/${s.id}/operations/nope` }))).code, status.NOT_FOUND);
    const bob = await env.as(fx.ctl, "bob", Role.ROLE_MEMBER);
    assert.equal((await failure(bob.operations.getOperation({ name }))).code, status.NOT_FOUND);
    assert.equal((await failure(bob.operations.listOperations({ allProjects: true }))).code, status.PERMISSION_DENIED);
    assert.equal((await bob.operations.listOperations({})).operations.length, 0);
  });

  test("power-state sync: a guest that stops, crashes or starts on its own is shown so and recorded", async () => {
    const s = await boot("wayward");
    const statePath = join(dir, s.host, "fake-domains.json");
    // As an admin reads them: with the host's name (members read its host id).
    const syncEvents = async () =>
      (await admin.servers.listServerActions({ serverId: s.id })).actions
        .filter((a) => a.action === "sync_power_state")
        .map((a) => a.events.map((e) => `${e.name}:${e.result}:${e.details}`).join());

    // The guest shuts itself down.
    await setDomainPowerState(statePath, s.id, "SHUTDOWN");
    const off = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.deepEqual([off.vmState, off.powerState], [VmState.VM_STATE_STOPPED, PowerState.POWER_STATE_SHUTDOWN]);
    assert.deepEqual(await syncEvents(), [
      `power_state_sync:Success:host ${s.host} reports power state SHUTDOWN (was RUNNING); vm_state ACTIVE -> STOPPED`,
    ]);
    // Someone starts it behind the API's back.
    await setDomainPowerState(statePath, s.id, "RUNNING");
    const on = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(on.powerState, PowerState.POWER_STATE_RUNNING);
    // It crashes: STOPPED, with the crash visible in the power state.
    await setDomainPowerState(statePath, s.id, "CRASHED");
    const crashed = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(crashed.powerState, PowerState.POWER_STATE_CRASHED);
    const events = await syncEvents();
    assert.equal(events.length, 3);
    assert.match(events[0]!, /reports power state CRASHED \(was RUNNING\); vm_state ACTIVE -> STOPPED/);
    assert.match(events[1]!, /reports power state RUNNING \(was SHUTDOWN\); vm_state STOPPED -> ACTIVE/);
    // And a hard reboot brings it back.
    await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_HARD });
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).powerState, PowerState.POWER_STATE_RUNNING);
  });
});
