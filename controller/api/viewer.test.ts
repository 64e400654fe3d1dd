import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { ADMIN_VIEW, hostId, maskHosts, maskMap, type Viewer } from "./viewer.js";

const tenant: Viewer = { admin: false, hosts: ["node-1", "node-10", "db.example.org"] };

describe("host ids", () => {
  test("are Nova's hostId: sha224 hex of project id and host; empty without a host", () => {
    assert.equal(hostId("alice", "node-1"), createHash("sha224").update("alicenode-1").digest("hex"));
    assert.notEqual(hostId("alice", "node-1"), hostId("bob", "node-1"));
    assert.equal(hostId("alice", null), "");
    assert.equal(hostId("alice", ""), "");
  });

  test("replace whole host names in texts for tenants, never parts of other words; admins read the text as is", () => {
    const text = "SPAWNING did not finish within 3 s on host node-10; node-1 and node-1x and db.example.org.";
    const masked = maskHosts(tenant, "alice", text);
    assert.equal(
      masked,
      `SPAWNING did not finish within 3 s on host ${hostId("alice", "node-10")}; ${hostId("alice", "node-1")} and node-1x and ${hostId("alice", "db.example.org")}.`,
    );
    assert.equal(maskHosts(ADMIN_VIEW, "alice", text), text);
    assert.equal(maskHosts({ admin: false, hosts: [] }, "p", "on host fresh-1", ["fresh-1"]), `on host ${hostId("p", "fresh-1")}`, "a record's own host is masked too");
    assert.deepEqual(maskMap(tenant, "alice", { host: "node-1", task_state: "SPAWNING" }), { host: hostId("alice", "node-1"), task_state: "SPAWNING" });
  });
});
