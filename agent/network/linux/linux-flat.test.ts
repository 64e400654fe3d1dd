/**
 * A flat network on the operator's bridge, which carries the host's own
 * address: guests get DHCP there, the bridge is never removed, and a port's
 * egress rules also hold for traffic to the host itself.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const skip = await skipReason();
const lab = new Lab();
const log = pino({ level: process.env.NM_TEST_LOG ?? "silent" });
let ns = "";
let driver: LinuxNetworkDriver;

before(async () => {
  if (skip) return;
  ns = await lab.namespace("host");
  await sh("ip", "-n", ns, "link", "add", "brflat", "type", "bridge");
  await sh("ip", "-n", ns, "addr", "add", "10.62.0.1/24", "dev", "brflat");
  await sh("ip", "-n", ns, "link", "set", "brflat", "up");
  driver = new LinuxNetworkDriver({ hostname: "flat", hostTag: lab.tag(), netns: ns, stateDir: await lab.stateDir(), logger: log });
});

after(async () => {
  try {
    if (!skip) await driver.purge();
  } finally {
    await lab.cleanup();
  }
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

test("a flat network: DHCP on the operator's bridge, egress rules for the host's own address, the bridge kept", { skip }, async () => {
  const net = testNetwork(62, { segmentation: "flat", physicalBridge: "brflat", vni: 0 });
  const port = testPort(net, 10, { securityRules: [] });
  const [vif] = await driver.plug("vm", [port]);
  assert.equal(vif?.bridge, "brflat");
  const g = await lab.guest("g", ns, vif!);
  const lease = await lab.dhcp(g);
  assert.deepEqual([lease?.ip, lease?.serverid, lease?.router], ["10.62.0.10", "10.62.0.2", "10.62.0.1"]);
  await sh("ip", "-n", g, "addr", "add", "10.62.0.10/24", "dev", "eth0");
  assert.equal(await lab.ping(g, "10.62.0.1"), false, "no egress rule: the host is not reached either");
  await driver.plug("vm", [{ ...port, securityRules: [testRule("egress", { protocol: "icmp", portMin: -1, portMax: -1 })] }]);
  assert.equal(await lab.ping(g, "10.62.0.1"), true, "an ICMP egress rule lets it ping the host");
  await lab.removeTap(ns, vif!);
  await driver.unplug("vm");
  assert.match(await sh("ip", "-n", ns, "-br", "link", "show", "dev", "brflat"), /^brflat/, "the operator's bridge stays");
});
