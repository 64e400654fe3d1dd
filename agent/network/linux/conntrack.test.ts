import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import { CommandError, Runner } from "./commands.js";
import { admits, admitted, deleteLine, directionsToFlush, isNothingDeleted, parseFlows, type Flow } from "./conntrack.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const LISTED = [
  "tcp      6 431999 ESTABLISHED src=10.63.0.10 dst=10.63.0.11 sport=40522 dport=8000 src=10.63.0.11 dst=10.63.0.10 sport=8000 dport=40522 [ASSURED] mark=0 zone=3 use=1",
  "icmp     1 29 src=10.63.0.10 dst=10.63.0.11 type=8 code=0 id=7694 src=10.63.0.11 dst=10.63.0.10 type=0 code=0 id=7694 mark=0 zone=3 use=1",
  "gre      47 179 src=10.63.0.10 dst=10.63.0.11 srckey=0x0 dstkey=0x0 src=10.63.0.11 dst=10.63.0.10 srckey=0x0 dstkey=0x0 mark=0 use=1",
  "",
].join("\n");

const tcp: Flow = { protonum: 6, src: "10.63.0.10", dst: "10.63.0.11", sport: 40522, dport: 8000 };

describe("conntrack entries", () => {
  test("the original direction of listed entries", () => {
    const [t, i, g, ...rest] = parseFlows(LISTED);
    assert.deepEqual(rest, []);
    assert.deepEqual(t, { ...tcp, type: undefined, code: undefined, id: undefined });
    assert.deepEqual([i?.protonum, i?.src, i?.dst, i?.type, i?.code, i?.id], [1, "10.63.0.10", "10.63.0.11", 8, 0, 7694]);
    assert.deepEqual([g?.protonum, g?.src, g?.dst, g?.sport], [47, "10.63.0.10", "10.63.0.11", undefined]);
  });

  test("a rule admits a flow as its nft rule would: protocol, port range, ICMP type and code, remote CIDR or group", () => {
    const icmp: Flow = { protonum: 1, src: "10.63.0.10", dst: "10.63.0.11", type: 8, code: 0, id: 1 };
    const cases: [Parameters<typeof testRule>[1], Flow, boolean][] = [
      [{}, tcp, true],
      [{ protocol: "tcp" }, tcp, true],
      [{ protocol: "udp" }, tcp, false],
      [{ protocol: "tcp", portMin: 7990, portMax: 8000 }, tcp, true],
      [{ protocol: "tcp", portMin: 8001, portMax: 9000 }, tcp, false],
      [{ protocol: "tcp", portMin: 8000, portMax: 0 }, tcp, true],
      [{ protocol: "tcp", remoteCidr: "10.63.0.0/28" }, tcp, true],
      [{ protocol: "tcp", remoteCidr: "10.63.0.16/28" }, tcp, false],
      [{ remoteCidr: "10.63.0.10" }, tcp, true],
      [{ remoteCidr: "2001:db8::/64" }, tcp, false],
      [{ remoteAddresses: ["10.63.0.9", "10.63.0.10"] }, tcp, true],
      [{ remoteAddresses: ["10.63.0.9"] }, tcp, false],
      [{ remoteAddresses: [] }, tcp, false],
      [{ protocol: "icmp", portMin: -1, portMax: -1 }, icmp, true],
      [{ protocol: "icmp", portMin: 8, portMax: -1 }, icmp, true],
      [{ protocol: "icmp", portMin: 8, portMax: 1 }, icmp, false],
      [{ protocol: "icmp", portMin: 0, portMax: -1 }, icmp, false],
      [{ protocol: "6" }, tcp, true],
      [{ protocol: "47" }, tcp, false],
    ];
    for (const [rule, flow, want] of cases) assert.equal(admits(testRule("ingress", rule), flow, "ingress"), want, JSON.stringify(rule));
    assert.equal(admits(testRule("egress"), tcp, "ingress"), false, "a rule of the other direction");
    assert.equal(admits(testRule("egress", { remoteCidr: "10.63.0.11/32" }), tcp, "egress"), true, "egress: the remote is the destination");
  });

  test("a port admits DHCP of its direction without a rule", () => {
    const port = testPort(testNetwork(63), 10);
    assert.equal(admitted(port, { protonum: 17, src: "10.63.0.2", dst: "10.63.0.10", sport: 67, dport: 68 }, "ingress"), true);
    assert.equal(admitted(port, { protonum: 17, src: "10.63.0.10", dst: "10.63.0.2", sport: 68, dport: 67 }, "egress"), true);
    assert.equal(admitted(port, tcp, "ingress"), false);
  });

  test("only directions whose rules admit less are flushed", () => {
    const port = testPort(testNetwork(63), 10, { securityRules: [testRule("egress"), testRule("ingress", { protocol: "tcp", portMin: 22, portMax: 22 })] });
    const group = (...addresses: string[]) => ({ ...port, securityRules: [testRule("egress"), testRule("ingress", { remoteAddresses: addresses })] });
    assert.deepEqual(directionsToFlush(undefined, port), [], "not plugged here before");
    assert.deepEqual(directionsToFlush(port, port), []);
    assert.deepEqual(directionsToFlush(port, { ...port, securityRules: [...port.securityRules, testRule("ingress", { protocol: "udp" })] }), [], "a rule added");
    assert.deepEqual(directionsToFlush(port, { ...port, securityRules: [testRule("egress")] }), ["ingress"]);
    assert.deepEqual(directionsToFlush(port, { ...port, securityRules: [] }), ["ingress", "egress"]);
    assert.deepEqual(directionsToFlush(group("10.63.0.5", "10.63.0.6"), group("10.63.0.5")), ["ingress"], "a remote group lost a member");
    assert.deepEqual(directionsToFlush(group("10.63.0.5"), group("10.63.0.5", "10.63.0.6")), [], "a remote group gained one");
    assert.deepEqual(directionsToFlush({ ...port, portSecurity: false }, port), ["ingress", "egress"], "port security turned on");
    assert.deepEqual(directionsToFlush(port, { ...port, portSecurity: false }), [], "port security turned off");
  });

  test("a flow is deleted by its exact tuple in its zone", () => {
    assert.equal(deleteLine(3, tcp), "-D -w 3 -f ipv4 -p tcp -s 10.63.0.10 -d 10.63.0.11 --sport 40522 --dport 8000");
    assert.equal(
      deleteLine(0, { protonum: 1, src: "10.63.0.10", dst: "10.63.0.11", type: 8, code: 0, id: 9 }),
      "-D -w 0 -f ipv4 -p icmp -s 10.63.0.10 -d 10.63.0.11 --icmp-type 8 --icmp-code 0 --icmp-id 9",
    );
    assert.equal(deleteLine(7, { protonum: 47, src: "10.63.0.10", dst: "10.63.0.11" }), "-D -w 7 -f ipv4 -p 47 -s 10.63.0.10 -d 10.63.0.11");
  });

  test("only conntrack's own 'nothing deleted' is not a failure", () => {
    const said = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.";
    assert.equal(isNothingDeleted(new CommandError("conntrack -D", 1, said, undefined)), true);
    assert.equal(isNothingDeleted(new CommandError("conntrack -D", 2, said, undefined)), false, "another status");
    assert.equal(isNothingDeleted(new CommandError("conntrack -D", 1, "conntrack v1.4.7 (conntrack-tools): Operation failed: Operation not permitted", undefined)), false);
    assert.equal(isNothingDeleted(new CommandError("conntrack -D", 1, `${said}\nsomething else`, undefined)), false, "more was said");
    assert.equal(isNothingDeleted(new Error(said)), false);
  });
});

const skip =
  (await skipReason()) ??
  (await sh("conntrack", "--version").then(
    () => undefined,
    (err: unknown) => `needs conntrack (${String(err)})`,
  ));
const lab = new Lab();
after(() => lab.cleanup());

describe("the conntrack tool", { skip }, () => {
  test("deleting what is not there is told apart from a real failure", async () => {
    const run = new Runner(await lab.namespace("ct"));
    const nothing = await run.run({ file: "conntrack", args: ["-D", "-w", "3", "-f", "ipv4", "-d", "10.63.0.11"] }).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Versions that exit 0 here need no exception; 1.4.7 exits 1.
    if (nothing !== undefined) assert.equal(isNothingDeleted(nothing), true, String(nothing));
    const bad = await run.run({ file: "conntrack", args: ["-D", "-w", "3", "-d", "not-an-address"] }).then(
      () => assert.fail("an unparsable address is refused"),
      (err: unknown) => err,
    );
    assert.equal(isNothingDeleted(bad), false, String(bad));
  });
});
