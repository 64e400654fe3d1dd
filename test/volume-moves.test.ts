/**
 * Attached volumes following a live migration through the whole stack
 * (real MariaDB, NATS, controller; fake hypervisors and a fake volume host,
 * each in its own process): the volume host exports each volume to the
 * target before it prepares, the target's disks open those exports (the
 * volumes are not copied), the source's exports end once the server runs
 * on the target; a migration that fails leaves the server, its disks and
 * its exports as they were.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { eventually, operationError, volumeSteps } from "./harness.js";
import { fakeExports, fakeVolumeHost } from "./agents.js";
import { stack } from "./stack.js";

describe("volumes through live migration", () => {
  const fx = stack({
    name: "volume-moves",
    controller: { serviceDownTimeSeconds: 30 },
    members: ["alice"],
    flavor: "m1.tiny",
    agents: ({ id }) => [
      { host: `lv${id}-a` },
      { host: `lv${id}-b` },
      // It cannot prepare for a live migration.
      { host: `lv${id}-f`, faults: { preLiveMigration: { error: "no room for the incoming guest", code: "PRE_LIVE_MIGRATION_FAILED" } } },
      fakeVolumeHost(`lvv${id}`),
    ],
  });
  const { env, alice, admin, dir, agents: hosts, settled, bootOn } = fx;
  const [A, B, FAILING] = fx.hosts as [string, string, string];
  const volumeHost = `lvv${env.id}`;

  const wait = async (name: string) => (await admin.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
  /** The exports the volume host serves (the fake backend's state). */
  const exports = () => fakeExports(dir, volumeHost);
  /** The server's volume disks on `host`'s hypervisor: [attachment, device, export name]. */
  const disks = async (serverId: string, host: string) =>
    ((await hosts.domains(host))[serverId]?.volumes ?? []).map((d) => [d.attachmentId, d.device, d.connection.exportName]).sort();

  const { volume, attach } = volumeSteps(alice, admin);

  test("a server with two volumes moves to another host and back: its disks open the target's exports there, the source's exports end", async () => {
    const s = await bootOn(A, "lv-moving");
    const [v1, v2] = [await volume("lv-1"), await volume("lv-2")];
    const [a1, a2] = [await attach(s.id, v1), await attach(s.id, v2)];
    assert.deepEqual(await disks(s.id, A), [[a1, "vdb", a1], [a2, "vdc", a2]].sort());

    const res = await admin.servers.liveMigrateServer({ id: s.id, host: B });
    const op = await wait(res.operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, B);
    // The source's exports end as cleanup, after the operation: every event, once each has its result.
    const events = await eventually(async () => {
      const all = (await admin.servers.listServerActions({ serverId: s.id })).actions[0]!.events.map((e) => `${e.name}@${e.host}:${e.result}`);
      return all.length === 8 && all.every((e) => !e.endsWith(":")) ? all : undefined;
    }, { what: "every event of the migration with its result" });
    assert.deepEqual(events.slice(0, 3).sort(), [`schedule@${B}:Success`, `volume_export@${volumeHost}:Success`, `volume_export@${volumeHost}:Success`].sort());
    assert.deepEqual(events.slice(3, 5), [`compute_pre_live_migration@${B}:Success`, `compute_live_migration@${A}:Success`]);
    assert.deepEqual(events.slice(5).sort(), [`compute_post_live_migration@${B}:Success`, `volume_unexport@${volumeHost}:Success`, `volume_unexport@${volumeHost}:Success`].sort());

    // On B the same disks, at the same devices, open exports made for B; A has nothing left; the volume host serves only B.
    const onB = await disks(s.id, B);
    assert.deepEqual(onB.map(([a, d]) => [a, d]), [[a1, "vdb"], [a2, "vdc"]].sort());
    assert.ok(onB.every(([a, , name]) => name !== a), "new exports, not the source's");
    assert.ok(!(s.id in (await hosts.domains(A))));
    await eventually(async () => (await exports()).length === 2, { what: "the source's exports ended" });
    const served = await exports();
    assert.deepEqual(served.map((x) => x.client), [B, B]);
    assert.deepEqual(served.map((x) => x.exportName).sort(), onB.map(([, , name]) => name).sort());
    for (const id of [v1, v2]) {
      const v = (await alice.volumes.getVolume({ id })).volume!;
      assert.deepEqual([v.status, v.attachments.map((x) => x.serverId)], [VolumeStatus.VOLUME_STATUS_IN_USE, [s.id]]);
    }

    // And back to A, where a detach then works as on any server.
    assert.equal((await wait((await admin.servers.liveMigrateServer({ id: s.id, host: A })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.deepEqual((await disks(s.id, A)).map(([a, d]) => [a, d]), [[a1, "vdb"], [a2, "vdc"]].sort());
    await eventually(async () => (await exports()).every((x) => x.client === A) && (await exports()).length === 2, { what: "only A's exports left" });
    const det = await alice.servers.detachVolume({ id: s.id, volumeId: v1 });
    assert.equal((await wait(det.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.deepEqual((await disks(s.id, A)).map(([a]) => a), [a2]);
    await eventually(async () => (await exports()).map((x) => x.volumeId).join() === v2, { what: "the detached volume's export ended" });
  });

  test("a target that cannot prepare leaves the server on its source with its disks and exports as they were", async () => {
    const s = await bootOn(A, "lv-stays");
    const v = await volume("lv-3");
    const a = await attach(s.id, v);
    const before = (await exports()).filter((x) => x.volumeId === v);
    const op = await wait((await admin.servers.liveMigrateServer({ id: s.id, host: FAILING })).operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(operationError(op).reason, "PRE_LIVE_MIGRATION_FAILED");
    assert.equal((await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE)).host, A);
    assert.deepEqual(await disks(s.id, A), [[a, "vdb", a]]);
    await eventually(async () => JSON.stringify((await exports()).filter((x) => x.volumeId === v)) === JSON.stringify(before), {
      what: "the target's export ended, the source's kept",
    });
    // Still attached and usable: a detach works.
    assert.equal((await wait((await alice.servers.detachVolume({ id: s.id, volumeId: v })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
  });
});
