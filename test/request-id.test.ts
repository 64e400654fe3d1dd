/**
 * A request id is one request (AIP-155): the same id with the same request
 * returns the first result; with a different request it is refused with
 * ALREADY_EXISTS, naming the fields that differ.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { RebootType, ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { failure } from "./harness.js";
import { stack } from "./stack.js";

describe("request ids", () => {
  const fx = stack({ name: "request-id", agents: ({ id }) => [{ host: `rq${id}`, hosts: 2 }] });
  const { alice, imageId, settled } = fx;

  test("CreateServer: the same request returns the first server; another request with the same id is refused, naming what differs", async () => {
    const req = { name: "same", flavorId: "m1.tiny", imageId, requestId: "create-1", metadata: { role: "web" } };
    const first = (await alice.servers.createServer(req)).server!;
    const again = (await alice.servers.createServer({ ...req, metadata: { role: "web" } })).server!;
    assert.equal(again.id, first.id);
    const other = await failure(alice.servers.createServer({ ...req, name: "other", flavorId: "m1.small" }));
    assert.equal(other.code, status.ALREADY_EXISTS);
    assert.equal(other.reason, "REQUEST_ID_REUSED");
    assert.deepEqual(other.fields.sort(), ["flavor_id", "name", "request_id"]);
    assert.match(other.message, /differs in flavor_id, name/);
    const listed = (await alice.servers.listServers({ name: "other" })).servers;
    assert.equal(listed.length, 0, "nothing was created");
    await settled(first.id, ServerStatus.SERVER_STATUS_ACTIVE);
  });

  test("actions: a resize to another flavor or a reboot of another type under a used request id is refused; the same one is the first operation", async () => {
    const s = (await alice.servers.createServer({ name: "mover", flavorId: "m1.tiny", imageId, requestId: "create-2" })).server!;
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    const soft = await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT, requestId: "boot-1" });
    const same = await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT, requestId: "boot-1" });
    assert.equal(same.operation!.name, soft.operation!.name);
    const hard = await failure(alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_HARD, requestId: "boot-1" }));
    assert.equal(hard.code, status.ALREADY_EXISTS);
    assert.deepEqual(hard.fields.sort(), ["request_id", "type"]);
    await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);

    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.small", requestId: "grow-1" });
    const bigger = await failure(alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium", requestId: "grow-1" }));
    assert.equal(bigger.code, status.ALREADY_EXISTS);
    assert.deepEqual(bigger.fields.sort(), ["flavor_id", "request_id"]);
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.equal(resized.flavor!.name, "m1.small");
  });
});
