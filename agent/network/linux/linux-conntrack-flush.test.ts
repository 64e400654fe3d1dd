/**
 * Removing a rule ends the connections it admitted: a replug with rules
 * that admit less deletes the conntrack entries of the port's connections
 * the new rules do not admit, so `ct state established` no longer lets
 * them on, while the port's other connections and other ports' go on. An
 * unplug deletes the port's entries. Long-lived TCP connections between
 * guests carry lines; what counts is whether a line written after the
 * change arrives.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import type { NetworkSpec, PortSpec } from "../types.js";
import { LinuxNetworkDriver } from "./linux-network-driver.js";
import { Lab, sh, skipReason, skipUnlessRequired } from "./test-hosts.js";

const needs = async (file: string, ...args: string[]) =>
  sh(file, ...args).then(
    () => undefined,
    (err: unknown) => `needs ${file} (${String(err)})`,
  );
const skip = (await skipReason()) ?? skipUnlessRequired((await needs("python3", "-c", "pass")) ?? (await needs("conntrack", "--version")));
const lab = new Lab();
const log = pino({ level: process.env.NM_TEST_LOG ?? "silent" });
const children: ChildProcess[] = [];
let ns = "";
let driver: LinuxNetworkDriver;

before(async () => {
  if (skip) return;
  ns = await lab.namespace("host");
  await sh("ip", "-n", ns, "addr", "add", "10.96.0.1/32", "dev", "lo");
  await sh("ip", "-n", ns, "link", "add", "brflat", "type", "bridge");
  await sh("ip", "-n", ns, "link", "set", "brflat", "up");
  driver = new LinuxNetworkDriver({ hostname: "ctflush", hostTag: lab.tag(), netns: ns, tunnelIp: "10.96.0.1", stateDir: await lab.stateDir(), logger: log });
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  try {
    if (!skip) await driver.purge();
  } finally {
    await lab.cleanup();
  }
  if (!skip) assert.deepEqual(await lab.leftovers(), [], "nothing is left behind");
});

/** Listens on the ports given; prints "ready", then "<port> <line>" for each line received. */
const SERVER = `
import selectors, socket, sys
sel = selectors.DefaultSelector()
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', int(p)))
    s.listen()
    sel.register(s, selectors.EVENT_READ, ('listen', p))
print('ready', flush=True)
while True:
    for key, _ in sel.select():
        kind, p = key.data
        if kind == 'listen':
            c, _ = key.fileobj.accept()
            sel.register(c, selectors.EVENT_READ, ('conn', p))
            continue
        d = key.fileobj.recv(1000)
        if not d:
            sel.unregister(key.fileobj)
            key.fileobj.close()
        for line in d.decode().split('\\n'):
            if line:
                print(p + ' ' + line, flush=True)
`;

/** Opens connections "name=address:port"; prints "connected"; then sends "text" on "name" for each stdin line "name text". */
const CLIENT = `
import socket, sys
conns = {}
for arg in sys.argv[1:]:
    name, target = arg.split('=')
    host, port = target.split(':')
    conns[name] = socket.create_connection((host, int(port)), timeout=3)
print('connected', flush=True)
for line in sys.stdin:
    name, text = line.split()
    try:
        conns[name].sendall((text + '\\n').encode())
    except OSError as e:
        print('error ' + name + ' ' + str(e), flush=True)
`;

/** A Python process in a namespace, with what it printed so far. */
class Program {
  out = "";
  readonly child: ChildProcess;

