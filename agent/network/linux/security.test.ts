import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { testNetwork, testPort, testRule } from "../test-ports.js";
import {
  antiSpoofRules,
  baseScript,
  chooseSlot,
  directionRules,
  portScript,
  preferredSlot,
  removeScript,
  ruleMatch,
  zoneOf,
  zonesScript,
  type SecurityState,
} from "./security.js";
import { Runner } from "./commands.js";
import { Lab, sh, skipReason } from "./test-hosts.js";

const empty: SecurityState = { bridgeChains: new Set(), inetChains: new Set(), elements: new Map(), slots: new Map(), zones: new Map() };

describe("security rules as nft rules", () => {
  test("protocol, port range, ICMP type and code, remote CIDR and remote group", () => {
    assert.equal(ruleMatch(testRule("ingress", { protocol: "tcp", portMin: 22, portMax: 22 })), "meta nfproto ipv4 tcp dport 22 accept");
    assert.equal(ruleMatch(testRule("ingress", { protocol: "udp", portMin: 1000, portMax: 2000 })), "meta nfproto ipv4 udp dport 1000-2000 accept");
    assert.equal(ruleMatch(testRule("egress", { protocol: "tcp" })), "meta nfproto ipv4 meta l4proto tcp accept");
    assert.equal(ruleMatch(testRule("ingress", { protocol: "icmp", portMin: 8, portMax: -1 })), "meta nfproto ipv4 icmp type 8 accept");
    assert.equal(ruleMatch(testRule("ingress", { protocol: "icmp", portMin: 3, portMax: 4 })), "meta nfproto ipv4 icmp type 3 icmp code 4 accept");
    assert.equal(ruleMatch(testRule("ingress", { protocol: "icmp", portMin: -1, portMax: -1 })), "meta nfproto ipv4 meta l4proto icmp accept");
    assert.equal(ruleMatch(testRule("ingress", { remoteCidr: "10.0.0.7" })), "meta nfproto ipv4 ip saddr 10.0.0.7/32 accept");
    assert.equal(ruleMatch(testRule("egress", { remoteCidr: "10.1.2.3/16" })), "meta nfproto ipv4 ip daddr 10.1.0.0/16 accept");
    assert.equal(
      ruleMatch(testRule("ingress", { protocol: "tcp", portMin: 80, portMax: 80, remoteAddresses: ["10.0.0.5", "10.0.0.6"] })),
      "meta nfproto ipv4 ip saddr { 10.0.0.5, 10.0.0.6 } tcp dport 80 accept",
    );
    assert.equal(ruleMatch(testRule("egress", { protocol: "47" })), "meta nfproto ipv4 meta l4proto 47 accept");
  });

  test("a rule that can match nothing here is left out; an unknown protocol is an error", () => {
    assert.equal(ruleMatch(testRule("ingress", { remoteAddresses: [] })), null, "a remote group without ports");
    assert.equal(ruleMatch(testRule("ingress", { remoteCidr: "2001:db8::/64" })), null, "IPv6");
    assert.throws(() => ruleMatch(testRule("ingress", { protocol: "sctp-ish" })), RangeError);
  });

  test("a direction's chain: established first, DHCP, the rules, then drop", () => {
    const port = testPort(testNetwork(1), 10, { securityRules: [testRule("ingress", { protocol: "tcp", portMin: 22, portMax: 22 }), testRule("egress")] });
    const ingress = directionRules(port, "ingress");
    assert.equal(ingress[0], "ct state established,related accept");
    assert.ok(ingress.includes("meta nfproto ipv4 udp sport 67 udp dport 68 accept"));
    assert.ok(ingress.includes("meta nfproto ipv4 tcp dport 22 accept"));
    assert.equal(ingress.at(-1), "drop");
    assert.deepEqual(directionRules({ ...port, securityRules: [] }, "egress").slice(-2), ["meta nfproto ipv4 udp sport 68 udp dport 67 accept", "drop"]);
  });

  test("anti-spoofing: the port's MAC, its addresses, ARP for its own address only", () => {
    const port = testPort(testNetwork(1), 10);
    const rules = antiSpoofRules(port);
    assert.ok(rules.includes(`ether saddr != ${port.mac} drop`));
    assert.ok(rules.includes("ether type arp arp saddr ip != { 10.1.0.10 } drop"));
    assert.ok(rules.includes("ether type ip ip saddr { 10.1.0.10 } accept"));
    assert.equal(rules.at(-1), "drop");
  });

  test("a port keeps its slot; a new one skips slots taken", () => {
    const tap = "tap0123456789a";
    const preferred = preferredSlot(tap);
    assert.equal(chooseSlot(tap, new Map()), preferred);
    assert.equal(chooseSlot(tap, new Map([[7, tap]])), 7);
    assert.equal(chooseSlot(tap, new Map([[preferred, "tapother"]])), (preferred % 65535) + 1);
  });

  test("zones: bridges added, changed and gone", () => {
    const state = { ...empty, zones: new Map([["nmbra", 3], ["nmbrb", 4], ["nmbrc", 5]]) };
    assert.equal(
      zonesScript("ab", new Map([["nmbra", 3], ["nmbrb", 9], ["nmbrd", 7]]), state),
      'delete element inet nm_ab v_zone { "nmbrb" }\ndelete element inet nm_ab v_zone { "nmbrc" }\n' +
        'add element inet nm_ab v_zone { "nmbrb" : 9 }\nadd element inet nm_ab v_zone { "nmbrd" : 7 }\n',
    );
    assert.equal(zoneOf(1), 1);
    assert.equal(zoneOf(65535), 65535);
    assert.equal(zoneOf(65536), 1);
  });

  test("removing a tap nothing has is no script", () => {
    assert.equal(removeScript("ab", "tap0123456789a", empty), "");
  });
});

