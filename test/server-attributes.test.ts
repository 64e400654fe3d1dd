/**
 * A server's own attributes through the API: rename and description with a
 * field mask, metadata under the metadata_items quota, tags and the tag
 * filters of ListServers; each change seen by WatchServers; locks and bad
 * input refused with the field named.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { Server, ServerStatus, WatchServersRequest } from "../gen/novamesh/compute/v1/server.js";
import { failure, type Clients } from "./harness.js";
import { stack } from "./stack.js";

describe("server attributes", () => {
  const fx = stack({ name: "server-attributes", members: ["alice", "bob"], agents: ({ id }) => [{ host: `sa${id}` }] });
  const { admin, alice, bob, imageId, settled } = fx;
  const update = (id: string, s: Partial<Server>, paths: string[], c: Clients = alice) => c.servers.updateServer({ server: Server.fromPartial({ id, ...s }), updateMask: paths });

  test("rename and describe through a field mask; the guest's host name stays; WatchServers sees it", async () => {
    const created = (await alice.servers.createServer({ name: "app-1", flavorId: "m1.small", imageId, requestId: "sa-1", description: "first", tags: ["prod", "web", "prod"] })).server!;
    assert.deepEqual([created.description, created.tags], ["first", ["prod", "web"]], "tags at create, each once");
    const s = await settled(created.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const watch = alice.servers.raw.watchServers(WatchServersRequest.fromPartial({}), alice.servers.metadata());
    const seen: string[] = [];
    watch.on("data", (e: { server?: Server }) => e.server?.id === s.id && seen.push(`${e.server.name}|${e.server.description}`));
    watch.on("error", () => undefined);
    try {
      const renamed = (await update(s.id, { name: "app-one", description: "ignored" }, ["name"])).server!;
      assert.deepEqual([renamed.name, renamed.description, renamed.hostname], ["app-one", "first", "app-1"], "only the masked field; the host name stays");
      const described = (await update(s.id, { name: "ignored", description: "the app server" }, ["description"])).server!;
      assert.deepEqual([described.name, described.description], ["app-one", "the app server"]);
      const deadline = Date.now() + 10_000;
      while (!seen.includes("app-one|the app server") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(seen.includes("app-one|first") && seen.includes("app-one|the app server"), `WatchServers saw ${JSON.stringify(seen)}`);
    } finally {
      watch.cancel();
    }
    for (const [paths, field] of [
      [[], "update_mask"],
      [["flavor_id"], "update_mask.paths[0]"],
    ] as const) {
      const f = await failure(update(s.id, {}, [...paths]));
      assert.deepEqual([f.code, f.fields], [status.INVALID_ARGUMENT, [field]]);
    }
    const empty = await failure(update(s.id, { name: " " }, ["name"]));
    assert.deepEqual([empty.code, empty.fields], [status.INVALID_ARGUMENT, ["server.name"]]);
    const long = await failure(update(s.id, { description: "x".repeat(256) }, ["description"]));
    assert.deepEqual([long.code, long.fields], [status.INVALID_ARGUMENT, ["server.description"]]);
    assert.equal((await failure(update(s.id, { name: "theirs" }, ["name"], bob))).code, status.NOT_FOUND, "another project's server");

    // Locked: only an admin may change it.
    await alice.servers.lockServer({ id: s.id });
    const locked = await failure(update(s.id, { name: "x" }, ["name"]));
    assert.deepEqual([locked.code, locked.reason], [status.FAILED_PRECONDITION, "LOCKED"]);
    assert.equal((await update(s.id, { name: "by-admin" }, ["name"], admin)).server!.name, "by-admin");
    await alice.servers.unlockServer({ id: s.id });
  });

  test("metadata: merged or replaced, deleted by key, held to the metadata_items quota", async () => {
    const s = (await bob.servers.createServer({ name: "meta", flavorId: "m1.small", imageId, requestId: "sa-2", metadata: { a: "1" } })).server!;
    assert.deepEqual((await bob.servers.updateServerMetadata({ id: s.id, metadata: { b: "2", a: "one" }, replace: false })).server!.metadata, { a: "one", b: "2" });
    assert.deepEqual((await bob.servers.updateServerMetadata({ id: s.id, metadata: { c: "3" }, replace: true })).server!.metadata, { c: "3" });
    assert.deepEqual((await bob.servers.deleteServerMetadata({ id: s.id, keys: ["c"] })).server!.metadata, {});
    const missing = await failure(bob.servers.deleteServerMetadata({ id: s.id, keys: ["nope"] }));
    assert.equal(missing.code, status.NOT_FOUND);

    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { metadata_items: 2 } });
    await bob.servers.updateServerMetadata({ id: s.id, metadata: { x: "1", y: "2" }, replace: false });
    const over = await failure(bob.servers.updateServerMetadata({ id: s.id, metadata: { z: "3" }, replace: false }));
    assert.deepEqual([over.code, over.reason, over.fields, over.metadata.resource], [status.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED", ["metadata"], "metadata_items"]);
    assert.deepEqual((await bob.servers.updateServerMetadata({ id: s.id, metadata: { x: "changed" }, replace: false })).server!.metadata, { x: "changed", y: "2" }, "replacing a value takes no new item");
    assert.deepEqual((await bob.servers.updateServerMetadata({ id: s.id, metadata: { p: "1", q: "2" }, replace: true })).server!.metadata, { p: "1", q: "2" }, "a replace counts only what it leaves");
    await admin.quotas.resetProjectLimits({ projectId: "bob", resources: ["metadata_items"] });
    const badKey = await failure(bob.servers.updateServerMetadata({ id: s.id, metadata: { "": "x" }, replace: false }));
    assert.deepEqual([badKey.code, badKey.fields], [status.INVALID_ARGUMENT, ['metadata[""]']]);
    assert.equal((await failure(bob.servers.deleteServerMetadata({ id: s.id, keys: [] }))).code, status.INVALID_ARGUMENT);
  });

  test("tags: set, added, removed, and ListServers filtered by all, any, not all and none of them", async () => {
    const make = async (name: string, t: string[]) => (await alice.servers.createServer({ name, flavorId: "m1.small", imageId, requestId: `sa-${name}`, tags: t })).server!.id;
    const [one, two, three] = [await make("t-1", ["blue", "red"]), await make("t-2", ["blue"]), await make("t-3", [])];
    const names = async (f: { tags?: string[]; tagsAny?: string[]; notTags?: string[]; notTagsAny?: string[] }) =>
      (await alice.servers.listServers({ name: "t-", ...f })).servers.map((x) => x.name).sort();
    assert.deepEqual(await names({ tags: ["blue", "red"] }), ["t-1"]);
    assert.deepEqual(await names({ tagsAny: ["red", "blue"] }), ["t-1", "t-2"]);
    assert.deepEqual(await names({ notTags: ["blue", "red"] }), ["t-2", "t-3"]);
    assert.deepEqual(await names({ notTagsAny: ["red"] }), ["t-2", "t-3"]);
    assert.deepEqual(await names({ tags: ["blue"], notTagsAny: ["red"] }), ["t-2"]);

    assert.deepEqual((await alice.servers.addServerTag({ id: three, tag: "green" })).server!.tags, ["green"]);
    assert.deepEqual((await alice.servers.addServerTag({ id: three, tag: "green" })).server!.tags, ["green"], "a tag it has is not added twice");
    assert.deepEqual((await alice.servers.deleteServerTag({ id: one, tag: "red" })).server!.tags, ["blue"]);
    assert.equal((await failure(alice.servers.deleteServerTag({ id: one, tag: "red" }))).code, status.NOT_FOUND);
    assert.deepEqual((await alice.servers.setServerTags({ id: two, tags: ["a", "b", "a"] })).server!.tags, ["a", "b"]);
    assert.deepEqual((await alice.servers.getServer({ id: two })).server!.tags, ["a", "b"]);
    assert.deepEqual(await names({ tagsAny: ["green", "a"] }), ["t-2", "t-3"]);

    const fifty = Array.from({ length: 50 }, (_, i) => `t${i}`);
    await alice.servers.setServerTags({ id: one, tags: fifty });
    const full = await failure(alice.servers.addServerTag({ id: one, tag: "one-more" }));
    assert.deepEqual([full.code, full.fields], [status.INVALID_ARGUMENT, ["tag"]]);
    for (const [call, field] of [
      [() => alice.servers.setServerTags({ id: two, tags: [...fifty, "x"] }), "tags"],
      [() => alice.servers.setServerTags({ id: two, tags: ["ok", "a/b"] }), "tags[1]"],
      [() => alice.servers.addServerTag({ id: two, tag: "x".repeat(61) }), "tag"],
      [() => alice.servers.listServers({ tags: ["a,b"] }), "tags[0]"],
      [() => alice.servers.createServer({ name: "bad-tags", flavorId: "m1.small", imageId, tags: [""] }), "tags[0]"],
    ] as const) {
      const f = await failure(call());
      assert.deepEqual([f.code, f.fields], [status.INVALID_ARGUMENT, [field]], f.message);
    }
  });
});
