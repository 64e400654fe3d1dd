import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { ServiceState, ServiceStatus } from "../gen/novamesh/compute/v1/host.js";
import { PowerState, RebootType, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import type { Server, WatchServersResponse } from "../gen/novamesh/compute/v1/server.js";
import { eventually, waitServers } from "./harness.js";
import { stack } from "./stack.js";

const FLAVORS: Record<string, { vcpus: number; ramMb: number; diskGb: number }> = {
  "m1.tiny": { vcpus: 1, ramMb: 512, diskGb: 1 },
  "m1.small": { vcpus: 1, ramMb: 2048, diskGb: 20 },
};

describe("servers on three fake agents", () => {
  const fx = stack({ name: "lifecycle", agents: ({ id }) => [{ host: `fk${id}`, hosts: 3 }] });
  const { env, admin, alice, imageId } = fx;
  const hostPrefix = `fk${env.id}`;

  test("30 servers reach ACTIVE with a host, capacity is accounted, and deleting releases it exactly", async () => {
    const created: Server[] = [];
    await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const flavorId = i % 2 ? "m1.small" : "m1.tiny";
        const res = await alice.servers.createServer({ name: `vm-${i}`, flavorId, imageId, metadata: { index: String(i) } });
        created.push(res.server!);
      }),
    );
    const ids = created.map((s) => s.id);
    const active = await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "30 ACTIVE", 60_000);
    for (const s of active) {
      assert.ok(s.host.startsWith(hostPrefix), `server ${s.name} has host ${s.host}`);
      assert.equal(s.vmState, VmState.VM_STATE_ACTIVE);
      assert.equal(s.taskState, TaskState.TASK_STATE_UNSPECIFIED);
      assert.equal(s.powerState, PowerState.POWER_STATE_RUNNING);
      assert.ok(s.launchTime);
    }
    // Usage of every host equals the sum of the flavors placed on it.
    const expected = new Map<string, { vcpus: number; ram: number; disk: number; vms: number }>();
    for (const s of active) {
      const f = FLAVORS[s.flavor!.name]!;
      const e = expected.get(s.host) ?? { vcpus: 0, ram: 0, disk: 0, vms: 0 };
      expected.set(s.host, { vcpus: e.vcpus + f.vcpus, ram: e.ram + f.ramMb, disk: e.disk + f.diskGb, vms: e.vms + 1 });
    }
    assert.equal(expected.size, 3, "the RAM weigher spreads servers over all three hosts");
    const hv = (await admin.hypervisors()).filter((h) => h.hostname.startsWith(hostPrefix));
    for (const h of hv) {
      const e = expected.get(h.hostname)!;
      assert.deepEqual(
        { vcpus: h.vcpusUsed, ram: h.memoryMbUsed, disk: h.localGbUsed, vms: h.runningVms },
        e,
        `usage of ${h.hostname}`,
      );
      assert.ok(h.memoryMbUsed <= h.memoryMb * h.ramAllocationRatio);
    }

    await Promise.all(ids.map((id) => alice.servers.deleteServer({ id })));
    await waitServers(alice, ids, (s) => s.status === ServerStatus.SERVER_STATUS_DELETED, "30 DELETED", 60_000);
    const after = (await admin.hypervisors()).filter((h) => h.hostname.startsWith(hostPrefix));
    for (const h of after) {
      assert.deepEqual({ vcpus: h.vcpusUsed, ram: h.memoryMbUsed, disk: h.localGbUsed, vms: h.runningVms }, { vcpus: 0, ram: 0, disk: 0, vms: 0 });
    }
    const allocs = await env.sql<{ n: number }>("SELECT COUNT(*) AS n FROM allocations");
    assert.equal(Number(allocs[0]!.n), 0);
    // Each delete was carried out by the host (a compute_terminate event that succeeded).
    const actions = await alice.servers.listServerActions({ serverId: ids[0]! });
    const del = actions.actions.find((a) => a.action === "delete")!;
    assert.deepEqual(
      del.events.map((e) => [e.name, e.result]),
      [["compute_terminate", "Success"]],
    );
  });

  test("stop, start and reboot move through the right task and power states", async () => {
    const s = (await alice.servers.createServer({ name: "power", flavorId: "m1.tiny", imageId })).server!;
    await waitServers(alice, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE");
    const seen: WatchServersResponse[] = [];
    const stream = alice.servers.raw.watchServers({ afterIndex: 0, serverId: s.id, allProjects: false, sendInitialState: false }, alice.servers.metadata());
    stream.on("data", (ev: WatchServersResponse) => seen.push(ev));
    stream.on("error", () => undefined);
    await new Promise((r) => setTimeout(r, 300));
    const states = () => seen.map((e) => [VmState[e.server!.vmState], TaskState[e.server!.taskState], PowerState[e.server!.powerState]].join("/"));
    const waitFor = (st: ServerStatus) => waitServers(alice, [s.id], (x) => x.status === st && x.taskState === TaskState.TASK_STATE_UNSPECIFIED, ServerStatus[st]);

    const stopping = (await alice.servers.stopServer({ id: s.id })).server!;
    assert.equal(stopping.taskState, TaskState.TASK_STATE_POWERING_OFF);
    const [stopped] = await waitFor(ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.equal(stopped!.powerState, PowerState.POWER_STATE_SHUTDOWN);
    assert.equal(stopped!.vmState, VmState.VM_STATE_STOPPED);

    // A soft reboot needs a running guest.
    const err = await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT }).catch((e: ServiceError) => e);
    assert.equal((err as ServiceError).code, status.FAILED_PRECONDITION);
    assert.match((err as ServiceError).details, /while it is STOPPED/);

    assert.equal((await alice.servers.startServer({ id: s.id })).server!.taskState, TaskState.TASK_STATE_POWERING_ON);
    const [started] = await waitFor(ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(started!.powerState, PowerState.POWER_STATE_RUNNING);

    const soft = (await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT })).server!;
    assert.equal(soft.status, ServerStatus.SERVER_STATUS_REBOOT);
    await waitFor(ServerStatus.SERVER_STATUS_ACTIVE);
    const hard = (await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_HARD })).server!;
    assert.equal(hard.status, ServerStatus.SERVER_STATUS_HARD_REBOOT);
    await waitFor(ServerStatus.SERVER_STATUS_ACTIVE);

    await eventually(async () => states().length >= 8, { what: "watch events" });
    await new Promise((r) => setTimeout(r, 300));
    stream.cancel();
    assert.deepEqual(states(), [
      "VM_STATE_ACTIVE/TASK_STATE_POWERING_OFF/POWER_STATE_RUNNING",
      "VM_STATE_STOPPED/TASK_STATE_UNSPECIFIED/POWER_STATE_SHUTDOWN",
      "VM_STATE_STOPPED/TASK_STATE_POWERING_ON/POWER_STATE_SHUTDOWN",
      "VM_STATE_ACTIVE/TASK_STATE_UNSPECIFIED/POWER_STATE_RUNNING",
      "VM_STATE_ACTIVE/TASK_STATE_REBOOTING/POWER_STATE_RUNNING",
      "VM_STATE_ACTIVE/TASK_STATE_UNSPECIFIED/POWER_STATE_RUNNING",
      "VM_STATE_ACTIVE/TASK_STATE_REBOOTING_HARD/POWER_STATE_RUNNING",
      "VM_STATE_ACTIVE/TASK_STATE_UNSPECIFIED/POWER_STATE_RUNNING",
    ]);
    const indexes = seen.map((e) => e.index);
    assert.deepEqual(indexes, [...indexes].sort((a, b) => a - b));

    const actions = (await alice.servers.listServerActions({ serverId: s.id })).actions;
    assert.deepEqual(
      actions.map((a) => [a.action, a.events.map((e) => `${e.name}:${e.result}`).join(",")]),
      [
        ["reboot", "compute_reboot:Success"],
        ["reboot", "compute_reboot:Success"],
        ["start", "compute_start:Success"],
        ["stop", "compute_stop:Success"],
        ["create", "schedule:Success,compute_spawn:Success"],
      ],
    );
  });

  test("a disabled host takes no new servers, and a silent host goes down", async () => {
    const disabledHost = `${hostPrefix}-1`;
    const svc = (await admin.hosts.disableService({ host: disabledHost, reason: "maintenance window" })).service!;
    assert.equal(svc.status, ServiceStatus.SERVICE_STATUS_DISABLED);
    assert.equal(svc.disabledReason, "maintenance window");
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await alice.servers.createServer({ name: `dis-${i}`, flavorId: "m1.tiny", imageId })).server!.id);
    const placed = await waitServers(alice, ids, (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE");
    assert.ok(placed.every((s) => s.host !== disabledHost), "nothing lands on the disabled host");
    await admin.hosts.enableService({ host: disabledHost });

    await fx.agents.stop(hostPrefix);
    await eventually(
      async () => {
        const res = await admin.hosts.listServices({});
        return res.services.filter((s) => s.host.startsWith(hostPrefix)).every((s) => s.state === ServiceState.SERVICE_STATE_DOWN);
      },
      { what: "three hosts down", timeoutMs: 20_000 },
    );
    const s = (await alice.servers.createServer({ name: "nowhere", flavorId: "m1.tiny", imageId })).server!;
    const [failed] = await waitServers(alice, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    assert.equal(failed!.fault!.code, "NO_VALID_HOST");
    assert.equal(failed!.fault!.details["filter.compute"], "3");
    assert.match(failed!.fault!.message, /3 hosts considered; removed by compute: 3/);
  });
});
