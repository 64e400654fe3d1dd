import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { clients, waitServers } from "./harness.js";
import { stack } from "./stack.js";

/** Asserts a call fails with `code` and, for bad input, names `field`. */
async function rejects(p: Promise<unknown>, code: status, field?: string): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    const err = e as ServiceError;
    assert.equal(err.code, code, `expected ${status[code]}, got ${status[err.code]}: ${err.details}`);
    if (field) {
      const { badRequest } = decodeStatusDetails(err.metadata);
      assert.ok(badRequest, "BadRequest details are attached");
      assert.deepEqual(
        badRequest.fieldViolations.map((v) => v.field),
        [field],
      );
      assert.match(err.details, new RegExp(field.replace(/[[\]]/g, "\\$&")));
    }
    return err;
  }
  assert.fail(`expected ${status[code]}, but the call succeeded`);
}

describe("compute API without hosts", () => {
  const fx = stack({ name: "api", members: ["alice", "bob"] });
  const { env, admin, alice, bob, imageId } = fx;

  test("Nova's default flavors exist after install, smallest first, paginated", async () => {
    const first = await alice.flavors.listFlavors({ pageSize: 3 });
    assert.deepEqual(
      first.flavors.map((f) => f.name),
      ["m1.tiny", "m1.small", "m1.medium"],
    );
    assert.ok(first.nextPageToken);
    const second = await alice.flavors.listFlavors({ pageSize: 3, pageToken: first.nextPageToken });
    assert.deepEqual(
      second.flavors.map((f) => f.name),
      ["m1.large", "m1.xlarge"],
    );
    assert.equal(second.nextPageToken, "");
    const small = (await alice.flavors.getFlavor({ id: "m1.small" })).flavor!;
    assert.deepEqual([small.id, small.vcpus, small.ramMb, small.diskGb], ["2", 1, 2048, 20]);
  });

  test("a missing or unknown token is UNAUTHENTICATED", async () => {
    const anon = clients(env.address(fx.ctl), null);
    const err = await rejects(anon.servers.listServers({}), status.UNAUTHENTICATED);
    assert.match(err.details, /bearer token/);
    await rejects(clients(env.address(fx.ctl), "not-a-token").flavors.listFlavors({}), status.UNAUTHENTICATED);
  });

  test("bad input is INVALID_ARGUMENT with the field named", async () => {
    await rejects(alice.servers.createServer({ name: "", flavorId: "1", imageId }), status.INVALID_ARGUMENT, "name");
    await rejects(alice.servers.createServer({ name: "  ", flavorId: "1", imageId }), status.INVALID_ARGUMENT, "name");
    await rejects(alice.servers.createServer({ name: "a\u0007b", flavorId: "1", imageId }), status.INVALID_ARGUMENT, "name");
    await rejects(alice.servers.createServer({ name: "vm", flavorId: "1", imageId: "not-a-uuid" }), status.INVALID_ARGUMENT, "image_id");
    await rejects(alice.servers.createServer({ name: "vm", flavorId: "", imageId }), status.INVALID_ARGUMENT, "flavor_id");
    await rejects(alice.servers.listServers({ pageSize: -1 }), status.INVALID_ARGUMENT, "page_size");
    await rejects(alice.servers.listServers({ pageToken: "garbage!" }), status.INVALID_ARGUMENT, "page_token");
    await rejects(alice.servers.getServer({ id: "123" }), status.INVALID_ARGUMENT, "id");
    await rejects(alice.servers.rebootServer({ id: "00000000-0000-0000-0000-000000000000", type: 0 }), status.INVALID_ARGUMENT, "type");
    await rejects(
      admin.flavors.createFlavor({ flavor: { id: "", name: "x", vcpus: 0, ramMb: 1, diskGb: 0, description: "", extraSpecs: {} } }),
      status.INVALID_ARGUMENT,
      "flavor.vcpus",
    );
  });

  test("an unknown flavor or image is NOT_FOUND", async () => {
    const err = await rejects(alice.servers.createServer({ name: "vm", flavorId: "m9.huge", imageId }), status.NOT_FOUND);
    assert.match(err.details, /flavor "m9.huge" not found/);
    const { errorInfo } = decodeStatusDetails(err.metadata);
    assert.equal(errorInfo?.reason, "FLAVOR_NOT_FOUND");
    await rejects(
      alice.servers.createServer({ name: "vm", flavorId: "1", imageId: "11111111-2222-3333-4444-555555555555" }),
      status.NOT_FOUND,
    );
  });

  test("members cannot use admin calls", async () => {
    await rejects(alice.hosts.listServices({}), status.PERMISSION_DENIED);
    await rejects(alice.identity.createToken({ projectId: "x", role: 2 }), status.PERMISSION_DENIED);
    await rejects(alice.servers.listServers({ allProjects: true }), status.PERMISSION_DENIED);
  });

  test("the same request_id twice creates one server", async () => {
    const req = { name: "idem", flavorId: "m1.tiny", imageId, requestId: "req-idem-1" };
    const [a, b] = await Promise.all([alice.servers.createServer(req), alice.servers.createServer(req)]);
    const c = await alice.servers.createServer(req);
    assert.equal(a.server!.id, b.server!.id);
    assert.equal(a.server!.id, c.server!.id);
    const list = await alice.servers.listServers({ name: "idem" });
    assert.equal(list.servers.length, 1);
    // Another project may use the same key for its own server.
    const other = await bob.servers.createServer(req);
    assert.notEqual(other.server!.id, a.server!.id);
  });

  test("another project's server is NOT_FOUND, and absent from its lists", async () => {
    const mine = (await alice.servers.createServer({ name: "private", flavorId: "1", imageId })).server!;
    await rejects(bob.servers.getServer({ id: mine.id }), status.NOT_FOUND);
    await rejects(bob.servers.deleteServer({ id: mine.id }), status.NOT_FOUND);
    await rejects(bob.servers.stopServer({ id: mine.id }), status.NOT_FOUND);
    await rejects(bob.servers.listServerActions({ serverId: mine.id }), status.NOT_FOUND);
    const bobs = await bob.servers.listServers({});
    assert.ok(!bobs.servers.some((s) => s.id === mine.id));
    // Admins see it across projects.
    const all = await admin.servers.listServers({ allProjects: true, name: "private" });
    assert.deepEqual(
      all.servers.map((s) => s.id),
      [mine.id],
    );
  });

  test("with no hosts a server goes to ERROR with a NoValidHost fault, and can be deleted", async () => {
    const s = (await alice.servers.createServer({ name: "nohost", flavorId: "1", imageId })).server!;
    assert.equal(s.status, ServerStatus.SERVER_STATUS_BUILD);
    const [failed] = await waitServers(alice, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    assert.equal(failed!.fault?.code, "NO_VALID_HOST");
    assert.match(failed!.fault!.message, /no compute hosts/);
    const actions = await alice.servers.listServerActions({ serverId: s.id });
    assert.equal(actions.actions[0]!.action, "create");
    assert.equal(actions.actions[0]!.message, "Error");
    assert.equal(actions.actions[0]!.events[0]!.name, "schedule");
    await rejects(alice.servers.startServer({ id: s.id }), status.FAILED_PRECONDITION);
    const del = await alice.servers.deleteServer({ id: s.id });
    assert.equal(del.server!.status, ServerStatus.SERVER_STATUS_DELETED);
    await rejects(alice.servers.deleteServer({ id: s.id }), status.NOT_FOUND);
  });

  test("list pages walk every server once, newest first, filtered by status", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await bob.servers.createServer({ name: `page-${i}`, flavorId: "1", imageId })).server!.id);
    const seen: string[] = [];
    let token = "";
    do {
      const res = await bob.servers.listServers({ pageSize: 2, pageToken: token, name: "page-" });
      seen.push(...res.servers.map((s) => s.id));
      token = res.nextPageToken;
    } while (token);
    assert.deepEqual(seen, [...ids].reverse());
    await waitServers(bob, ids, (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    const errs = await bob.servers.listServers({ status: ServerStatus.SERVER_STATUS_ERROR, name: "page-" });
    assert.equal(errs.servers.length, 5);
    const active = await bob.servers.listServers({ status: ServerStatus.SERVER_STATUS_ACTIVE, name: "page-" });
    assert.equal(active.servers.length, 0);
  });
});
