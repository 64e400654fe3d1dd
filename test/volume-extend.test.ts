/**
 * Extending an attached volume online through the whole stack (real
 * MariaDB, NATS, controller; agent processes with the fake hypervisor and
 * fake volume hosts): an action of the server, whose volume host grows the
 * volume and whose host then hands the guest the new size; the pool's
 * claim follows the size; a volume host's failure, a wrong server state, a
 * size the pool cannot take or no larger than the volume's change nothing;
 * a server deleted while its volume grows leaves the volume AVAILABLE at
 * the size asked, claimed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { ServerStatus, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { VolumeStatus } from "../gen/novamesh/volume/v1/volume.js";
import { fakeDomains, fakeVolumeHost } from "./agents.js";
import { eventually, failure, operationError } from "./harness.js";
import { SPEC } from "./spec-table.js";
import { stack } from "./stack.js";

const GiB = 1024 ** 3;

const volumeHost = (host: string, zone: string, extra: string[] = []) => fakeVolumeHost(host, { zone, extra });

describe("extending attached volumes", () => {
  const fx = stack({
    name: "volume-extend",
    controller: { serviceDownTimeSeconds: 30 },
    members: ["alice"],
    flavor: "m1.tiny",
    agents: ({ id }) => [
      { host: `ec${id}`, hosts: 1 },
      volumeHost(`ev${id}`, "nova"),
      // Its volumes do not grow.
      volumeHost(`ef${id}`, "failing", ["--fake-volume-faults", JSON.stringify({ extend: { error: "pool offline", code: "EXTEND_FAILED" } })]),
      // Its volumes grow slowly.
      volumeHost(`es${id}`, "slow", ["--fake-volume-faults", JSON.stringify({ extend: { delayMs: 4000 } })]),
    ],
  });
  const { env, alice, admin, dir, boot, settled } = fx;

  const wait = async (name: string) => (await alice.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
  const volume = async (id: string) => (await alice.volumes.getVolume({ id })).volume!;
  const allocated = async (host: string) => (await admin.hosts.listVolumePools({})).pools.find((p) => p.host === host)!.allocatedBytes;
  const events = async (serverId: string) => (await alice.servers.listServerActions({ serverId })).actions[0]!.events.map((e) => `${e.name}:${e.result}`);
  /** The server's volumes as its host's hypervisor has them (the fake domain). */
  const plugged = async (serverId: string, host: string) => (await fakeDomains(join(dir, host, "fake-domains.json")))[serverId]?.volumes ?? [];
  const power = async (serverId: string, host: string) => (await fakeDomains(join(dir, host, "fake-domains.json")))[serverId]?.powerState;

  /** A server with a new 1 GiB volume of `zone` attached. */
  async function attached(name: string, zone = "nova"): Promise<{ serverId: string; host: string; volumeId: string }> {
    const s = await boot(name);
    const c = await alice.volumes.createVolume({ name: `${name}-vol`, sizeGb: 1, availabilityZone: zone, requestId: `create-${name}` });
    assert.equal((await wait(c.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const att = await alice.servers.attachVolume({ id: s.id, volumeId: c.volume!.id });
    assert.equal((await wait(att.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    return { serverId: s.id, host: s.host, volumeId: c.volume!.id };
  }

  test("a running server's volume grows online: the volume host grows it, the server's host shows the guest the new size, the pool's claim follows", async () => {
    const { serverId, host, volumeId } = await attached("grow");
    const before = await allocated(`ev${env.id}`);
    const x = await alice.volumes.extendVolume({ id: volumeId, newSizeGb: 3, requestId: "grow-3" });
    const op = x.operation!;
    assert.equal(op.name, `servers/${serverId}/operations/grow-3`, "an operation of the server");
    assert.equal(op.action, "extend_volume");
    const busy = (await alice.servers.getServer({ id: serverId })).server!;
    assert.equal(busy.taskState, TaskState.TASK_STATE_VOLUME_EXTENDING);
    // IN_USE while the guest is being held, EXTENDING once its volume host is asked to grow it.
    assert.ok([VolumeStatus.VOLUME_STATUS_IN_USE, VolumeStatus.VOLUME_STATUS_EXTENDING].includes((await volume(volumeId)).status));
    assert.equal(await allocated(`ev${env.id}`), before + 2 * GiB, "the extra size claimed at once");
    // The same request again: the same operation, nothing claimed twice.
    assert.equal((await alice.volumes.extendVolume({ id: volumeId, newSizeGb: 3, requestId: "grow-3" })).operation!.name, op.name);

    const done = await wait(op.name);
    assert.equal(done.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(done.error));
    const v = await volume(volumeId);
    assert.deepEqual([v.status, v.sizeGb, v.attachments.map((a) => a.serverId)], [VolumeStatus.VOLUME_STATUS_IN_USE, 3, [serverId]]);
    assert.deepEqual(await events(serverId), ["compute_hold_volume:Success", "volume_extend:Success", "compute_extend_volume:Success"]);
    assert.deepEqual((await plugged(serverId, host)).map((d) => d.sizeBytes), [3 * GiB], "the hypervisor has the disk at its new size");
    assert.equal(await power(serverId, host), "RUNNING", "the hold ended: the guest runs");
    assert.equal(await allocated(`ev${env.id}`), before + 2 * GiB);
    const after = await settled(serverId, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(after.taskState, TaskState.TASK_STATE_UNSPECIFIED);

    // No larger than it is, or more than the pool holds: refused, nothing changes.
    assert.deepEqual((await failure(alice.volumes.extendVolume({ id: volumeId, newSizeGb: 3 }))).fields, ["new_size_gb"]);
    const full = await failure(alice.volumes.extendVolume({ id: volumeId, newSizeGb: 100 }));
    assert.deepEqual([full.code, full.reason], [status.RESOURCE_EXHAUSTED, "NO_VALID_POOL"]);
    assert.deepEqual([(await volume(volumeId)).status, (await volume(volumeId)).sizeGb], [VolumeStatus.VOLUME_STATUS_IN_USE, 3]);
    assert.equal(await allocated(`ev${env.id}`), before + 2 * GiB);
    assert.equal((await alice.servers.getServer({ id: serverId })).server!.taskState, TaskState.TASK_STATE_UNSPECIFIED);
  });

  test("only from the states the table allows: a shut-off server's volume grows, a paused one's is refused naming the state", async () => {
    assert.deepEqual(SPEC.extend_volume, ["ACTIVE", "STOPPED"]);
    const off = await attached("grow-off");
    await alice.servers.stopServer({ id: off.serverId });
    await settled(off.serverId, ServerStatus.SERVER_STATUS_SHUTOFF);
    const x = await alice.volumes.extendVolume({ id: off.volumeId, newSizeGb: 2 });
    assert.equal((await wait(x.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await volume(off.volumeId)).sizeGb, 2);
    assert.equal((await settled(off.serverId, ServerStatus.SERVER_STATUS_SHUTOFF)).taskState, TaskState.TASK_STATE_UNSPECIFIED);

    const paused = await attached("grow-paused");
    await alice.servers.pauseServer({ id: paused.serverId });
    await settled(paused.serverId, ServerStatus.SERVER_STATUS_PAUSED);
    const f = await failure(alice.volumes.extendVolume({ id: paused.volumeId, newSizeGb: 2 }));
    assert.deepEqual([f.code, f.reason, f.metadata.vm_state], [status.FAILED_PRECONDITION, "INVALID_STATE", "PAUSED"]);
    const v = await volume(paused.volumeId);
    assert.deepEqual([v.status, v.sizeGb], [VolumeStatus.VOLUME_STATUS_IN_USE, 1]);
  });

  test("a volume host that cannot grow the volume leaves it IN_USE at its old size, the claim given back, the operation saying why", async () => {
    const { serverId, host, volumeId } = await attached("grow-fail", "failing");
    const before = await allocated(`ef${env.id}`);
    const op = await wait((await alice.volumes.extendVolume({ id: volumeId, newSizeGb: 4 })).operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(operationError(op).reason, "EXTEND_FAILED");
    assert.match(operationError(op).message, /pool offline/);
    const v = await volume(volumeId);
    assert.deepEqual([v.status, v.sizeGb, v.fault?.code], [VolumeStatus.VOLUME_STATUS_IN_USE, 1, "EXTEND_FAILED"]);
    assert.equal(await allocated(`ef${env.id}`), before);
    assert.equal((await settled(serverId, ServerStatus.SERVER_STATUS_ACTIVE)).taskState, TaskState.TASK_STATE_UNSPECIFIED);
    // The guest held for the grow runs again: the hold ends at the old size.
    await eventually(async () => (await events(serverId)).at(-1) === "compute_extend_volume:Success", { what: "the hold ended" });
    assert.deepEqual(await events(serverId), ["compute_hold_volume:Success", "volume_extend:Error", "compute_extend_volume:Success"]);
    assert.equal(await power(serverId, host), "RUNNING");
    assert.deepEqual((await plugged(serverId, host)).map((d) => d.sizeBytes ?? GiB), [GiB]);
  });

  test("a server deleted while its volume grows leaves the volume AVAILABLE at the size asked, claimed", async () => {
    const { serverId, host, volumeId } = await attached("grow-gone", "slow");
    const before = await allocated(`es${env.id}`);
    await alice.volumes.extendVolume({ id: volumeId, newSizeGb: 5 });
    await eventually(async () => (await volume(volumeId)).status === VolumeStatus.VOLUME_STATUS_EXTENDING, { what: "its volume host asked to grow it" });
    assert.equal(await power(serverId, host), "PAUSED", "the guest held paused while its volume grows");
    await alice.servers.deleteServer({ id: serverId });
    await eventually(async () => (await volume(volumeId)).status === VolumeStatus.VOLUME_STATUS_AVAILABLE, { what: "the volume freed" });
    const v = await volume(volumeId);
    assert.deepEqual([v.sizeGb, v.attachments.length], [5, 0]);
    assert.equal(await allocated(`es${env.id}`), before + 4 * GiB);
    // Free, it grows as a volume of its own again.
    const x = await alice.volumes.extendVolume({ id: volumeId, newSizeGb: 6 });
    assert.equal(x.operation!.name.startsWith(`volumes/${volumeId}/`), true);
    assert.equal((await wait(x.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await volume(volumeId)).sizeGb, 6);
  });
});