const skip = await skipReason();
const lab = new Lab();
after(() => lab.cleanup());

describe("nft accepts the scripts", { skip }, () => {
  test("base, a port with every kind of rule, its replacement and removal", async () => {
    const ns = await lab.namespace("nft");
    const run = new Runner(ns);
    const nft = (script: string) => run.nft(script);
    await nft(baseScript("ab"));
    await nft(baseScript("ab"));
    const port = testPort(testNetwork(1), 10, {
      securityRules: [
        testRule("ingress", { protocol: "tcp", portMin: 22, portMax: 22, remoteCidr: "10.0.0.0/8" }),
        testRule("ingress", { protocol: "udp", portMin: 53, portMax: 54, remoteAddresses: ["10.1.0.3"] }),
        testRule("ingress", { protocol: "icmp", portMin: 8, portMax: 0 }),
        testRule("egress"),
      ],
    });
    await nft(portScript("ab", port, 5, empty));
    await nft(portScript("ab", port, 5, empty));
    const listed = await sh("ip", "netns", "exec", ns, "nft", "list", "ruleset");
    assert.match(listed, /tcp dport 22 accept/);
    assert.match(listed, /udp dport 53-54 accept/);
    assert.match(listed, /icmp type echo-request icmp code (0|net-unreachable) accept/);
    const tap = `tap${port.id.replaceAll("-", "").slice(0, 11)}`;
    const state: SecurityState = {
      bridgeChains: new Set([`s_${tap}`, `o_${tap}`]),
      inetChains: new Set([`e_${tap}`, `i_${tap}`]),
      elements: new Map<string, ReadonlyMap<string | number, string>>([
        ["v_spoof", new Map([[tap, `s_${tap}`]])],
        ["v_out", new Map([[tap, `o_${tap}`]])],
        ["v_egress", new Map([[5 * 0x10000, `e_${tap}`]])],
        ["v_ingress", new Map([[5, `i_${tap}`]])],
      ]),
      slots: new Map([[5, tap]]),
      zones: new Map(),
    };
    await nft(removeScript("ab", tap, state));
    assert.doesNotMatch(await sh("ip", "netns", "exec", ns, "nft", "list", "ruleset"), new RegExp(tap));
  });
});
