/**
 * Creates that arrive at once each get their own answer: one project's
 * refusals are its own, a request sent several times at once makes one
 * server, and a request id reused with another request in the same burst
 * is refused alone.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { failure, waitServers } from "./harness.js";
import { stack } from "./stack.js";

describe("creates arriving at once", () => {
  const fx = stack({ name: "creates-at-once", members: ["alice", "bob", "carol"], agents: ({ id }) => [{ host: `cb${id}`, hosts: 2 }] });
  const { admin, alice, bob, carol, imageId } = fx;

  test("a burst over three projects, one of them at its limit, with repeated and reused request ids: every create gets its own answer", async () => {
    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { instances: 4 } });
    const req = (name: string, requestId = `${name}-${Math.random()}`) => ({ name, flavorId: "m1.tiny", imageId, requestId });
    const same = req("same", "same-1");
    const calls = [
      ...Array.from({ length: 10 }, (_, i) => alice.servers.createServer(req(`a-${i}`))),
      ...Array.from({ length: 10 }, (_, i) => bob.servers.createServer(req(`b-${i}`))),
      ...Array.from({ length: 10 }, (_, i) => carol.servers.createServer(req(`c-${i}`))),
      ...Array.from({ length: 3 }, () => alice.servers.createServer(same)),
      carol.servers.createServer({ ...req("reused", "reused-1"), metadata: { n: "1" } }),
      carol.servers.createServer({ ...req("reused", "reused-1"), metadata: { n: "2" } }),
    ];
    const results = await Promise.allSettled(calls);
    const ok = (from: number, to: number) => results.slice(from, to).flatMap((r) => (r.status === "fulfilled" ? [r.value.server!] : []));

    assert.equal(ok(0, 10).length, 10, "alice's creates are not held by bob's limit");
    assert.equal(ok(20, 30).length, 10, "nor carol's");
    const bobs = ok(10, 20);
    assert.equal(bobs.length, 4, "bob gets exactly his 4");
    for (const r of results.slice(10, 20)) {
      if (r.status === "fulfilled") continue;
      const f = await failure(Promise.reject(r.reason));
      assert.equal(f.code, status.RESOURCE_EXHAUSTED, f.message);
      assert.equal(f.reason, "QUOTA_EXCEEDED");
    }

    const repeated = ok(30, 33);
    assert.equal(repeated.length, 3, "a request sent three times at once is answered three times");
    assert.equal(new Set(repeated.map((s) => s.id)).size, 1, "with one server");

    const reused = results.slice(33, 35);
    const made = reused.flatMap((r) => (r.status === "fulfilled" ? [r.value.server!] : []));
    assert.equal(made.length, 1, "one of two requests with one id is made");
    const refused = reused.find((r) => r.status === "rejected")!;
    const f = await failure(Promise.reject((refused as PromiseRejectedResult).reason));
    assert.equal(f.code, status.ALREADY_EXISTS, f.message);
    assert.equal(f.reason, "REQUEST_ID_REUSED");
    assert.deepEqual(f.fields.sort(), ["metadata", "request_id"]);

    const all = [...ok(0, 10), ...bobs, ...ok(20, 30), repeated[0]!, made[0]!];
    await waitServers(admin, all.map((s) => s.id), (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "every accepted create ACTIVE", 60_000);
    const count = async (c: typeof alice) => (await c.servers.listServers({ pageSize: 100 })).servers.length;
    assert.deepEqual([await count(alice), await count(bob), await count(carol)], [11, 4, 11], "nothing made twice, nothing lost");
  });
});
