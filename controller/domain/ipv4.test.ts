import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultPools, formatIpv4, netmask, overlaps, parseCidr, parseIpv4, sizeOf, usable } from "./ipv4.js";

test("addresses parse only in canonical dotted form", () => {
  assert.equal(parseIpv4("10.0.0.5"), 167772165);
  assert.equal(formatIpv4(167772165), "10.0.0.5");
  assert.equal(formatIpv4(parseIpv4("255.255.255.255")!), "255.255.255.255");
  for (const bad of ["10.0.0", "10.0.0.256", "010.0.0.1", "1.2.3.4 ", "a.b.c.d", "", "::1"]) assert.equal(parseIpv4(bad), null, bad);
});

test("a CIDR with host bits set is refused", () => {
  assert.deepEqual(parseCidr("10.1.2.0/24"), { first: parseIpv4("10.1.2.0"), last: parseIpv4("10.1.2.255"), prefix: 24 });
  assert.equal(parseCidr("10.1.2.1/24"), null);
  assert.equal(parseCidr("10.1.2.0/33"), null);
  assert.equal(parseCidr("10.1.2.0"), null);
  assert.equal(netmask(24), "255.255.255.0");
  assert.equal(netmask(0), "0.0.0.0");
});

test("default pools leave out the network, broadcast and gateway addresses", () => {
  const c = parseCidr("192.168.5.0/24")!;
  const gw = parseIpv4("192.168.5.1")!;
  const pools = defaultPools(c, gw);
  assert.equal(sizeOf(pools), 253);
  assert.equal(formatIpv4(pools[0]!.first), "192.168.5.2");
  assert.equal(sizeOf(defaultPools(c, parseIpv4("192.168.5.100")!)), 253);
  assert.equal(sizeOf(defaultPools(c, null)), 254);
  assert.equal(usable(parseCidr("10.0.0.0/31")!), null);
});

test("ranges overlap when they share an address", () => {
  assert.ok(overlaps({ first: 1, last: 5 }, { first: 5, last: 9 }));
  assert.ok(!overlaps({ first: 1, last: 4 }, { first: 5, last: 9 }));
});
