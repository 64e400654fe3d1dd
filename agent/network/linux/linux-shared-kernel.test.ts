/**
 * Two agents on one kernel, in one network namespace (as a test machine
 * running two hypervisor "hosts" does): they share a VXLAN network's bridge
 * and VXLAN device, keep their own DHCP servers and security tables, and
 * neither's rules or cleanup touch the other's ports.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import type { NetworkSpec } from "../types.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { dhcpNames, vxlanBridgeName, vxlanDeviceName } from "./naming.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const skip = await skipReason();
const lab = new Lab();
const log = pino({ level: process.env.NM_TEST_LOG ?? "silent" });
let ns = "";
let X: LinuxNetworkDriver;
let Y: LinuxNetworkDriver;

before(async () => {
  if (skip) return;
  ns = await lab.namespace("kernel");
  // The bridges' own nf_call_iptables must be enough: the namespace-wide switch is off here.
  await sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0");
  await sh("ip", "-n", ns, "addr", "add", "10.98.0.1/24", "dev", "lo");
  await sh("ip", "-n", ns, "addr", "add", "10.98.0.2/24", "dev", "lo");
  X = new LinuxNetworkDriver({ hostname: "x", hostTag: lab.tag(), netns: ns, tunnelIp: "10.98.0.1", stateDir: await lab.stateDir(), logger: log });
  Y = new LinuxNetworkDriver({ hostname: "y", hostTag: lab.tag(), netns: ns, tunnelIp: "10.98.0.2", stateDir: await lab.stateDir(), logger: log });
});

after(async () => {
  try {
    if (!skip) {
      await X.purge();
      await Y.purge();
    }
  } finally {
    await lab.cleanup();
  }
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

function withDhcpPort(net: NetworkSpec, host: number, mac: string): NetworkSpec {
  const subnet = net.subnets[0]!;
  return { ...net, dhcpPort: { id: `dhcp-${host}`, mac, fixedIps: [{ subnetId: subnet.id, address: `10.51.0.${host}` }] } };
}

async function ifindex(name: string): Promise<number> {
  const [link] = JSON.parse(await sh("ip", "-n", ns, "-j", "link", "show", "dev", name)) as { ifindex: number }[];
  return link!.ifindex;
}

async function linkExists(name: string): Promise<boolean> {
  return (await sh("ip", "-n", ns, "-br", "link")).split("\n").some((l) => l.split(/[\s@]/)[0] === name);
}

describe("two agents on one kernel", { skip }, () => {
  const base = testNetwork(51);
  const netX = withDhcpPort(base, 2, "fa:16:3e:00:51:02");
  const netY = withDhcpPort(base, 3, "fa:16:3e:00:51:03");
  const icmpIn = testRule("ingress", { protocol: "icmp", portMin: -1, portMax: -1 });
  const px = testPort(netX, 10, { securityRules: [testRule("egress"), icmpIn] });
  const py = testPort(netY, 11, { securityRules: [testRule("egress")] });
  let gx = "";
  let gy = "";

  test("they share the bridge and VXLAN device and flood to no address of their own kernel", async () => {
    await X.setPeers(["10.98.0.1", "10.98.0.2"]);
    await Y.setPeers(["10.98.0.1", "10.98.0.2"]);
    const [vx] = await X.plug("vmX", [px]);
    const before = await ifindex(vxlanDeviceName(base.id));
    const [vy] = await Y.plug("vmY", [py]);
    assert.equal(await ifindex(vxlanDeviceName(base.id)), before, "Y reuses X's VXLAN device");
    assert.equal(vx?.bridge, vy?.bridge);
    assert.doesNotMatch(await sh("ip", "netns", "exec", ns, "bridge", "fdb", "show", "dev", vxlanDeviceName(base.id)), /dst 10\.98/);
    gx = await lab.guest("gx", ns, vx!, "10.51.0.10/24");
    gy = await lab.guest("gy", ns, vy!, "10.51.0.11/24");
  });

  test("each agent's rules apply to its own ports only", async () => {
    assert.equal(await lab.ping(gy, "10.51.0.10"), true, "X's port admits ICMP");
    assert.equal(await lab.ping(gx, "10.51.0.11"), false, "Y's port does not");
    await Y.plug("vmY", [{ ...py, securityRules: [testRule("egress"), icmpIn] }]);
    assert.equal(await lab.ping(gx, "10.51.0.11"), true, "until Y's rules say so");
  });

  test("each guest gets its lease from its own agent's DHCP server", async () => {
    await sh("ip", "-n", gx, "addr", "flush", "dev", "eth0");
    await sh("ip", "-n", gy, "addr", "flush", "dev", "eth0");
    const [lx, ly] = await Promise.all([lab.dhcp(gx), lab.dhcp(gy)]);
    assert.deepEqual([lx?.ip, lx?.serverid], ["10.51.0.10", "10.51.0.2"]);
    assert.deepEqual([ly?.ip, ly?.serverid], ["10.51.0.11", "10.51.0.3"]);
    await sh("ip", "-n", gy, "addr", "add", "10.51.0.11/24", "dev", "eth0");
  });

  test("one agent's last unplug keeps the bridge the other still uses; the other's takes it", async () => {
    await lab.removeTap(ns, X.vif(px));
    await X.unplug("vmX");
    assert.equal(await linkExists(vxlanBridgeName(base.id)), true, "bridge kept for Y");
    assert.equal((await sh("ip", "netns", "list")).includes(dhcpNames(X.hostTag, base.id).namespace), false, "X's DHCP server gone");
    assert.equal((await sh("ip", "netns", "list")).includes(dhcpNames(Y.hostTag, base.id).namespace), true, "Y's stays");
    await sh("ip", "-n", gy, "addr", "flush", "dev", "eth0");
    assert.equal((await lab.dhcp(gy))?.ip, "10.51.0.11");
    await lab.removeTap(ns, Y.vif(py));
    await Y.unplug("vmY");
    assert.equal(await linkExists(vxlanBridgeName(base.id)), false);
    assert.equal(await linkExists(vxlanDeviceName(base.id)), false);
  });
});
