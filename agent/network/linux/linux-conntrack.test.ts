/**
 * Networks with the same addresses on one host keep their connections
 * apart: a flow admitted on one network does not make the same 5-tuple on
 * another network count as established.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const skip = (await skipReason()) ?? (await sh("python3", "-c", "pass").then(
  () => undefined,
  (err: unknown) => `needs python3 for UDP sockets with fixed ports (${String(err)})`,
));
const lab = new Lab();
const log = pino({ level: process.env.NM_TEST_LOG ?? "silent" });
let ns = "";
let driver: LinuxNetworkDriver;

before(async () => {
  if (skip) return;
  ns = await lab.namespace("host");
  await sh("ip", "-n", ns, "addr", "add", "10.97.0.1/32", "dev", "lo");
  driver = new LinuxNetworkDriver({ hostname: "ct", hostTag: lab.tag(), netns: ns, tunnelIp: "10.97.0.1", stateDir: await lab.stateDir(), logger: log });
});

after(async () => {
  try {
    if (!skip) await driver.purge();
  } finally {
    await lab.cleanup();
  }
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

/** Runs a Python snippet in a namespace; resolves what it printed. */
async function py(netns: string, code: string): Promise<string> {
  return sh("ip", "netns", "exec", netns, "python3", "-c", code);
}

/** Receives one datagram on UDP port 8000 (within `seconds`) and answers it; prints it, or "nothing". */
function udpServer(seconds: number): string {
  return [
    "import socket",
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    "s.bind(('', 8000))",
    `s.settimeout(${seconds})`,
    "try:",
    "    d, a = s.recvfrom(100)",
    "    s.sendto(b'reply', a)",
    "    print(d.decode())",
    "except socket.timeout:",
    "    print('nothing')",
  ].join("\n");
}

/** Sends `text` from UDP port 5555 to port 8000 of `to`; prints the answer, or "nothing". */
function udpClient(to: string, text: string): string {
  return [
    "import socket",
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    "s.bind(('', 5555))",
    `s.sendto(b'${text}', ('${to}', 8000))`,
    "s.settimeout(1.5)",
    "try:",
    "    print(s.recv(100).decode())",
    "except socket.timeout:",
    "    print('nothing')",
  ].join("\n");
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a UDP flow admitted on one network does not let the same addresses and ports in on another", { skip }, async () => {
  const n1 = testNetwork(61, { dhcp: false });
  const n2 = testNetwork(61, { dhcp: false, vni: 2061 });
  const udpIn = testRule("ingress", { protocol: "udp", portMin: 8000, portMax: 8000 });
  const p1 = testPort(n1, 10, { securityRules: [testRule("egress")] });
  const p2 = testPort(n1, 11, { securityRules: [testRule("egress"), udpIn] });
  const q1 = testPort(n2, 10, { securityRules: [testRule("egress")] });
  const q2 = testPort(n2, 11, { securityRules: [testRule("egress")] });
  const vifs = await driver.plug("vm", [p1, p2, q1, q2]);
  const [g1, g2, h1, h2] = await Promise.all(vifs.map((vif, i) => lab.guest(`g${i}`, ns, vif, i % 2 === 0 ? "10.61.0.10/24" : "10.61.0.11/24")));

  const server1 = py(g2!, udpServer(3));
  await pause(300);
  assert.equal((await py(g1!, udpClient("10.61.0.11", "one"))).trim(), "reply", "network 1: the rule admits the flow and its reply");
  assert.equal((await server1).trim(), "one");

  // The same 5-tuple on network 2, while network 1's flow is still established.
  const server2 = py(h2!, udpServer(2));
  await pause(300);
  await py(h1!, udpClient("10.61.0.11", "two"));
  assert.equal((await server2).trim(), "nothing", "network 2's port admits no UDP, established elsewhere or not");
});