  constructor(netns: string, code: string, args: string[]) {
    this.child = spawn("ip", ["netns", "exec", netns, "python3", "-u", "-c", code, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    children.push(this.child);
    this.child.stdout?.on("data", (d: Buffer) => (this.out += d.toString()));
    this.child.stderr?.on("data", (d: Buffer) => (this.out += d.toString()));
  }

  lines(): string[] {
    return this.out.split("\n");
  }

  /** Waits (at most `ms`) until every one of `lines` was printed; resolves whether they were. */
  async printed(lines: readonly string[], ms = 5000): Promise<boolean> {
    for (let waited = 0; ; waited += 50) {
      if (lines.every((l) => this.lines().includes(l))) return true;
      if (waited >= ms || this.child.exitCode !== null) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  send(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }
}

/** Starts a server in each guest; resolves once all listen. */
async function servers(...specs: [string, ...number[]][]): Promise<Program[]> {
  const ps = specs.map(([g, ...ports]) => new Program(g, SERVER, ports.map(String)));
  for (const p of ps) assert.ok(await p.printed(["ready"]), `a server listens: ${p.out}`);
  return ps;
}

const allOut = testRule("egress");
const tcpIn = (port: number) => testRule("ingress", { protocol: "tcp", portMin: port, portMax: port });

async function plugGuest(net: NetworkSpec, port: PortSpec, name: string): Promise<string> {
  const [vif] = await driver.plug(name, [port]);
  const prefix = net.subnets[0]!.cidr.split(".").slice(0, 3).join(".");
  return lab.guest(name, ns, vif!, `${prefix}.${port.fixedIps[0]!.address.split(".")[3]}/24`);
}

/** The conntrack entries (any zone) whose original destination is `address`, as `conntrack -L` lists them. */
async function entriesTo(address: string): Promise<string> {
  return sh("ip", "netns", "exec", ns, "conntrack", "-L", "-f", "ipv4", "-d", address);
}

test("a replug without a rule ends the connections only it admitted; port security turned on ends those its rules do not admit; unplug removes a port's entries", { skip }, async () => {
  const net = testNetwork(63, { dhcp: false });
  const a = testPort(net, 10, { securityRules: [allOut] });
  const b = testPort(net, 11, { securityRules: [allOut, tcpIn(8000), tcpIn(8001)] });
  const c = testPort(net, 12, { securityRules: [allOut, tcpIn(8000)] });
  const d = testPort(net, 13, { portSecurity: false });
  const [ga, gb, gc, gd] = [await plugGuest(net, a, "a"), await plugGuest(net, b, "b"), await plugGuest(net, c, "c"), await plugGuest(net, d, "d")];
  const [sb, sc, sd] = await servers([gb, 8000, 8001], [gc, 8000], [gd, 8000]);
  const client = new Program(ga!, CLIENT, ["b0=10.63.0.11:8000", "b1=10.63.0.11:8001", "c0=10.63.0.12:8000", "d0=10.63.0.13:8000"]);
  assert.ok(await client.printed(["connected"]), `the guest connects to the others: ${client.out}`);
  for (const name of ["b0", "b1", "c0", "d0"]) client.send(`${name} one`);
  assert.ok(await sb!.printed(["8000 one", "8001 one"]), `b gets both lines: ${sb!.out}`);
  assert.ok(await sc!.printed(["8000 one"]), `c gets its line: ${sc!.out}`);
  assert.ok(await sd!.printed(["8000 one"]), `d gets its line: ${sd!.out}`);

  // b loses its rule for 8000; d gets port security with no ingress rule; c keeps its rule for 8000.
  await driver.plug("b", [{ ...b, securityRules: [allOut, tcpIn(8001)] }]);
  await driver.plug("d", [{ ...d, portSecurity: true, securityRules: [allOut] }]);
  for (const name of ["b0", "d0", "b1", "c0"]) client.send(`${name} two`);
  assert.ok(await sb!.printed(["8001 two"]), `b's connection to 8001, still admitted, goes on: ${sb!.out}`);
  assert.ok(await sc!.printed(["8000 two"]), `c's connection to the same port number goes on: ${sc!.out}`);
  // Written before the lines that arrived: given as long again, they would be there by now if they passed.
  assert.equal(await sb!.printed(["8000 two"], 1500), false, "b's connection to 8000, no longer admitted, carries nothing more");
  assert.equal(await sd!.printed(["8000 two"], 500), false, "d's connection, which its rules do not admit, carries nothing more");

  assert.match(await entriesTo("10.63.0.12"), /dport=8000/, "c's connection has its entry");
  await driver.unplug("c");
  assert.doesNotMatch(await entriesTo("10.63.0.12"), /dport=8000/, "the unplugged port's entries are gone");
  assert.match(await entriesTo("10.63.0.11"), /dport=8001/, "b's are not");
  client.send("b1 three");
  assert.ok(await sb!.printed(["8001 three"]), `b's admitted connection still carries lines: ${sb!.out}`);
});

test("on a flat network (the default conntrack zone) a replug without a rule ends the connections only it admitted", { skip }, async () => {
  const net = testNetwork(64, { dhcp: false, segmentation: "flat", physicalBridge: "brflat", vni: 0 });
  const a = testPort(net, 10, { securityRules: [allOut] });
  const b = testPort(net, 11, { securityRules: [allOut, tcpIn(8000), tcpIn(8001)] });
  const [ga, gb] = [await plugGuest(net, a, "fa"), await plugGuest(net, b, "fb")];
  const [sb] = await servers([gb, 8000, 8001]);
  const client = new Program(ga!, CLIENT, ["b0=10.64.0.11:8000", "b1=10.64.0.11:8001"]);
  assert.ok(await client.printed(["connected"]), `the guest connects: ${client.out}`);
  client.send("b0 one");
  client.send("b1 one");
  assert.ok(await sb!.printed(["8000 one", "8001 one"]), `b gets both lines: ${sb!.out}`);

  await driver.plug("fb", [{ ...b, securityRules: [allOut, tcpIn(8001)] }]);
  client.send("b0 two");
  client.send("b1 two");
  assert.ok(await sb!.printed(["8001 two"]), `the connection still admitted goes on: ${sb!.out}`);
  assert.equal(await sb!.printed(["8000 two"], 1500), false, "the one no longer admitted carries nothing more");
});
