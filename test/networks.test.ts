/**
 * Networks end to end on the fake hypervisor and the fake network driver:
 * IPAM under two controllers, the default network, ports that follow a
 * server through its moves, and bad input. The host side of each port is
 * read from the fake network driver's state file.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServerStatus, type Server } from "../gen/novamesh/compute/v1/server.js";
import { Segmentation, Subnet } from "../gen/novamesh/network/v1/network.js";
import { Direction, SecurityGroupRule } from "../gen/novamesh/network/v1/security_group.js";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { stopAgent } from "./agents.js";
import { eventually, failure, settled, waitServers } from "./harness.js";
import { secondController, stack } from "./stack.js";

/** What the fake network driver has plugged on a host, by instance. */
async function plugged(dir: string, host: string): Promise<Record<string, { id: string; mac: string; fixedIps: { address: string }[] }[]>> {
  try {
    return JSON.parse(await readFile(join(dir, host, "fake-network.json"), "utf8")).instances ?? {};
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
}

/** The addresses of a server's interfaces. */
const addressesOf = (s: Server) => s.interfaces.flatMap((i) => i.ipAddresses);

/** A host is down after 25 s without a report: a 500-create burst beside another test file may hold reports up for more than 15 s on a loaded machine. */
const SERVICE_DOWN_TIME = 25;

describe("networks", () => {
  const children: ChildProcess[] = [];
  after(async () => {
    for (const c of children) await stopAgent(c);
  });
  const fx = stack({
    name: "networks",
    members: ["alice", "bob"],
    controller: { cpuAllocationRatio: 1, ramAllocationRatio: 1, diskAllocationRatio: 1, allowResizeToSameHost: false, serviceDownTimeSeconds: SERVICE_DOWN_TIME },
    // Each host its own agent process, so that one can die (evacuation).
    agents: ({ id }) => ["a", "b"].map((x) => ({ host: `nw${id}-${x}`, capacity: { vcpus: 400, memoryMb: 400 * 1024, diskGb: 4000 } })),
    flavor: "n.tiny",
  });
  const { env, admin, alice, bob, imageId, dir, agents } = fx;

  before(async () => {
    await admin.flavors.createFlavor({ flavor: { id: "n.tiny", name: "n.tiny", vcpus: 1, ramMb: 64, diskGb: 1, description: "", extraSpecs: {} } });
    await admin.flavors.createFlavor({ flavor: { id: "n.small", name: "n.small", vcpus: 2, ramMb: 128, diskGb: 1, description: "", extraSpecs: {} } });
  });

  test("two controllers, 500 creates on a subnet with room for 250: 250 servers with unique addresses, the rest ERROR IP_ADDRESS_EXHAUSTED; delete frees every address", async (t) => {
    const net = (await admin.networks.createNetwork({ name: "burst", shared: true, segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brburst" })).network!;
    // 252 addresses: the two hosts' DHCP servers take one each, servers the other 250.
    const subnet = (
      await admin.networks.createSubnet({
        subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.77.0.0/24", allocationPools: [{ start: "10.77.0.2", end: "10.77.0.253" }] }),
      })
    ).subnet!;
    assert.equal(subnet.gatewayIp, "10.77.0.1");

    // The second controller: its own process, the same database, stream and subjects.
    // Its view of which hosts are up is the first one's: with a shorter down time it would see the hosts down while reports lag.
    const second = await secondController(env, dir, { serviceDownTimeSeconds: SERVICE_DOWN_TIME }, ["--cpu-allocation-ratio", "1", "--ram-allocation-ratio", "1", "--disk-allocation-ratio", "1"]);
    children.push(second.process);
    const b = second.clients;

    const started = Date.now();
    const created = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        (i % 2 ? b : admin).servers.createServer({ name: `n-${i}`, flavorId: "n.tiny", imageId, requestId: `nw-${i}`, networks: [{ networkId: net.id, portId: "", fixedIp: "" }] }),
      ),
    );
    const ids = created.map((r) => r.server!.id);
    const done = await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE || s.status === ServerStatus.SERVER_STATUS_ERROR, "every server ACTIVE or ERROR", 240_000);
    t.diagnostic(`500 creates through two controllers settled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const active = done.filter((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE);
    const failed = done.filter((s) => s.status === ServerStatus.SERVER_STATUS_ERROR);
    const faults: Record<string, number> = {};
    for (const s of failed) faults[s.fault?.code ?? "none"] = (faults[s.fault?.code ?? "none"] ?? 0) + 1;
    const odd = failed.find((s) => s.fault?.code !== "IP_ADDRESS_EXHAUSTED")?.fault?.message;
    assert.equal(active.length, 250, `exactly as many servers as free addresses (the others' faults: ${JSON.stringify(faults)}${odd ? `; one: ${odd}` : ""})`);
    assert.equal(failed.length, 250);
    for (const s of failed) {
      assert.equal(s.fault?.code, "IP_ADDRESS_EXHAUSTED", `${s.name}: ${s.fault?.message}`);
      assert.match(s.fault!.message, /no free IP address is left on subnet/);
      assert.deepEqual(s.interfaces, [], "a server refused an address has no port");
    }
    const addrs = active.flatMap(addressesOf);
    assert.equal(addrs.length, 250, "one address per ACTIVE server");
    assert.equal(new Set(addrs).size, 250, "no address given twice");
    assert.ok(addrs.every((a) => /^10\.77\.0\.(\d+)$/.test(a) && +a.split(".")[3]! >= 2 && +a.split(".")[3]! <= 253), "every address from the pool");
    const macs = active.map((s) => s.interfaces[0]!.macAddress);
    assert.equal(new Set(macs).size, 250, "no MAC given twice");
    assert.ok(macs.every((m) => m.startsWith("fa:16:3e:")));
    // Nova's addresses, by network name.
    assert.deepEqual(Object.keys(active[0]!.addresses), ["burst"]);
    assert.equal(active[0]!.addresses.burst!.addresses[0]!.addr, addressesOf(active[0]!)[0]);
    // Each ACTIVE server's port is plugged on its host, as the controller allocated it.
    const onHosts = { ...(await plugged(dir, fx.hosts[0]!)), ...(await plugged(dir, fx.hosts[1]!)) };
    for (const s of active) assert.deepEqual(onHosts[s.id]?.map((p) => p.fixedIps[0]!.address), addressesOf(s), `${s.name} plugged with its address`);
    const ports = (await admin.networks.listPorts({ networkId: net.id, allProjects: true })).ports;
    assert.equal(ports.filter((p) => p.deviceOwner === "network:dhcp").length, 2, "one DHCP port per host");
    // Each port is ACTIVE on the host it is plugged on: its server's, or the DHCP port's own.
    const hostOf = new Map(active.map((s) => [s.id, s.host]));
    for (const p of ports) assert.equal(p.status, "ACTIVE", p.id);
    for (const p of ports.filter((p) => p.deviceOwner !== "network:dhcp")) assert.equal(p.bindingHost, hostOf.get(p.deviceId), p.id);
    assert.deepEqual(new Set(ports.filter((p) => p.deviceOwner === "network:dhcp").map((p) => p.bindingHost)), new Set(fx.hosts.slice(0, 2)));

    // A full subnet refuses a port at once, with the subnet named.
    const full = await failure(admin.networks.createPort({ networkId: net.id }));
    assert.equal(full.code, status.RESOURCE_EXHAUSTED);
    assert.equal(full.reason, "IP_ADDRESS_EXHAUSTED");
    assert.equal(full.metadata.subnet, subnet.id);

    await Promise.all(ids.map((id, i) => (i % 2 ? b : admin).servers.deleteServer({ id, requestId: `nw-del-${i}` })));
    await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_DELETED, "every server deleted", 120_000);
    const left = (await admin.networks.listPorts({ networkId: net.id, allProjects: true })).ports;
    assert.deepEqual(left.map((p) => p.deviceOwner), ["network:dhcp", "network:dhcp"], "only the hosts' DHCP ports are left");
    // Every address is free again: 250 ports fit exactly once more.
    const again = await Promise.all(Array.from({ length: 250 }, () => admin.networks.createPort({ networkId: net.id })));
    assert.equal(new Set(again.map((r) => r.port!.fixedIps[0]!.ipAddress)).size, 250);
    await Promise.all(again.map((r) => admin.networks.deletePort({ id: r.port!.id })));
    await eventually(async () => Object.keys({ ...(await plugged(dir, fx.hosts[0]!)), ...(await plugged(dir, fx.hosts[1]!)) }).length === 0, {
      what: "every host to unplug every deleted server's ports",
    });
    await stopAgent(second.process);
  });

  test("a project's only network is its servers' default; ports keep their MAC and address through resize, live migration and evacuation", async () => {
    const net = (await alice.networks.createNetwork({ name: "alice-net" })).network!;
    assert.equal(net.segmentation, Segmentation.SEGMENTATION_VXLAN);
    assert.equal(net.mtu, 1450);
    await alice.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "192.168.10.0/24", dnsNameservers: ["192.168.10.1"] }) });
    // The fake hosts have no tunnel address: a vxlan network cannot be plugged there. A flat one can.
    const flat = (await admin.networks.createNetwork({ name: "alice-flat", segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "bralice", projectId: "alice" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: flat.id, cidr: "172.30.0.0/24" }) });
    const two = await failure(alice.servers.createServer({ name: "which", flavorId: "n.tiny", imageId, requestId: "default-two" }));
    assert.equal(two.code, status.INVALID_ARGUMENT);
    assert.deepEqual(two.fields, ["networks"]);
    await alice.networks.deleteNetwork({ id: net.id });

    const s0 = (await alice.servers.createServer({ name: "mover", flavorId: "n.tiny", imageId, requestId: "mover" })).server!;
    let s = await fx.settled(s0.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(s.interfaces.length, 1, "the project's one network, by default");
    assert.equal(s.interfaces[0]!.networkId, flat.id);
    const iface = s.interfaces[0]!;
    const sameIface = (x: Server, what: string) => {
      assert.equal(x.interfaces.length, 1, what);
      assert.equal(x.interfaces[0]!.portId, iface.portId, what);
      assert.equal(x.interfaces[0]!.macAddress, iface.macAddress, what);
      assert.deepEqual(x.interfaces[0]!.ipAddresses, iface.ipAddresses, what);
    };
    const onlyOn = async (host: string, what: string) => {
      const [here, other] = await Promise.all(fx.hosts.map((h) => plugged(dir, h)));
      const byHost = { [fx.hosts[0]!]: here!, [fx.hosts[1]!]: other! };
      for (const h of fx.hosts) {
        const p = byHost[h]![s.id];
        if (h === host) {
          assert.equal(p?.[0]?.mac, iface.macAddress, `${what}: plugged on ${h}`);
          assert.equal(p?.[0]?.fixedIps[0]?.address, iface.ipAddresses[0], `${what}: with its address on ${h}`);
        } else assert.equal(p, undefined, `${what}: not plugged on ${h}`);
      }
    };
    await onlyOn(s.host, "built");

    await alice.servers.resizeServer({ id: s.id, flavorId: "n.small", requestId: "mover-resize" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    sameIface(s, "resized");
    await alice.servers.confirmResize({ id: s.id, requestId: "mover-confirm" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    await eventually(() => onlyOn(s.host, "resize confirmed").then(() => true), { what: "the port only on the new host" });

    const before = s.host;
    await admin.servers.liveMigrateServer({ id: s.id, requestId: "mover-live" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.notEqual(s.host, before);
    sameIface(s, "live migrated");
    await eventually(() => onlyOn(s.host, "live migrated").then(() => true), { what: "the port only on the live migration's target" });

    // Shelved, the server is on no host and its port is plugged nowhere; unshelved, it has the same port again.
    await alice.servers.shelveServer({ id: s.id, requestId: "mover-shelve" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    sameIface(s, "shelved");
    await eventually(async () => (await Promise.all(fx.hosts.map((h) => plugged(dir, h)))).every((p) => p[s.id] === undefined), { what: "the shelved server's port unplugged everywhere" });
    await alice.servers.unshelveServer({ id: s.id, requestId: "mover-unshelve" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    sameIface(s, "unshelved");
    await onlyOn(s.host, "unshelved");
    await alice.servers.rebuildServer({ id: s.id, requestId: "mover-rebuild" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    sameIface(s, "rebuilt");
    await onlyOn(s.host, "rebuilt");

    // Evacuation: the host dies, the server is rebuilt on the other one with the same port.
    const dead = s.host;
    await stopAgent(agents.procs.get(dead)!, "SIGKILL");
    await eventually(async () => (await admin.hosts.listServices({ host: dead })).services[0]?.state === ServiceState.SERVICE_STATE_DOWN, {
      what: `${dead} down`,
      timeoutMs: 45_000,
    });
    await admin.servers.evacuateServer({ id: s.id, requestId: "mover-evacuate" });
    s = await fx.settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.notEqual(s.host, dead);
    sameIface(s, "evacuated");
    assert.equal((await plugged(dir, s.host))[s.id]?.[0]?.mac, iface.macAddress, "plugged on the survivor");
    // The dead host, back, destroys its old copy and unplugs its port.
    agents.restart(dead);
    await eventually(async () => (await plugged(dir, dead))[s.id] === undefined, { what: `${dead} to unplug the evacuated server's port`, timeoutMs: 30_000 });

    // Delete releases the port and its address.
    await alice.servers.deleteServer({ id: s.id, requestId: "mover-delete" });
    await fx.settled(s.id, ServerStatus.SERVER_STATUS_DELETED);
    assert.equal((await failure(alice.networks.getPort({ id: iface.portId }))).code, status.NOT_FOUND);
    await eventually(async () => (await plugged(dir, s.host))[s.id] === undefined, { what: "the port unplugged after delete" });
  });

  test("an interface hot-plugged into a running server and removed again; a given port is free again after", async () => {
    /** Waits as bob; the server as an admin sees it (with its host). */
    const bobSettled = async (id: string, st: ServerStatus) => {
      await settled(bob, id, st);
      return (await admin.servers.getServer({ id })).server!;
    };
    const first = (await admin.networks.createNetwork({ name: "hp-first", segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brhp1", projectId: "bob" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: first.id, cidr: "172.31.1.0/24" }) });
    const second = (await admin.networks.createNetwork({ name: "hp-second", segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brhp2", projectId: "bob" })).network!;
    // Room for the host's DHCP port and one more.
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: second.id, cidr: "172.31.2.0/24", allocationPools: [{ start: "172.31.2.10", end: "172.31.2.12" }] }) });
    const created = (await bob.servers.createServer({ name: "hp", flavorId: "n.tiny", imageId, requestId: "hp", networks: [{ networkId: first.id, portId: "", fixedIp: "" }] })).server!;
    let s = await bobSettled(created.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(s.interfaces.length, 1);
    // A watcher sees the interfaces too: in the initial state and in the changes.
    const watched: Server[] = [];
    const watch = bob.servers.raw.watchServers({ afterIndex: 0, serverId: s.id, allProjects: false, sendInitialState: true }, bob.servers.metadata());
    watch.on("data", (ev: { server: Server }) => watched.push(ev.server));
    watch.on("error", () => {});
    await eventually(async () => watched.length > 0, { what: "the watch's initial state" });
    assert.deepEqual(watched[0]!.interfaces.map((i) => i.ipAddresses), s.interfaces.map((i) => i.ipAddresses), "the initial state has the server's interface");
    assert.deepEqual(Object.keys(watched[0]!.addresses), ["hp-first"]);

    const att = await bob.servers.attachInterface({ id: s.id, networkId: second.id, fixedIp: "172.31.2.11", requestId: "hp-attach" });
    assert.ok(att.portId, "the new interface's port is returned");
    assert.equal(att.operation!.name.length > 0, true);
    s = await bobSettled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(s.interfaces.map((i) => i.ipAddresses[0]), [s.interfaces[0]!.ipAddresses[0], "172.31.2.11"], "the new interface comes last, with the address asked for");
    const mac = s.interfaces[1]!.macAddress;
    assert.deepEqual((await plugged(dir, s.host))[s.id]?.map((p) => p.mac), [s.interfaces[0]!.macAddress, mac], "both ports plugged on the host");
    await eventually(async () => watched.at(-1)!.interfaces.length === 2 && watched.at(-1)!.taskState === 0, { what: "the attach's last change watched" });
    assert.deepEqual(watched.at(-1)!.interfaces.map((i) => i.macAddress), [s.interfaces[0]!.macAddress, mac], "the change ending the attach shows both interfaces");
    assert.deepEqual(watched.at(-1)!.addresses["hp-second"]?.addresses.map((a) => a.addr), ["172.31.2.11"]);
    watch.cancel();
    const vifs = (await agents.domains(s.host))[s.id] as unknown as { instance: { vifs?: { mac: string }[] } };
    assert.deepEqual(vifs.instance.vifs?.map((v) => v.mac), [s.interfaces[0]!.macAddress, mac], "the guest has both interfaces");
    // The same request again is the same operation.
    const again = await bob.servers.attachInterface({ id: s.id, networkId: second.id, fixedIp: "172.31.2.11", requestId: "hp-attach" });
    assert.equal(again.portId, att.portId);
    // A full subnet refuses the attach at once; nothing changes.
    await bob.servers.attachInterface({ id: s.id, networkId: second.id, requestId: "hp-attach-2" });
    s = await bobSettled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const full = await failure(bob.servers.attachInterface({ id: s.id, networkId: second.id, requestId: "hp-attach-3" }));
    assert.equal(full.code, status.RESOURCE_EXHAUSTED);
    assert.equal(full.reason, "IP_ADDRESS_EXHAUSTED");
    assert.equal((await bob.servers.getServer({ id: s.id })).server!.taskState, 0, "no task was started");
    const third = s.interfaces[2]!;

    await bob.servers.detachInterface({ id: s.id, portId: att.portId, requestId: "hp-detach" });
    s = await bobSettled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(s.interfaces.map((i) => i.portId), [s.interfaces[0]!.portId, third.portId]);
    assert.equal((await failure(bob.networks.getPort({ id: att.portId }))).code, status.NOT_FOUND, "a port made for the server goes with the interface");
    await eventually(async () => !(await plugged(dir, s.host))[s.id]?.some((p) => p.mac === mac), { what: "the detached port unplugged" });
    assert.ok(!((await agents.domains(s.host))[s.id] as unknown as { instance: { vifs?: { mac: string }[] } }).instance.vifs?.some((v) => v.mac === mac));
    const unknown = await failure(bob.servers.detachInterface({ id: s.id, portId: att.portId }));
    assert.equal(unknown.code, status.NOT_FOUND);

    // A port the caller made is given back free.
    const own = (await bob.networks.createPort({ networkId: first.id, name: "mine" })).port!;
    await bob.servers.attachInterface({ id: s.id, portId: own.id, requestId: "hp-own" });
    s = await bobSettled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal((await bob.networks.getPort({ id: own.id })).port!.deviceId, s.id);
    const inUse = await failure(bob.networks.deletePort({ id: own.id }));
    assert.equal(inUse.reason, "PORT_IN_USE");
    await bob.servers.detachInterface({ id: s.id, portId: own.id, requestId: "hp-own-detach" });
    s = await bobSettled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const freed = (await bob.networks.getPort({ id: own.id })).port!;
    assert.equal(freed.deviceId, "");
    assert.deepEqual(freed.fixedIps, own.fixedIps, "it keeps its address");
    await bob.servers.deleteServer({ id: s.id });
    await bobSettled(s.id, ServerStatus.SERVER_STATUS_DELETED);
    assert.equal((await bob.networks.getPort({ id: own.id })).port!.deviceId, "");
    await bob.networks.deletePort({ id: own.id });
  });

  test("hosts follow the controller: a new security rule, a group's new member and another host's tunnel address reach the hosts without any server action", async () => {
    const net = (await admin.networks.createNetwork({ name: "sync", segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "brsync", projectId: "bob" })).network!;
    await admin.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "172.31.9.0/24" }) });
    const g = (await bob.securityGroups.createSecurityGroup({ name: "sync" })).securityGroup!;
    const boot = async (name: string) => {
      const c = (await bob.servers.createServer({ name, flavorId: "n.tiny", imageId, requestId: name, networks: [{ networkId: net.id, portId: "", fixedIp: "" }], securityGroups: ["sync"] })).server!;
      await settled(bob, c.id, ServerStatus.SERVER_STATUS_ACTIVE);
      return (await admin.servers.getServer({ id: c.id })).server!;
    };
    type Rule = { direction: string; protocol: string; remoteAddresses: string[] | null };
    const rulesOf = async (s: Server): Promise<Rule[]> => ((await plugged(dir, s.host))[s.id]?.[0] as unknown as { securityRules: Rule[] } | undefined)?.securityRules ?? [];
    const s1 = await boot("sync-1");
    assert.deepEqual((await rulesOf(s1)).map((r) => `${r.direction}/${r.protocol}`), ["egress/"], "a new group allows egress only");

    const icmp = (await bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: g.id, direction: Direction.DIRECTION_INGRESS, protocol: "icmp" }) })).rule!;
    await eventually(async () => (await rulesOf(s1)).some((r) => r.direction === "ingress" && r.protocol === "icmp"), { what: "the new ICMP rule on the running server's host", timeoutMs: 10_000 });
    await bob.securityGroups.deleteSecurityGroupRule({ id: icmp.id });
    await eventually(async () => !(await rulesOf(s1)).some((r) => r.protocol === "icmp"), { what: "the ICMP rule gone from the host", timeoutMs: 10_000 });

    // Ingress from the group's own members: a second member's address reaches the first's host.
    await bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: g.id, direction: Direction.DIRECTION_INGRESS, remoteGroupId: g.id }) });
    const s2 = await boot("sync-2");
    const a2 = s2.interfaces[0]!.ipAddresses[0]!;
    await eventually(async () => (await rulesOf(s1)).some((r) => r.remoteAddresses?.includes(a2)), { what: "the new member's address in the first member's rule", timeoutMs: 10_000 });

    // Tunnel addresses: each host learns the other's.
    const [hA, hB] = fx.hosts as [string, string];
    const args = (ip: string) => ["--driver", "fake", "--vcpus", "400", "--memory-mb", String(400 * 1024), "--disk-gb", "4000", "--tunnel-ip", ip];
    await agents.stop(hA);
    agents.restart(hA, { driverArgs: args("192.0.2.1") });
    await agents.stop(hB);
    agents.restart(hB, { driverArgs: args("192.0.2.2") });
    const peers = async (h: string): Promise<string[]> => {
      try {
        return JSON.parse(await readFile(join(dir, h, "fake-network.json"), "utf8")).peers ?? [];
      } catch {
        return [];
      }
    };
    await eventually(async () => (await peers(hA)).join() === "192.0.2.2" && (await peers(hB)).join() === "192.0.2.1", { what: "each host's peer the other's tunnel address", timeoutMs: 30_000 });
    for (const s of [s1, s2]) await bob.servers.deleteServer({ id: s.id });
    for (const s of [s1, s2]) await settled(bob, s.id, ServerStatus.SERVER_STATUS_DELETED);
  });

  test("bad input names the field; other projects' networks and ports are not found", async () => {
    const net = (await bob.networks.createNetwork({ name: "bob-net" })).network!;
    const sub = (await bob.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.9.0.0/24" }) })).subnet!;
    const cases: [string, () => Promise<unknown>, number, string][] = [
      ["overlapping subnet", () => bob.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.9.0.128/25" }) }), status.INVALID_ARGUMENT, "subnet.cidr"],
      ["host bits set", () => bob.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.10.0.1/24" }) }), status.INVALID_ARGUMENT, "subnet.cidr"],
      ["gateway outside", () => bob.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.11.0.0/24", gatewayIp: "10.12.0.1" }) }), status.INVALID_ARGUMENT, "subnet.gateway_ip"],
      [
        "pool outside",
        () => bob.networks.createSubnet({ subnet: Subnet.fromPartial({ networkId: net.id, cidr: "10.13.0.0/24", allocationPools: [{ start: "10.13.0.10", end: "10.13.1.5" }] }) }),
        status.INVALID_ARGUMENT,
        "subnet.allocation_pools[0]",
      ],
      ["fixed IP outside", () => bob.networks.createPort({ networkId: net.id, fixedIps: [{ subnetId: sub.id, ipAddress: "10.99.0.5" }] }), status.INVALID_ARGUMENT, "fixed_ips[0].ip_address"],
      ["multicast MAC", () => bob.networks.createPort({ networkId: net.id, macAddress: "01:00:5e:00:00:01" }), status.INVALID_ARGUMENT, "mac_address"],
      ["not a MAC", () => bob.networks.createPort({ networkId: net.id, macAddress: "fa:16:3e:zz:00:01" }), status.INVALID_ARGUMENT, "mac_address"],
      ["flat by a member", () => bob.networks.createNetwork({ name: "x", segmentation: Segmentation.SEGMENTATION_FLAT, physicalNetwork: "br0" }), status.PERMISSION_DENIED, ""],
      [
        "server fixed IP outside",
        () => bob.servers.createServer({ name: "x", flavorId: "n.tiny", imageId, networks: [{ networkId: net.id, portId: "", fixedIp: "10.8.0.9" }] }),
        status.INVALID_ARGUMENT,
        "networks[0].fixed_ip",
      ],
      [
        "a rule of an unknown group",
        () => bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: "00000000-0000-4000-8000-000000000000", direction: Direction.DIRECTION_INGRESS }) }),
        status.NOT_FOUND,
        "",
      ],
    ];
    for (const [what, call, code, field] of cases) {
      const f = await failure(call());
      assert.equal(f.code, code, `${what}: ${f.message}`);
      if (field) assert.deepEqual(f.fields, [field], what);
    }
    const port = (await bob.networks.createPort({ networkId: net.id, fixedIps: [{ subnetId: sub.id, ipAddress: "10.9.0.50" }] })).port!;
    assert.deepEqual(port.fixedIps.map((f) => f.ipAddress), ["10.9.0.50"]);
    const taken = await failure(bob.networks.createPort({ networkId: net.id, fixedIps: [{ subnetId: "", ipAddress: "10.9.0.50" }] }));
    assert.equal(taken.code, status.ALREADY_EXISTS);
    assert.deepEqual(taken.fields, ["fixed_ips[0].ip_address"]);
    const takenByServer = await failure(bob.servers.createServer({ name: "x", flavorId: "n.tiny", imageId, networks: [{ networkId: net.id, portId: "", fixedIp: "10.9.0.50" }] }));
    assert.equal(takenByServer.code, status.ALREADY_EXISTS);
    assert.deepEqual(takenByServer.fields, ["networks[0].fixed_ip"]);
    const sameMac = await failure(bob.networks.createPort({ networkId: net.id, macAddress: port.macAddress }));
    assert.equal(sameMac.code, status.ALREADY_EXISTS);
    // Another project sees none of it.
    const others = await Promise.all(
      [alice.networks.getNetwork({ id: net.id }), alice.networks.getPort({ id: port.id }), alice.networks.getSubnet({ id: sub.id }), alice.networks.createPort({ networkId: net.id })].map(failure),
    );
    assert.deepEqual(others.map((f) => f.code), [status.NOT_FOUND, status.NOT_FOUND, status.NOT_FOUND, status.NOT_FOUND]);
    const viaServer = await failure(alice.servers.createServer({ name: "x", flavorId: "n.tiny", imageId, networks: [{ networkId: "", portId: port.id, fixedIp: "" }] }));
    assert.equal(viaServer.code, status.NOT_FOUND);
    // Rules: a port range needs a protocol that has ports.
    const g = (await bob.securityGroups.createSecurityGroup({ name: "web" })).securityGroup!;
    assert.equal(g.rules.length, 1, "a new group allows egress");
    const any = await failure(bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: g.id, direction: Direction.DIRECTION_INGRESS, portRangeMin: 80 }) }));
    assert.equal(any.code, status.INVALID_ARGUMENT);
    const icmp = (await bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: g.id, direction: Direction.DIRECTION_INGRESS, protocol: "icmp" }) })).rule!;
    assert.equal(icmp.portRangeMin, undefined, "any ICMP type");
    const dup = await failure(bob.securityGroups.createSecurityGroupRule({ rule: SecurityGroupRule.fromPartial({ securityGroupId: g.id, direction: Direction.DIRECTION_INGRESS, protocol: "icmp" }) }));
    assert.equal(dup.code, status.ALREADY_EXISTS);
    // In use: a network with a port, a subnet with an address, a group with a port.
    const used = await bob.networks.createPort({ networkId: net.id, securityGroupIds: [g.id] });
    assert.equal((await failure(bob.networks.deleteNetwork({ id: net.id }))).reason, "NETWORK_IN_USE");
    assert.equal((await failure(bob.networks.deleteSubnet({ id: sub.id }))).reason, "SUBNET_IN_USE");
    assert.equal((await failure(bob.securityGroups.deleteSecurityGroup({ id: g.id }))).reason, "SECURITY_GROUP_IN_USE");
    await bob.networks.deletePort({ id: used.port!.id });
    await bob.networks.deletePort({ id: port.id });
    await bob.securityGroups.deleteSecurityGroup({ id: g.id });
    await bob.networks.deleteNetwork({ id: net.id });
    assert.equal((await failure(bob.networks.getNetwork({ id: net.id }))).code, status.NOT_FOUND);
  });
});
