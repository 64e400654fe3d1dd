/**
 * Quotas end to end on fake hosts: a burst through two controllers never
 * takes a project past its limits, usage follows every server change
 * exactly, an admin's change takes effect at once, and bad input is named.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServerStatus, type Server } from "../gen/novamesh/compute/v1/server.js";
import { LimitSource, type Limit } from "../gen/novamesh/compute/v1/quota.js";
import { ServerGroup } from "../gen/novamesh/compute/v1/server_group.js";
import { Segmentation, Subnet } from "../gen/novamesh/network/v1/network.js";
import { stopAgent } from "./agents.js";
import { clients, failure, settled, waitServers, type Clients } from "./harness.js";
import { secondController, stack } from "./stack.js";

describe("quotas", () => {
  const children: ChildProcess[] = [];
  after(async () => {
    for (const c of children) await stopAgent(c);
  });
  const fx = stack({
    name: "quotas",
    members: ["alice", "bob", "carol"],
    agents: ({ id }) => [{ host: `qt${id}`, hosts: 2, capacity: { vcpus: 400, memoryMb: 400 * 1024, diskGb: 4000 } }],
    flavor: "q.2",
  });
  const { env, admin, alice, bob, carol, imageId, dir } = fx;
  const flavor = (id: string, vcpus: number, ramMb: number) => ({ id, name: id, vcpus, ramMb, diskGb: 1, description: "", extraSpecs: {} });

  before(async () => {
    await admin.flavors.createFlavor({ flavor: flavor("q.2", 2, 256) });
    await admin.flavors.createFlavor({ flavor: flavor("q.4", 4, 512) });
    await admin.flavors.createFlavor({ flavor: flavor("q.4s", 4, 128) });
  });

  const limitsOf = async (c: Clients, projectId = ""): Promise<Record<string, Limit>> =>
    Object.fromEntries((await c.quotas.getLimits({ projectId })).limits.map((l) => [l.resource, l]));

  /** The project's live servers. */
  const live = async (c: Clients): Promise<Server[]> => (await c.servers.listServers({ pageSize: 1000 })).servers;

  /** Usage (in use + reserved) equals the sum over the project's live servers, as GetLimits reports it. */
  async function usageIsExact(c: Clients, what: string, extra: { cores?: number; ram?: number } = {}): Promise<Record<string, Limit>> {
    const servers = await live(c);
    const limits = await limitsOf(c);
    const used = (r: string) => limits[r]!.inUse + limits[r]!.reserved;
    const flavors = new Map((await admin.flavors.listFlavors({})).flavors.map((f) => [f.id, f]));
    const holding = servers.filter((s) => s.status !== ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    assert.equal(used("instances"), servers.length, `${what}: instances`);
    assert.equal(used("cores"), holding.reduce((n, s) => n + flavors.get(s.flavor!.id)!.vcpus, 0) + (extra.cores ?? 0), `${what}: cores`);
    assert.equal(used("ram"), holding.reduce((n, s) => n + flavors.get(s.flavor!.id)!.ramMb, 0) + (extra.ram ?? 0), `${what}: ram`);
    return limits;
  }

  const create = (c: Clients, name: string, over: Record<string, unknown> = {}) =>
    c.servers.createServer({ name, flavorId: "q.2", imageId, requestId: `${name}-${Math.random()}`, ...over });

  function isQuotaRefusal(f: Awaited<ReturnType<typeof failure>>, resources: readonly string[], projectId: string) {
    assert.equal(f.code, status.RESOURCE_EXHAUSTED, f.message);
    assert.equal(f.reason, "QUOTA_EXCEEDED");
    assert.ok(resources.includes(f.metadata.resource!), `${f.metadata.resource} is one of ${resources}`);
    assert.ok(f.quota.length >= 1, "a QuotaFailure detail");
    for (const v of f.quota) assert.match(v.subject, new RegExp(`^project:${projectId}/(${resources.join("|")})$`));
    assert.match(f.message, /quota exceeded for project/);
  }

  test("10 instances / 20 cores, 50 concurrent creates through two controllers: exactly 10 accepted, the rest refused with QuotaFailure; usage follows every step", async (t) => {
    const set = await admin.quotas.setProjectLimits({ projectId: "alice", limits: { instances: 10, cores: 20 } });
    assert.equal(set.limits.find((l) => l.resource === "instances")!.source, LimitSource.LIMIT_SOURCE_PROJECT);
    assert.equal(set.limits.find((l) => l.resource === "ram")!.source, LimitSource.LIMIT_SOURCE_DEFAULT);

    const second = await secondController(env, dir, { serviceDownTimeSeconds: fx.ctl.config.serviceDownTimeSeconds });
    children.push(second.process);
    const aliceB = clients(second.address, alice.token);

    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => create(i % 2 ? aliceB : alice, `burst-${i}`)));
    const accepted = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.server!] : []));
    assert.equal(accepted.length, 10, "exactly as many accepted as the quota allows");
    for (const r of results) if (r.status === "rejected") isQuotaRefusal(await failure(Promise.reject(r.reason)), ["instances", "cores"], "alice");
    const active = await waitServers(alice, accepted.map((s) => s.id), (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "the 10 ACTIVE", 60_000);
    const limits = await usageIsExact(alice, "after the burst");
    assert.deepEqual([limits.instances!.inUse, limits.instances!.reserved, limits.cores!.inUse], [10, 0, 20]);
    t.diagnostic(`refusals: ${results.filter((r) => r.status === "rejected").length}`);

    // Another project is not held by alice's limits.
    const other = await create(bob, "bob-1");
    await settled(bob, other.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);

    // A resize that needs 2 more cores is refused while 20 of 20 are used, naming the flavor.
    const [first, second2, third] = active;
    const refused = await failure(alice.servers.resizeServer({ id: first!.id, flavorId: "q.4", requestId: "rs-1" }));
    isQuotaRefusal(refused, ["cores"], "alice");
    assert.deepEqual(refused.fields, ["flavor_id"]);
    assert.equal((await alice.servers.getServer({ id: first!.id })).server!.status, ServerStatus.SERVER_STATUS_ACTIVE, "the refused resize changed nothing");

    // Deleting frees exactly what the servers held.
    await alice.servers.deleteServer({ id: second2!.id, requestId: "d-1" });
    await alice.servers.deleteServer({ id: third!.id, requestId: "d-2" });
    await waitServers(admin, [second2!.id, third!.id], (s) => s.status === ServerStatus.SERVER_STATUS_DELETED, "deleted");
    const freed = await usageIsExact(alice, "after two deletes");
    assert.deepEqual([freed.instances!.inUse, freed.cores!.inUse], [8, 16]);

    // Now the resize fits; until it is confirmed or reverted the server holds the larger flavor.
    await alice.servers.resizeServer({ id: first!.id, flavorId: "q.4", requestId: "rs-2" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    const resized = await limitsOf(alice);
    assert.equal(resized.cores!.inUse + resized.cores!.reserved, 18, "16 - 2 + 4 while resized");
    await alice.servers.revertResize({ id: first!.id, requestId: "rv-1" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await usageIsExact(alice, "after the revert");
    assert.equal((await limitsOf(alice)).cores!.inUse, 16);
    // To more cores and less RAM: the larger of each is held (8 servers of 256 MiB, one of them at 128 now).
    await alice.servers.resizeServer({ id: first!.id, flavorId: "q.4s", requestId: "rs-4" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    const mixed = await limitsOf(alice);
    assert.deepEqual([mixed.cores!.inUse + mixed.cores!.reserved, mixed.ram!.inUse + mixed.ram!.reserved], [18, 8 * 256], "4 cores and 256 MiB held");
    await alice.servers.revertResize({ id: first!.id, requestId: "rv-2" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await usageIsExact(alice, "after the second revert");
    await alice.servers.resizeServer({ id: first!.id, flavorId: "q.4", requestId: "rs-3" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    await alice.servers.confirmResize({ id: first!.id, requestId: "cf-1" });
    await settled(alice, first!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const confirmed = await usageIsExact(alice, "after the confirm");
    assert.deepEqual([confirmed.cores!.inUse, confirmed.cores!.reserved], [18, 0]);

    // A limit an admin changes holds for the very next request.
    await admin.quotas.setProjectLimits({ projectId: "alice", limits: { cores: 18 } });
    isQuotaRefusal(await failure(create(alice, "over-cores")), ["cores"], "alice");
    await admin.quotas.setProjectLimits({ projectId: "alice", limits: { cores: 20 } });
    const ninth = await create(alice, "ninth");
    await settled(alice, ninth.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await admin.quotas.setProjectLimits({ projectId: "alice", limits: { instances: 5 } });
    isQuotaRefusal(await failure(create(alice, "over-instances")), ["instances", "cores"], "alice");
    assert.equal((await live(alice)).length, 9, "a lowered limit keeps what the project holds");

    // Shelved and offloaded, a server holds no cores; unshelving takes them again, so it is refused once they are gone.
    await admin.quotas.setProjectLimits({ projectId: "alice", limits: { instances: -1 } });
    await alice.servers.shelveServer({ id: ninth.server!.id, requestId: "sh-1" });
    await settled(alice, ninth.server!.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    const shelved = await usageIsExact(alice, "after shelving");
    assert.equal(shelved.cores!.inUse, 18);
    const tenth = await create(alice, "tenth");
    await settled(alice, tenth.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    isQuotaRefusal(await failure(alice.servers.unshelveServer({ id: ninth.server!.id, requestId: "us-1" })), ["cores"], "alice");
    assert.equal((await alice.servers.getServer({ id: ninth.server!.id })).server!.status, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    await alice.servers.deleteServer({ id: tenth.server!.id, requestId: "d-3" });
    await waitServers(admin, [tenth.server!.id], (s) => s.status === ServerStatus.SERVER_STATUS_DELETED, "deleted");
    await alice.servers.unshelveServer({ id: ninth.server!.id, requestId: "us-2" });
    await settled(alice, ninth.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await usageIsExact(alice, "after unshelving");

    // Back to the defaults (no limit in this environment).
    const reset = await admin.quotas.resetProjectLimits({ projectId: "alice", resources: [] });
    assert.ok(reset.limits.every((l) => l.source === LimitSource.LIMIT_SOURCE_DEFAULT && l.limit === -1));
    const more = await create(alice, "after-reset");
    await settled(alice, more.server!.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await usageIsExact(alice, "after the reset");
  });

  test("per-server metadata items, server groups and their members are limited; the refusal names the field", async () => {
    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { metadata_items: 2, server_groups: 1, server_group_members: 1 } });
    const meta = await failure(create(bob, "meta", { metadata: { a: "1", b: "2", c: "3" } }));
    isQuotaRefusal(meta, ["metadata_items"], "bob");
    assert.deepEqual(meta.fields, ["metadata"]);
    assert.match(meta.quota[0]!.description, /metadata_items: requested 3, 0 of 2 used/);
    await create(bob, "meta-ok", { metadata: { a: "1", b: "2" } });

    const g = (await bob.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "g1", policy: 2 }) })).serverGroup!;
    isQuotaRefusal(await failure(bob.groups.createServerGroup({ serverGroup: ServerGroup.fromPartial({ name: "g2", policy: 2 }) })), ["server_groups"], "bob");
    await create(bob, "member-1", { schedulerHints: { group: g.id, sameHost: [], differentHost: [] } });
    const member = await failure(create(bob, "member-2", { schedulerHints: { group: g.id, sameHost: [], differentHost: [] } }));
    isQuotaRefusal(member, ["server_group_members"], "bob");
    assert.deepEqual(member.fields, ["scheduler_hints.group"]);
    const limits = await limitsOf(bob);
    assert.deepEqual(
      [limits.server_groups!.inUse, limits.server_group_members!.inUse, limits.metadata_items!.inUse],
      [1, 1, 2],
      "groups held, the fullest group's members, the most items on one server",
    );
  });

  test("ports: a server's count from its create, a port made or an interface attached takes one, the hosts' DHCP ports none", async () => {
    const net = (await admin.networks.createNetwork({ name: "qt-net", shared: true, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brqt" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.66.0.0/24" }) });
    await admin.quotas.setProjectLimits({ projectId: "carol", limits: { ports: 3 } });
    const ports = async () => (await carol.quotas.getLimits({ projectId: "" })).limits.find((l) => l.resource === "ports")!;
    const on = (n: number) => Array.from({ length: n }, () => ({ networkId: net.id, portId: "", fixedIp: "" }));
    const two = (await carol.servers.createServer({ name: "two-nics", flavorId: "q.2", imageId, requestId: "qp-1", networks: on(2) })).server!;
    const early = await ports();
    assert.equal(early.inUse + early.reserved, 2, "its two ports count from the create, before it is placed");
    const own = (await carol.networks.createPort({ networkId: net.id, name: "spare", macAddress: "", fixedIps: [], securityGroupIds: [], disablePortSecurity: false })).port!;
    const over = await failure(carol.servers.createServer({ name: "one-more", flavorId: "q.2", imageId, requestId: "qp-2", networks: on(1) }));
    isQuotaRefusal(over, ["ports"], "carol");
    assert.deepEqual(over.fields, ["networks"]);
    isQuotaRefusal(await failure(carol.networks.createPort({ networkId: net.id, name: "", macAddress: "", fixedIps: [], securityGroupIds: [], disablePortSecurity: false })), ["ports"], "carol");
    await settled(carol, two.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const placed = await ports();
    assert.deepEqual([placed.inUse, placed.reserved], [3, 0], "two server ports and the spare; the DHCP ports are not carol's");
    assert.ok((await admin.networks.listPorts({ networkId: net.id, allProjects: true })).ports.some((p) => p.deviceOwner === "network:dhcp"), "a DHCP port exists");
    const attach = await failure(carol.servers.attachInterface({ id: two.id, networkId: net.id, portId: "", fixedIp: "", requestId: "qp-attach-1" }));
    isQuotaRefusal(attach, ["ports"], "carol");
    assert.deepEqual(attach.fields, ["network_id"]);
    await carol.networks.deletePort({ id: own.id });
    await carol.servers.attachInterface({ id: two.id, networkId: net.id, portId: "", fixedIp: "", requestId: "qp-attach-2" });
    await settled(carol, two.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal((await ports()).inUse, 3);
  });

  test("bad input: an unknown resource, a limit below -1, a missing project; members may only read their own limits", async () => {
    const neg = await failure(admin.quotas.setProjectLimits({ projectId: "bob", limits: { cores: -2 } }));
    assert.deepEqual([neg.code, neg.fields], [status.INVALID_ARGUMENT, ["limits[cores]"]]);
    const unknown = await failure(admin.quotas.setDefaultLimits({ limits: { floppies: 3 } }));
    assert.deepEqual([unknown.code, unknown.fields], [status.INVALID_ARGUMENT, ["limits[floppies]"]]);
    assert.match(unknown.message, /instances, cores, ram/);
    const none = await failure(admin.quotas.setProjectLimits({ projectId: "", limits: { cores: 1 } }));
    assert.deepEqual([none.code, none.fields], [status.INVALID_ARGUMENT, ["project_id"]]);
    const empty = await failure(admin.quotas.setProjectLimits({ projectId: "bob", limits: {} }));
    assert.deepEqual([empty.code, empty.fields], [status.INVALID_ARGUMENT, ["limits"]]);
    const badReset = await failure(admin.quotas.resetProjectLimits({ projectId: "bob", resources: ["cores", "disks"] }));
    assert.deepEqual([badReset.code, badReset.fields], [status.INVALID_ARGUMENT, ["resources[1]"]]);

    assert.equal((await failure(bob.quotas.setProjectLimits({ projectId: "bob", limits: { cores: 100 } }))).code, status.PERMISSION_DENIED);
    assert.equal((await failure(bob.quotas.setDefaultLimits({ limits: { cores: 100 } }))).code, status.PERMISSION_DENIED);
    assert.equal((await failure(bob.quotas.getLimits({ projectId: "alice" }))).code, status.PERMISSION_DENIED);
    assert.equal((await bob.quotas.getLimits({ projectId: "" })).projectId, "bob");
    const defaults = (await bob.quotas.getDefaultLimits({})).limits;
    assert.deepEqual(
      defaults.map((l) => l.resource),
      ["instances", "cores", "ram", "server_groups", "server_group_members", "key_pairs", "metadata_items", "volumes", "snapshots", "gigabytes", "ports"],
    );
  });
});
