/**
 * The linux network driver on two simulated hosts (namespaces joined by an
 * underlay veth pair), with guests (namespaces on the VIFs' taps) playing
 * the virtual machines: VXLAN between hosts, isolation between networks,
 * DHCP, security rules, unplug and reconcile after a restart.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import type { NetworkSpec, PortSpec } from "../types.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { dhcpNames, nftTableName, tapName, vxlanBridgeName, vxlanDeviceName } from "./naming.js";
import { Lab, running, sh, skipReason } from "./test-hosts.js";

const skip = await skipReason();
const lab = new Lab();
const log = pino({ level: process.env.NM_TEST_LOG ?? "silent" });

interface Host {
  readonly ns: string;
  readonly ip: string;
  readonly tag: string;
  readonly stateDir: string;
  driver: LinuxNetworkDriver;
}

let A: Host;
let B: Host;

function driver(h: Omit<Host, "driver">): LinuxNetworkDriver {
  return new LinuxNetworkDriver({ hostname: h.ns, hostTag: h.tag, netns: h.ns, tunnelIp: h.ip, stateDir: h.stateDir, logger: log });
}

/** The same network as this host sees it: its own DHCP port (address `.<host>`). */
function onHost(net: NetworkSpec, dhcpHost: number, mac: string): NetworkSpec {
  const subnet = net.subnets[0]!;
  const prefix = subnet.cidr.split(".").slice(0, 3).join(".");
  return { ...net, dhcpPort: { id: `${net.id.slice(0, 30)}-${dhcpHost}`, mac, fixedIps: [{ subnetId: subnet.id, address: `${prefix}.${dhcpHost}` }] } };
}

async function nftTable(h: Host, family: "bridge" | "inet"): Promise<string> {
  return sh("ip", "netns", "exec", h.ns, "nft", "list", "table", family, nftTableName(h.tag));
}

async function linkExists(ns: string, name: string): Promise<boolean> {
  return (await sh("ip", "-n", ns, "-br", "link")).split("\n").some((l) => l.split(/[\s@]/)[0] === name);
}

before(async () => {
  if (skip) return;
  const [a, b] = await lab.hosts();
  A = { ...a, tag: lab.tag(), stateDir: await lab.stateDir(), driver: undefined as unknown as LinuxNetworkDriver };
  B = { ...b, tag: lab.tag(), stateDir: await lab.stateDir(), driver: undefined as unknown as LinuxNetworkDriver };
  A.driver = driver(A);
  B.driver = driver(B);
  await A.driver.setPeers([A.ip, B.ip]);
  await B.driver.setPeers([A.ip, B.ip]);
});

