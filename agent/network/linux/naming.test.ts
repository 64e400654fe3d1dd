import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";
import { IFNAME_MAX, checkHostTag, defaultHostTag, dhcpNames, tapName, vxlanBridgeName, vxlanDeviceName } from "./naming.js";

test("interface names are deterministic and at most 15 characters", () => {
  const id = "5f0c2a1e-9b7d-4c3e-8a6f-0123456789ab";
  assert.equal(tapName(id), "tap5f0c2a1e9b7");
  assert.equal(vxlanBridgeName(id), "nmbr5f0c2a1e9b");
  assert.equal(vxlanDeviceName(id), "nmvx5f0c2a1e9b");
  for (const tag of ["a", "ab12"]) {
    const names = dhcpNames(tag, randomUUID());
    assert.ok(names.hostVeth.length <= IFNAME_MAX && names.nsVeth.length <= IFNAME_MAX, names.hostVeth);
    assert.ok(names.namespace.includes(`-${tag}-`));
  }
  assert.notEqual(dhcpNames("a", id).hostVeth, dhcpNames("b", id).hostVeth, "two agents' veths differ");
});

test("host tags: derived from the host name, 1 to 4 lowercase letters or digits", () => {
  assert.equal(defaultHostTag("host-a"), defaultHostTag("host-a"));
  assert.notEqual(defaultHostTag("host-a"), defaultHostTag("host-b"));
  assert.equal(checkHostTag(defaultHostTag("x")), defaultHostTag("x"));
  assert.throws(() => checkHostTag("toolong"), RangeError);
  assert.throws(() => checkHostTag("A-1"), RangeError);
});
