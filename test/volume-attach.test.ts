/**
 * Attaching volumes to servers through the whole stack (real MariaDB, NATS,
 * controller; agent processes with the fake hypervisor and fake volume
 * hosts): the volume host exports to the server's host only, the server's
 * host plugs the disk, detach undoes both; the status tables of server and
 * volume hold; a failed export leaves the volume AVAILABLE; deleting a
 * server frees its volumes or deletes those marked delete_on_termination.
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
import { stack } from "./stack.js";

const volumeHost = (host: string, zone: string, extra: string[] = []) => fakeVolumeHost(host, { zone, extra });

describe("volume attachments", () => {
  const fx = stack({
    name: "volume-attach",
    // No host is expected to go down here: a busy machine may hold reports up for longer than the default 5 s.
    controller: { serviceDownTimeSeconds: 30 },
    members: ["alice", "bob"],
    flavor: "m1.tiny",
    agents: ({ id }) => [
      { host: `vc${id}`, hosts: 2 },
      volumeHost(`vv${id}`, "nova"),
      // Its exports fail: attaching its volumes fails at the first step.
      volumeHost(`vf${id}`, "broken", ["--fake-volume-faults", JSON.stringify({ export: { error: "export server down", code: "EXPORT_FAILED" } })]),
    ],
  });
  const { env, alice, bob, dir, boot, settled } = fx;
  const computeHosts = [`vc${env.id}-1`, `vc${env.id}-2`];

  async function newVolume(name: string, zone = "nova"): Promise<string> {
    const c = await alice.volumes.createVolume({ name, sizeGb: 1, availabilityZone: zone, requestId: `create-${name}` });
    await alice.operations.waitOperation({ name: c.operation!.name, timeoutSeconds: 30 });
    const v = (await alice.volumes.getVolume({ id: c.volume!.id })).volume!;
    assert.equal(v.status, VolumeStatus.VOLUME_STATUS_AVAILABLE, `${name} made`);
    return v.id;
  }

  const wait = async (name: string) => (await alice.operations.waitOperation({ name, timeoutSeconds: 30 })).operation!;
  const volume = async (id: string) => (await alice.volumes.getVolume({ id })).volume!;
  /** The volumes the server's host has plugged into it (its fake domain). */
  const plugged = async (serverId: string, host: string) => (await fakeDomains(join(dir, host, "fake-domains.json")))[serverId]?.volumes ?? [];

  test("attach exports to the server's host and plugs the disk; another attach, a cold move, a shelve or a wrong state is refused; detach undoes it; it attaches elsewhere after", async () => {
    const s1 = await fx.bootOn(computeHosts[0]!, "att-1");
    const s2 = await fx.bootOn(computeHosts[1]!, "att-2");
    const vol = await newVolume("data");

    const att = await alice.servers.attachVolume({ id: s1.id, volumeId: vol, requestId: "att-1" });
    assert.equal(att.server!.taskState, TaskState.TASK_STATE_VOLUME_ATTACHING);
    assert.match(att.attachmentId, /^[0-9a-f-]{36}$/);
    assert.equal((await volume(vol)).status, VolumeStatus.VOLUME_STATUS_ATTACHING);
    const op = await wait(att.operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, JSON.stringify(op.error));
    const inUse = await volume(vol);
    assert.equal(inUse.status, VolumeStatus.VOLUME_STATUS_IN_USE);
    assert.deepEqual(
      inUse.attachments.map((a) => [a.id, a.serverId, a.device]),
      [[att.attachmentId, s1.id, "vdb"]],
    );
    const disks = await plugged(s1.id, s1.host);
    assert.deepEqual(disks.map((d) => [d.attachmentId, d.device, d.connection.exportName]), [[att.attachmentId, "vdb", att.attachmentId]], "the host plugged the export of this attachment");
    assert.equal((await settled(s1.id, ServerStatus.SERVER_STATUS_ACTIVE)).taskState, TaskState.TASK_STATE_UNSPECIFIED);
    const events = (await alice.servers.listServerActions({ serverId: s1.id })).actions[0]!.events.map((e) => `${e.name}:${e.result}`);
    assert.deepEqual(events, ["volume_export:Success", "compute_attach_volume:Success"]);
    // The same request again: the same attachment.
    assert.equal((await alice.servers.attachVolume({ id: s1.id, volumeId: vol, requestId: "att-1" })).attachmentId, att.attachmentId);

    // In use: no second attachment; not from a wrong state; not another project's.
    const twice = await failure(alice.servers.attachVolume({ id: s2.id, volumeId: vol }));
    assert.deepEqual([twice.code, twice.reason, twice.metadata.status], [status.FAILED_PRECONDITION, "WRONG_STATUS", "IN_USE"]);
    const other = await newVolume("other");
    await alice.servers.suspendServer({ id: s2.id });
    await settled(s2.id, ServerStatus.SERVER_STATUS_SUSPENDED);
    const suspended = await failure(alice.servers.attachVolume({ id: s2.id, volumeId: other }));
    assert.deepEqual([suspended.code, suspended.reason, suspended.metadata.vm_state], [status.FAILED_PRECONDITION, "INVALID_STATE", "SUSPENDED"]);
    await alice.servers.resumeServer({ id: s2.id });
    await settled(s2.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal((await failure(bob.servers.attachVolume({ id: s2.id, volumeId: other }))).code, status.NOT_FOUND, "bob's view: no such server");
    const bobs = (await bob.volumes.createVolume({ sizeGb: 1, requestId: "bob-vol" })).volume!.id;
    assert.equal((await failure(alice.servers.attachVolume({ id: s2.id, volumeId: bobs }))).code, status.NOT_FOUND, "another project's volume");
    assert.deepEqual((await failure(alice.servers.attachVolume({ id: s2.id, volumeId: other, device: "sda" }))).fields, ["device"]);
    assert.equal((await failure(alice.servers.detachVolume({ id: s2.id, volumeId: vol }))).code, status.NOT_FOUND, "not attached to s2");
    // A volume being attached cannot be deleted.
    assert.equal((await failure(alice.volumes.deleteVolume({ id: vol }))).metadata.status, "IN_USE");

    // Detach: unplugged, export ended, AVAILABLE.
    const det = await alice.servers.detachVolume({ id: s1.id, volumeId: vol });
    assert.equal(det.server!.taskState, TaskState.TASK_STATE_VOLUME_DETACHING);
    assert.equal((await volume(vol)).status, VolumeStatus.VOLUME_STATUS_DETACHING);
    assert.equal((await wait(det.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    const free = await volume(vol);
    assert.deepEqual([free.status, free.attachments.length], [VolumeStatus.VOLUME_STATUS_AVAILABLE, 0]);
    assert.deepEqual(await plugged(s1.id, s1.host), []);
    const detEvents = (await alice.servers.listServerActions({ serverId: s1.id })).actions[0]!.events.map((e) => `${e.name}:${e.result}`);
    assert.deepEqual(detEvents, ["compute_detach_volume:Success", "volume_unexport:Success"]);

    // Now to the server on the other host, at the device asked for.
    const again = await alice.servers.attachVolume({ id: s2.id, volumeId: vol, device: "vdc" });
    assert.equal((await wait(again.operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.deepEqual((await plugged(s2.id, s2.host)).map((d) => d.device), ["vdc"]);
    assert.deepEqual((await volume(vol)).attachments.map((a) => [a.serverId, a.device]), [[s2.id, "vdc"]]);
  });

  test("an export that fails leaves the volume AVAILABLE and the server as it was, the operation saying why", async () => {
    const s = await boot("att-broken");
    const vol = await newVolume("broken-vol", "broken");
    const att = await alice.servers.attachVolume({ id: s.id, volumeId: vol });
    const op = await wait(att.operation!.name);
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(operationError(op).reason, "EXPORT_FAILED");
    assert.match(operationError(op).message, /export server down/);
    const v = await volume(vol);
    assert.deepEqual([v.status, v.attachments.length], [VolumeStatus.VOLUME_STATUS_AVAILABLE, 0]);
    const after = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.equal(after.fault?.code, "EXPORT_FAILED", "the server keeps the fault of its last action");
    assert.deepEqual(await plugged(s.id, after.host), []);
  });

  test("deleting a server frees its volumes, and deletes those attached with delete_on_termination", async () => {
    const s = await boot("att-doomed");
    const [keep, drop] = await Promise.all([newVolume("keep"), newVolume("drop")]);
    assert.equal((await wait((await alice.servers.attachVolume({ id: s.id, volumeId: keep })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal(
      (await wait((await alice.servers.attachVolume({ id: s.id, volumeId: drop, deleteOnTermination: true })).operation!.name)).state,
      OperationState.OPERATION_STATE_SUCCEEDED,
    );
    assert.deepEqual((await volume(drop)).attachments.map((a) => a.deleteOnTermination), [true]);
    await alice.servers.deleteServer({ id: s.id });
    await eventually(async () => (await volume(keep)).status === VolumeStatus.VOLUME_STATUS_AVAILABLE, { what: "the kept volume free" });
    assert.deepEqual((await volume(keep)).attachments, []);
    await eventually(async () => (await failure(alice.volumes.getVolume({ id: drop }))).code === status.NOT_FOUND, { what: "the other volume deleted" });
    const ops = (await alice.operations.listOperations({ volumeId: drop })).operations.map((o) => `${o.action}:${OperationState[o.state]}`);
    assert.deepEqual(ops, ["delete:OPERATION_STATE_SUCCEEDED", "create:OPERATION_STATE_SUCCEEDED"]);
    // The freed one attaches again.
    const s2 = await boot("att-heir");
    assert.equal((await wait((await alice.servers.attachVolume({ id: s2.id, volumeId: keep })).operation!.name)).state, OperationState.OPERATION_STATE_SUCCEEDED);
  });
});