after(async () => {
  try {
    if (!skip) {
      await A.driver.purge();
      await B.driver.purge();
    }
  } finally {
    await lab.cleanup();
  }
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

describe("linux network driver on two hosts", { skip }, () => {
  // Network 1 spans both hosts; network 2 has the same CIDR and lives on B only.
  const base1 = testNetwork(41);
  const net1A = onHost(base1, 2, "fa:16:3e:00:41:02");
  const net1B = onHost(base1, 3, "fa:16:3e:00:41:03");
  const net2B = onHost(testNetwork(41, { vni: 2041 }), 3, "fa:16:3e:00:42:03");
  const icmpIn = testRule("ingress", { protocol: "icmp", portMin: -1, portMax: -1 });
  const allOut = testRule("egress");
  let a1: PortSpec;
  let b1: PortSpec;
  let b2: PortSpec;
  let gA1 = "";
  let gB1 = "";
  let gB2 = "";

  test("a port on host A reaches a port on host B of its VXLAN network, not one of another network", async () => {
    a1 = testPort(net1A, 10, { securityRules: [allOut, icmpIn] });
    b1 = testPort(net1B, 11, { securityRules: [allOut, icmpIn] });
    b2 = testPort(net2B, 12, { securityRules: [allOut, icmpIn] });
    const [vifA1] = await A.driver.plug("vmA1", [a1]);
    const [vifB1] = await B.driver.plug("vmB1", [b1]);
    const [vifB2] = await B.driver.plug("vmB2", [b2]);
    assert.ok(vifA1 && vifB1 && vifB2);
    assert.equal(vifA1.bridge, vxlanBridgeName(base1.id));
    gA1 = await lab.guest("gA1", A.ns, vifA1, "10.41.0.10/24");
    gB1 = await lab.guest("gB1", B.ns, vifB1, "10.41.0.11/24");
    gB2 = await lab.guest("gB2", B.ns, vifB2, "10.41.0.12/24");
    assert.equal(await lab.ping(gA1, "10.41.0.11"), true, "A → B over VNI 1041");
    assert.equal(await lab.ping(gB1, "10.41.0.10"), true, "B → A");
    assert.equal(await lab.ping(gA1, "10.41.0.12"), false, "a port of another VXLAN network is not reachable");
    assert.equal(await lab.ping(gB2, "10.41.0.10"), false, "nor from it");
  });

  test("setPeers makes every VXLAN device's flood list exactly the peers given, without the host itself", async () => {
    const flood = async () =>
      (await sh("ip", "netns", "exec", B.ns, "bridge", "fdb", "show", "dev", vxlanDeviceName(base1.id)))
        .split("\n")
        .filter((l) => l.startsWith("00:00:00:00:00:00"))
        .map((l) => /dst (\S+)/.exec(l)?.[1]);
    assert.deepEqual(await flood(), [A.ip], "B floods to A only, not to itself");
    await B.driver.setPeers([B.ip, "10.99.0.7"]);
    assert.deepEqual(await flood(), ["10.99.0.7"], "A gone, a new peer added");
    await B.driver.setPeers([A.ip, B.ip]);
    assert.deepEqual(await flood(), [A.ip]);
    assert.equal(await lab.ping(gB1, "10.41.0.10"), true);
  });

  test("a guest gets exactly its address and options from its own host's DHCP server", async () => {
    await sh("ip", "-n", gA1, "addr", "flush", "dev", "eth0");
    const lease = await lab.dhcp(gA1);
    assert.ok(lease, "a lease");
    assert.equal(lease.ip, "10.41.0.10");
    assert.equal(lease.serverid, "10.41.0.2", "host A's DHCP server answered (B's is 10.41.0.3)");
    assert.equal(lease.subnet, "255.255.255.0");
    assert.equal(lease.router, "10.41.0.1");
    assert.equal(lease.dns, "192.0.2.53");
    assert.equal(lease.mtu, "1450");
    await sh("ip", "-n", gA1, "addr", "add", "10.41.0.10/24", "dev", "eth0");
    const leaseB = await lab.dhcp(gB1);
    assert.equal(leaseB?.serverid, "10.41.0.3", "B's guest is answered by B");
    const logB = await readFile(join(B.stateDir, "dhcp", base1.id, "dnsmasq.log"), "utf8");
    assert.match(logB, new RegExp(`DHCPDISCOVER\\(\\S+\\) (\\S+ )?${a1.mac} ignored`), "B's server heard A's port and ignored it");
    assert.doesNotMatch(logB, new RegExp(`DHCPOFFER\\S*\\s+\\S+\\s+${a1.mac}`), "B's server never offered A's port an address");
  });

  test("a guest whose port no host plugged gets no lease", async (t) => {
    const stray = A.driver.vif(testPort(net1A, 20));
    const g = await lab.guest("gstray", A.ns, stray);
    t.after(() => lab.removeTap(A.ns, stray));
    assert.equal(await lab.dhcp(g, 2), undefined);
  });

  test("ingress ICMP is dropped without a rule and passes once a replug adds one", async () => {
    await A.driver.plug("vmA1", [{ ...a1, securityRules: [allOut] }]);
    assert.equal(await lab.ping(gB1, "10.41.0.10"), false, "no ingress rule: dropped");
    assert.equal(await lab.ping(gA1, "10.41.0.11"), true, "its own pings' replies still come back (established)");
    await A.driver.plug("vmA1", [a1]);
    assert.equal(await lab.ping(gB1, "10.41.0.10"), true, "an icmp ingress rule lets it in");
  });

  test("a remote CIDR rule admits its sources only", async () => {
    await A.driver.plug("vmA1", [{ ...a1, securityRules: [allOut, testRule("ingress", { protocol: "icmp", portMin: -1, portMax: -1, remoteCidr: "10.41.0.99/32" })] }]);
    assert.equal(await lab.ping(gB1, "10.41.0.10"), false);
    await A.driver.plug("vmA1", [{ ...a1, securityRules: [allOut, testRule("ingress", { remoteAddresses: ["10.41.0.11"] })] }]);
    assert.equal(await lab.ping(gB1, "10.41.0.10"), true, "a remote group with B1's address admits it");
    await A.driver.plug("vmA1", [a1]);
  });

  test("a TCP port range rule admits its ports only; replies to the port's own connections come back", async () => {
    await A.driver.plug("vmA1", [{ ...a1, securityRules: [allOut, testRule("ingress", { protocol: "tcp", portMin: 8000, portMax: 8001 })] }]);
    assert.equal(await lab.tcpReaches(gA1, gB1, "10.41.0.10", 8001), true, "8001 is in the range");
    assert.equal(await lab.tcpReaches(gA1, gB1, "10.41.0.10", 8002), false, "8002 is not");
    assert.equal(await lab.tcpReaches(gB1, gA1, "10.41.0.11", 8002), false, "B1 admits no TCP");
    await B.driver.plug("vmB1", [{ ...b1, securityRules: [allOut, icmpIn, testRule("ingress", { protocol: "tcp" })] }]);
    assert.equal(await lab.tcpReaches(gB1, gA1, "10.41.0.11", 8002), true, "A1's own connection is answered");
    await A.driver.plug("vmA1", [a1]);
    await B.driver.plug("vmB1", [b1]);
  });

  test("without egress rules a port sends nothing but DHCP and ARP", async () => {
    await A.driver.plug("vmA1", [{ ...a1, securityRules: [icmpIn] }]);
    assert.equal(await lab.ping(gA1, "10.41.0.11"), false);
    await sh("ip", "-n", gA1, "addr", "flush", "dev", "eth0");
    assert.equal((await lab.dhcp(gA1))?.ip, "10.41.0.10", "DHCP still works");
    await sh("ip", "-n", gA1, "addr", "add", "10.41.0.10/24", "dev", "eth0");
    await A.driver.plug("vmA1", [a1]);
  });

  test("a spoofed source address is dropped; port security off lets it through", async () => {
    // ARP from the guest names its own address (a spoofed one in ARP is dropped too, which would only delay the pings).
    await sh("ip", "netns", "exec", gA1, "sysctl", "-qw", "net.ipv4.conf.eth0.arp_announce=2");
    assert.equal(await lab.ping(gA1, "10.41.0.11"), true);
    await sh("ip", "-n", gA1, "addr", "add", "10.41.0.99/24", "dev", "eth0");
    assert.equal(await lab.ping(gA1, "10.41.0.11", "10.41.0.99"), false, "spoofed source dropped");
    assert.equal(await lab.ping(gA1, "10.41.0.11", "10.41.0.10"), true, "its own address passes");
    await A.driver.plug("vmA1", [{ ...a1, portSecurity: false }]);
    assert.doesNotMatch(await nftTable(A, "inet"), new RegExp(tapName(a1.id)), "no chains for a port without security");
    assert.equal(await lab.ping(gA1, "10.41.0.11", "10.41.0.99"), true);
    await A.driver.plug("vmA1", [a1]);
    await sh("ip", "-n", gA1, "addr", "del", "10.41.0.99/24", "dev", "eth0");
  });

  test("after a restart, reconcile removes a vanished instance's ports and network and keeps the others working", async () => {
    await lab.removeTap(B.ns, B.driver.vif(b2));
    const pidFile = join(B.stateDir, "dhcp", base1.id, "dnsmasq.pid");
    const pid = Number((await readFile(pidFile, "utf8")).trim());
    await B.driver.close();
    B.driver = driver(B);
    await B.driver.reconcile(["vmB1"]);
    assert.equal(Number((await readFile(pidFile, "utf8")).trim()), pid, "the kept network's dnsmasq is adopted, not restarted");
    assert.equal(await running(pid), true);
    assert.deepEqual([...(await B.driver.plugged()).keys()], ["vmB1"]);
    assert.doesNotMatch(await nftTable(B, "inet"), new RegExp(tapName(b2.id)), "the vanished port's chains are gone");
    assert.equal(await linkExists(B.ns, vxlanBridgeName(net2B.id)), false, "its network's bridge is gone");
    assert.equal((await sh("ip", "netns", "list")).includes(dhcpNames(B.tag, net2B.id).namespace), false, "and its DHCP namespace");
    assert.equal(await lab.ping(gA1, "10.41.0.11"), true, "the kept instance still works");
    assert.equal(await lab.ping(gB1, "10.41.0.10"), true);
    assert.equal((await lab.dhcp(gB2, 1)), undefined, "the vanished guest's network has no DHCP server");
  });

  test("unplug removes the port's chains and DHCP entry; the last port takes the network's devices and DHCP server", async () => {
    const a3 = testPort(net1A, 13, { securityRules: [allOut] });
    await A.driver.plug("vmA3", [a3]);
    const hosts = join(A.stateDir, "dhcp", base1.id, "hosts");
    assert.match(await readFile(hosts, "utf8"), new RegExp(a3.mac));
    await A.driver.unplug("vmA3");
    assert.doesNotMatch(await readFile(hosts, "utf8"), new RegExp(a3.mac), "hosts entry gone");
    assert.doesNotMatch(await nftTable(A, "inet"), new RegExp(tapName(a3.id)), "chains gone");
    assert.doesNotMatch(await nftTable(A, "bridge"), new RegExp(tapName(a3.id)));

    const pid = Number((await readFile(join(A.stateDir, "dhcp", base1.id, "dnsmasq.pid"), "utf8")).trim());
    assert.equal(await running(pid), true, "dnsmasq runs");
    await lab.removeTap(A.ns, A.driver.vif(a1));
    await A.driver.unplug("vmA1");
    assert.equal(await linkExists(A.ns, vxlanBridgeName(base1.id)), false, "bridge gone");
    assert.equal(await linkExists(A.ns, vxlanDeviceName(base1.id)), false, "VXLAN device gone");
    assert.equal((await sh("ip", "netns", "list")).includes(dhcpNames(A.tag, base1.id).namespace), false, "DHCP namespace gone");
    assert.equal(await running(pid), false, "dnsmasq stopped");
    assert.deepEqual([...(await A.driver.plugged()).keys()], []);
  });
});
