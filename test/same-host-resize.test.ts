/**
 * A one-host cloud (the all-in-one): with allow_resize_to_same_host a resize
 * goes back to the server's own host, is confirmed there, and the host holds
 * exactly the new flavor afterwards; a cold migration still needs another
 * host. Without the setting the same resize finds no valid host.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { assertCapacityExact, eventually } from "./harness.js";
import { stack } from "./stack.js";

describe("resize to the same host", () => {
  const fx = stack({
    name: "same-host",
    controller: { allowResizeToSameHost: true, resizeConfirmWindowSeconds: 0 },
    agents: ({ id }) => [{ host: `one${id}` }],
  });
  const { env, admin, alice, settled, boot } = fx;

  test("a resize on a one-host cloud stays on its host, and confirm leaves the host holding only the new flavor", async () => {
    const s = await boot("solo");
    const before = await assertCapacityExact(env, admin);
    await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium", requestId: "grow" });
    const resized = await settled(s.id, ServerStatus.SERVER_STATUS_VERIFY_RESIZE);
    assert.equal(resized.host, s.host);
    assert.equal(resized.flavor!.name, "m1.medium");
    await alice.servers.confirmResize({ id: s.id, requestId: "confirm" });
    const done = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(done.flavor!.name, "m1.medium");
    const after = await assertCapacityExact(env, admin);
    const b = before.get(s.host)!;
    assert.deepEqual(after.get(s.host), { vcpus: b.vcpus + 1, ram: b.ram + 2048, disk: b.disk + 20, vms: b.vms }, "m1.small gave way to m1.medium");
  });

  test("a cold migration still needs another host", async () => {
    const s = await boot("stay");
    const res = await admin.servers.migrateServer({ id: s.id, requestId: "move" });
    const op = await eventually(async () => {
      const o = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
      return o.done ? o : undefined;
    });
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.match(op.error!.message, /No valid host was found/);
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, s.host);
  });
});

describe("resize without allow_resize_to_same_host", () => {
  const fx = stack({ name: "no-same-host", agents: ({ id }) => [{ host: `lone${id}` }] });
  const { alice, admin, boot } = fx;

  test("a resize on a one-host cloud finds no valid host and the server stays as it was", async () => {
    const s = await boot("solo");
    const res = await alice.servers.resizeServer({ id: s.id, flavorId: "m1.medium", requestId: "grow" });
    const op = await eventually(async () => {
      const o = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
      return o.done ? o : undefined;
    });
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.match(op.error!.message, /removed by retry: 1/);
  });
});
