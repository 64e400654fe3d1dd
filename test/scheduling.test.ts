/**
 * Placement through the whole stack: server groups, zones, aggregates,
 * hints, per-host allocation settings and the scheduler's dry run, on four
 * fake hosts (one agent process running four agents).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { ServerGroup, ServerGroupPolicy } from "../gen/novamesh/compute/v1/server_group.js";
import { assertCapacityExact, eventually, failure, operationError, settled, waitServers, withOnlyHost } from "./harness.js";
import { stack } from "./stack.js";

describe("placement: server groups, zones, aggregates, hints, explain", () => {
  const fx = stack({ name: "scheduling", members: [], agents: ({ id }) => [{ host: `sc${id}`, hosts: 4 }], removeDir: true });
  const { env, admin, imageId, hosts } = fx;
  const cleanup: string[] = [];

  /** Creates servers and waits until none is building; deletes them at the end of the test. */
  async function boot(n: number, req: Record<string, unknown>) {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const s = (await admin.servers.createServer({ name: `s-${i}`, flavorId: "m1.small", imageId, ...req })).server!;
      ids.push(s.id);
      cleanup.push(s.id);
    }
    return waitServers(admin, ids, (x) => x.status === ServerStatus.SERVER_STATUS_ACTIVE || x.status === ServerStatus.SERVER_STATUS_ERROR, "ACTIVE or ERROR");
  }

  async function deleteAll() {
    for (const id of cleanup.splice(0)) await admin.servers.deleteServer({ id });
    await eventually(async () => (await admin.servers.listServers({})).servers.length === 0, { what: "every server deleted" });
  }

  test("affinity puts every member of a group on one host", async () => {
    const g = (await admin.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "db", policy: ServerGroupPolicy.SERVER_GROUP_POLICY_AFFINITY }) })).serverGroup!;
    const servers = await boot(3, { schedulerHints: { group: g.id, sameHost: [], differentHost: [] } });
    assert.ok(servers.every((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE));
    assert.equal(new Set(servers.map((s) => s.host)).size, 1, `all on one host: ${servers.map((s) => s.host)}`);
    assert.ok(servers.every((s) => s.serverGroupId === g.id));
    const got = (await admin.groups.getServerGroup({ id: g.id })).serverGroup!;
    assert.deepEqual([...got.members].sort(), servers.map((s) => s.id).sort());
    await deleteAll();
  });

  test("anti-affinity spreads a group over the hosts and fails the member that finds none, naming the policy", async () => {
    const g = (await admin.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "web", policy: ServerGroupPolicy.SERVER_GROUP_POLICY_ANTI_AFFINITY }) })).serverGroup!;
    const servers = await boot(5, { schedulerHints: { group: g.id, sameHost: [], differentHost: [] } });
    const active = servers.filter((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(active.length, 4);
    assert.deepEqual(active.map((s) => s.host).sort(), hosts, "one member per host");
    const [failed] = servers.filter((s) => s.status === ServerStatus.SERVER_STATUS_ERROR);
    assert.ok(failed, "the fifth member failed");
    assert.equal(failed.fault!.code, "NO_VALID_HOST");
    assert.match(failed.fault!.message, /4 hosts considered; removed by anti_affinity: 4/);
    assert.equal(failed.fault!.details["filter.anti_affinity"], "4");
    const create = (await admin.servers.listServerActions({ serverId: failed.id })).actions.find((a) => a.action === "create")!;
    const op = (await admin.operations.getOperation({ name: `servers/${failed.id}/operations/${create.requestId}` })).operation!;
    const err = operationError(op);
    assert.equal(err.reason, "NO_VALID_HOST");
    assert.equal(err.metadata["filter.anti_affinity"], "4");
    assert.equal(err.metadata.hosts_considered, "4");
    await deleteAll();
  });

  test("max_server_per_host lets anti-affinity put two members on a host", async () => {
    const g = (
      await admin.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "pairs", policy: ServerGroupPolicy.SERVER_GROUP_POLICY_ANTI_AFFINITY, maxServerPerHost: 2 }) })
    ).serverGroup!;
    assert.equal(g.maxServerPerHost, 2);
    const servers = await boot(8, { schedulerHints: { group: g.id, sameHost: [], differentHost: [] } });
    assert.ok(servers.every((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE));
    const perHost = new Map<string, number>();
    for (const s of servers) perHost.set(s.host, (perHost.get(s.host) ?? 0) + 1);
    assert.deepEqual([...perHost.values()], [2, 2, 2, 2]);
    const bad = await failure(admin.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "x", policy: ServerGroupPolicy.SERVER_GROUP_POLICY_AFFINITY, maxServerPerHost: 2 }) }));
    assert.deepEqual(bad.fields, ["server_group.max_server_per_host"]);
    await deleteAll();
  });

  test("zones from aggregates and aggregate extra specs confine placement; an unknown zone is refused", async () => {
    const east = (await admin.aggregates.createAggregate({ name: `east-${env.id}`, metadata: { availability_zone: "east" } })).aggregate!;
    for (const h of hosts.slice(0, 2)) await admin.aggregates.addAggregateHost({ id: east.id, host: h });
    const zones = (await admin.aggregates.listAvailabilityZones({})).zones;
    assert.deepEqual(zones.map((z) => [z.name, z.hosts]), [["east", hosts.slice(0, 2)], ["nova", hosts.slice(2)]]);
    const inEast = await boot(4, { availabilityZone: "east" });
    assert.ok(inEast.every((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE && hosts.slice(0, 2).includes(s.host)), inEast.map((s) => s.host).join());
    assert.ok(inEast.every((s) => s.availabilityZone === "east"));
    const unknown = await failure(admin.servers.createServer({ name: "nowhere", flavorId: "m1.small", imageId, availabilityZone: "mars" }));
    assert.equal(unknown.code, 3);
    assert.deepEqual(unknown.fields, ["availability_zone"]);
    assert.match(unknown.message, /no availability zone "mars" \(zones: east, nova\)/);

    // Only host 4 has fast disks; a flavor that asks for them lands there.
    const ssd = (await admin.aggregates.createAggregate({ name: `ssd-${env.id}`, metadata: { disk: "ssd" } })).aggregate!;
    await admin.aggregates.addAggregateHost({ id: ssd.id, host: hosts[3]! });
    await admin.flavors.createFlavor({
      flavor: { id: `fast.${env.id}`, name: `fast.${env.id}`, vcpus: 1, ramMb: 512, diskGb: 1, description: "", extraSpecs: { "aggregate_instance_extra_specs:disk": "ssd" } },
    });
    const fast = await boot(3, { flavorId: `fast.${env.id}` });
    assert.deepEqual(fast.map((s) => s.host), [hosts[3], hosts[3], hosts[3]]);
    // A resize is placed by the new flavor's extra specs.
    const [plain] = await withOnlyHost(admin, hosts[2]!, () => boot(1, {}));
    assert.equal(plain!.host, hosts[2]);
    await admin.servers.resizeServer({ id: plain!.id, flavorId: `fast.${env.id}` });
    const resized = await settled(admin, plain!.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.equal(resized.host, hosts[3]);
    await admin.servers.confirmResize({ id: plain!.id });
    await settled(admin, plain!.id, ServerStatus.SERVER_STATUS_ACTIVE);

    // A host is in one zone: a second aggregate may not put host 1 in another.
    const west = (await admin.aggregates.createAggregate({ name: `west-${env.id}`, metadata: { availability_zone: "west" } })).aggregate!;
    const clash = await failure(admin.aggregates.addAggregateHost({ id: west.id, host: hosts[0]! }));
    assert.deepEqual([clash.code, clash.reason, clash.metadata.conflicting_aggregate], [9, "AVAILABILITY_ZONE_CONFLICT", east.name]);
    await admin.aggregates.addAggregateHost({ id: west.id, host: hosts[2]! });
    const moveEast = await failure(admin.aggregates.setAggregateMetadata({ id: east.id, metadata: { availability_zone: "west2" } }).then(() =>
      admin.aggregates.addAggregateHost({ id: east.id, host: hosts[2]! }),
    ));
    assert.equal(moveEast.reason, "AVAILABILITY_ZONE_CONFLICT", "host 3 is in west; east (now west2) may not take it");
    await admin.aggregates.removeAggregateHost({ id: west.id, host: hosts[2]! });
    await admin.aggregates.deleteAggregate({ id: west.id });
    await admin.aggregates.setAggregateMetadata({ id: east.id, metadata: { availability_zone: "east" } });
    // Members see the zones' names, not their hosts.
    const member = await env.as(fx.ctl, "bob");
    assert.deepEqual((await member.aggregates.listAvailabilityZones({})).zones.map((z) => [z.name, z.hosts]), [["east", []], ["nova", []]]);
    assert.equal((await failure(member.aggregates.listAggregates({}))).code, 7);
    await deleteAll();
    await admin.aggregates.removeAggregateHost({ id: ssd.id, host: hosts[3]! });
    for (const h of hosts.slice(0, 2)) await admin.aggregates.removeAggregateHost({ id: east.id, host: h });
    const still = await failure(admin.aggregates.deleteAggregate({ id: east.id }).then(() => admin.aggregates.getAggregate({ id: east.id })));
    assert.equal(still.code, 5, "deleted");
    await admin.aggregates.deleteAggregate({ id: ssd.id });
  });

  test("same_host and different_host hints", async () => {
    const [first] = await boot(1, {});
    const [near] = await boot(1, { schedulerHints: { group: "", sameHost: [first!.id], differentHost: [] } });
    const [far] = await boot(1, { schedulerHints: { group: "", sameHost: [], differentHost: [first!.id, near!.id] } });
    assert.equal(near!.host, first!.host);
    assert.notEqual(far!.host, first!.host);
    const bad = await failure(admin.servers.createServer({ name: "x", flavorId: "m1.small", imageId, schedulerHints: { group: "", sameHost: ["nope"], differentHost: [] } }));
    assert.deepEqual(bad.fields, ["scheduler_hints.same_host[0]"]);
    await deleteAll();
  });

  test("ExplainPlacement ranks the hosts a create would try; on a full cluster it names the filter that blocks each host", async () => {
    const ok = await admin.scheduler.explainPlacement({ flavorId: "m1.small", imageId, availabilityZone: "" });
    assert.equal(ok.hostsConsidered, 4);
    assert.equal(ok.algorithm, "filter-weigh");
    assert.ok(hosts.includes(ok.chosenHost));
    assert.deepEqual(ok.hosts.map((h) => h.rank).sort(), [1, 2, 3, 4]);
    assert.equal(ok.hosts[0]!.host, ok.chosenHost);
    assert.ok(ok.hosts.every((h) => h.filters.every((f) => f.pass) && "ram" in h.weights));

    // Fill the cluster's memory: 4 hosts × 16 GiB = 8 m1.large (8 GiB each).
    const full = await boot(8, { flavorId: "m1.large" });
    assert.ok(full.every((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE));
    await admin.hosts.disableService({ host: hosts[0]!, reason: "maintenance" });
    try {
      const ex = await admin.scheduler.explainPlacement({ flavorId: "m1.small", imageId, availabilityZone: "" });
      assert.equal(ex.chosenHost, "");
      assert.deepEqual(ex.rejections, { compute: 1, ram: 3 });
      for (const h of ex.hosts) {
        assert.equal(h.passed, false);
        assert.equal(h.rank, 0);
        const ram = h.filters.find((f) => f.filter === "ram")!;
        assert.equal(ram.pass, false);
        assert.match(ram.reason, /needs 2048 MiB, 0 free/);
      }
      const disabled = ex.hosts.find((h) => h.host === hosts[0])!;
      assert.deepEqual(disabled.filters.filter((f) => !f.pass).map((f) => `${f.filter}: ${f.reason}`), ["compute: service disabled", "ram: needs 2048 MiB, 0 free"]);
    } finally {
      await admin.hosts.enableService({ host: hosts[0]! });
    }
    await assertCapacityExact(env, admin);
    await deleteAll();
    const alice = await env.as(fx.ctl, "alice");
    assert.equal((await failure(alice.scheduler.explainPlacement({ flavorId: "m1.small", imageId, availabilityZone: "" }))).code, 7, "admins only");
  });
});

describe("server groups while members move", () => {
  // Live migrations take 4 steps of 1.5 s: long enough to create a member meanwhile.
  const fx = stack({
    name: "group-moves",
    members: [],
    agents: ({ id }) => [{ host: `gm${id}`, hosts: 3, capacity: null, faults: { liveMigrate: { delayMs: 1500 } } }],
    removeDir: true,
  });
  const { admin, imageId } = fx;

  test("a member on its way to a host counts there: anti-affinity refuses that host until the move is over", async () => {
    const [h1, h2, h3] = fx.hosts;
    const g = (await admin.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "spread", policy: ServerGroupPolicy.SERVER_GROUP_POLICY_ANTI_AFFINITY }) })).serverGroup!;
    const hint = { group: g.id, sameHost: [], differentHost: [] };
    const create = async (name: string, host: string) => {
      const s = await withOnlyHost(admin, host, async () => (await admin.servers.createServer({ name, flavorId: "m1.small", imageId, schedulerHints: hint })).server!);
      return settled(admin, s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    };
    const a = await create("a", h1!);
    await create("b", h2!);
    const lm = await admin.servers.liveMigrateServer({ id: a.id, host: h3! });
    await eventually(async () => (await admin.servers.listMigrations({ serverId: a.id })).migrations.some((m) => m.targetHost === h3), { what: "a's target chosen" });
    // h1 holds a (leaving), h2 holds b, h3 is where a is going: no host is free of the group.
    const c = (await admin.servers.createServer({ name: "c", flavorId: "m1.small", imageId, schedulerHints: hint })).server!;
    const [failed] = await waitServers(admin, [c.id], (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    assert.match(failed!.fault!.message, /removed by anti_affinity: 3/);
    const done = (await admin.operations.waitOperation({ name: lm.operation!.name, timeoutSeconds: 60 })).operation!;
    assert.equal(done.error, undefined, JSON.stringify(done.error));
    assert.equal((await settled(admin, a.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, h3);
    // The move is over: h1 is free of the group again.
    const d = (await admin.servers.createServer({ name: "d", flavorId: "m1.small", imageId, schedulerHints: hint })).server!;
    assert.equal((await settled(admin, d.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, h1);
  });
});
