/**
 * Rebuild, snapshot (CreateServerImage), shelve and unshelve on real MySQL +
 * NATS with two fake hosts: what the server, its images, its host and every
 * host's capacity look like before, while and after each runs.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ImageStatus, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { PowerState, RebootType, ServerStatus, TaskState, VmState } from "../gen/novamesh/compute/v1/server.js";
import { fakeDomains } from "./agents.js";
import { assertCapacityExact, eventually, failure, history } from "./harness.js";
import { stack } from "./stack.js";

const SMALL = { vcpus: 1, ram: 2048, disk: 20 };

describe("rebuild, snapshot, shelve and unshelve", () => {
  // Each host's first reboot fails (a way into ERROR); each step of a
  // snapshot or rebuild takes a second, so a QUEUED image and every task
  // step can be seen; removing a server takes half a second, so a shelve's
  // last step is reported well before its result.
  const faults = { reboot: { error: "guest kernel panic", failTimes: 1 }, snapshot: { delayMs: 1000 }, rebuild: { delayMs: 1000 }, destroy: { delayMs: 500 } };
  const fx = stack({ name: "rebuild-shelve", members: ["alice", "bob"], images: ["cirros", "ubuntu"], agents: ({ id }) => [{ host: `rs${id}`, hosts: 2, faults }] });
  const { env, admin, alice, bob, dir, settled, boot } = fx;
  // Servers, operations and moves are read as an admin sees them, with host names (members see host ids).
  const [imageId, otherImageId] = fx.imageIds;
  const hostPrefix = `rs${env.id}`;
  const domainsOf = (host: string) => fakeDomains(join(dir, host, "fake-domains.json"));
  const events = async (id: string) =>
    (await admin.servers.listServerActions({ serverId: id })).actions.map((a) => `${a.action}:${a.events.map((e) => `${e.name}@${e.host}:${e.result}`).join(",")}`);

  /** Waits until the server's task has moved on to `task` (a step the host reported). */
  const taskReaches = (id: string, task: TaskState) =>
    eventually(async () => (await admin.servers.getServer({ id })).server!.taskState === task, { what: TaskState[task], intervalMs: 50, timeoutMs: 10_000 });

  test("rebuild replaces the disk on the same host from a new image, renames, keeps flavor and capacity; also from STOPPED and ERROR", async () => {
    const s = await boot("rebuild-me");
    const usage = await assertCapacityExact(env, admin);

    const res = await alice.servers.rebuildServer({ id: s.id, imageId: otherImageId, name: "rebuilt" });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_REBUILDING);
    assert.equal(res.server!.status, ServerStatus.SERVER_STATUS_REBUILD);
    assert.equal(res.operation!.action, "rebuild");
    assert.equal(res.operation!.name, `servers/${s.id}/operations/${encodeURIComponent(res.operation!.requestId)}`);
    // The host reports the next step: the old disk is gone, the new one is being built.
    await taskReaches(s.id, TaskState.TASK_STATE_REBUILD_SPAWNING);
    const done = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(
      [done.host, done.flavor!.name, done.imageId, done.name, done.vmState, done.powerState],
      [s.host, "m1.small", otherImageId, "rebuilt", VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING],
    );
    // The host runs it from the new image.
    const dom = (await domainsOf(s.host))[s.id];
    assert.ok(dom, "the host still has the server");
    assert.equal(dom.instance.image.id, otherImageId);
    assert.equal(dom.powerState, "RUNNING");
    assert.deepEqual(await assertCapacityExact(env, admin), usage, "a rebuild claims and releases nothing");
    const op = (await admin.operations.getOperation({ name: res.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);

    // From STOPPED, with the current image and name: it ends running.
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    await alice.servers.rebuildServer({ id: s.id });
    const fromStopped = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual(
      [fromStopped.host, fromStopped.imageId, fromStopped.name, fromStopped.powerState],
      [s.host, otherImageId, "rebuilt", PowerState.POWER_STATE_RUNNING],
    );

    // From ERROR (the host's first reboot fails): the rebuild repairs it.
    await alice.servers.rebootServer({ id: s.id, type: RebootType.REBOOT_TYPE_SOFT });
    const crashed = await settled(s.id, ServerStatus.SERVER_STATUS_ERROR);
    assert.equal(crashed.fault!.code, "REBOOT_FAILED");
    await alice.servers.rebuildServer({ id: s.id, imageId });
    const repaired = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.deepEqual([repaired.host, repaired.imageId, repaired.powerState], [s.host, imageId, PowerState.POWER_STATE_RUNNING]);
    assert.equal(repaired.fault, undefined, "the fault is cleared");
    assert.equal((await domainsOf(s.host))[s.id]!.instance.image.id, imageId);

    assert.deepEqual((await events(s.id)).slice(0, 5), [
      `rebuild:compute_rebuild@${s.host}:Success`,
      `reboot:compute_reboot@${s.host}:Error`,
      `rebuild:compute_rebuild@${s.host}:Success`,
      `stop:compute_stop@${s.host}:Success`,
      `rebuild:compute_rebuild@${s.host}:Success`,
    ]);
    assert.deepEqual(await assertCapacityExact(env, admin), usage);
  });

  test("rebuild refuses a PAUSED server, an unknown image and a malformed image id", async () => {
    const s = await boot("rebuild-refused");
    const unknown = await failure(alice.servers.rebuildServer({ id: s.id, imageId: randomUUID() }));
    assert.equal(unknown.code, status.NOT_FOUND, unknown.message);
    const malformed = await failure(alice.servers.rebuildServer({ id: s.id, imageId: "not-a-uuid" }));
    assert.equal(malformed.code, status.INVALID_ARGUMENT, malformed.message);
    assert.deepEqual(malformed.fields, ["image_id"]);

    await alice.servers.pauseServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    const paused = await failure(alice.servers.rebuildServer({ id: s.id, imageId: otherImageId }));
    assert.equal(paused.code, status.FAILED_PRECONDITION, paused.message);
    assert.equal(paused.reason, "INVALID_STATE");
    assert.equal(paused.metadata["vm_state"], "PAUSED");
    // Nothing changed.
    const after = (await admin.servers.getServer({ id: s.id })).server!;
    assert.deepEqual([after.status, after.imageId, after.taskState], [ServerStatus.SERVER_STATUS_PAUSED, imageId, TaskState.TASK_STATE_UNSPECIFIED]);
    assert.deepEqual((await events(s.id)).map((a) => a.split(":")[0]), ["pause", "create"]);
  });

  test("a snapshot makes a private image, QUEUED then ACTIVE with size and checksum, and leaves the server in its state", async () => {
    const s = await boot("snap-me");
    await alice.servers.stopServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);

    const res = await alice.servers.createServerImage({ id: s.id, name: "nightly", metadata: { purpose: "backup" } });
    assert.ok(res.imageId, "the response names the new image");
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_IMAGE_SNAPSHOT);
    assert.equal(res.operation!.action, "create_image");
    const queued = (await alice.images.getImage({ id: res.imageId })).image!;
    assert.equal(queued.status, ImageStatus.IMAGE_STATUS_QUEUED, "queued until the host stored it");
    assert.deepEqual([queued.name, queued.projectId, queued.visibility], ["nightly", "alice", ImageVisibility.IMAGE_VISIBILITY_PRIVATE]);
    assert.equal((await admin.servers.getServer({ id: s.id })).server!.taskState, TaskState.TASK_STATE_IMAGE_SNAPSHOT);
    await taskReaches(s.id, TaskState.TASK_STATE_IMAGE_UPLOADING);

    const op = (await admin.operations.waitOperation({ name: res.operation!.name, timeoutSeconds: 20 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const image = (await alice.images.getImage({ id: res.imageId })).image!;
    assert.equal(image.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    assert.ok(image.sizeBytes > 0, `size ${image.sizeBytes}`);
    assert.match(image.checksum, /^[0-9a-f]{64}$/);
    assert.equal(image.visibility, ImageVisibility.IMAGE_VISIBILITY_PRIVATE);
    assert.equal(image.properties["instance_uuid"], s.id);
    assert.equal(image.properties["image_type"], "snapshot");
    assert.equal(image.properties["purpose"], "backup");
    // Only its project sees it.
    assert.equal((await failure(bob.images.getImage({ id: res.imageId }))).code, status.NOT_FOUND);
    assert.ok((await alice.images.listImages({})).images.some((i) => i.id === res.imageId));
    assert.ok(!(await bob.images.listImages({})).images.some((i) => i.id === res.imageId));

    // The server is as it was: stopped, on its host.
    const stopped = await settled(s.id, ServerStatus.SERVER_STATUS_SHUTOFF);
    assert.deepEqual([stopped.vmState, stopped.powerState, stopped.host], [VmState.VM_STATE_STOPPED, PowerState.POWER_STATE_SHUTDOWN, s.host]);
    assert.equal((await domainsOf(s.host))[s.id]!.powerState, "SHUTDOWN");
    assert.equal((await events(s.id))[0], `create_image:compute_snapshot@${s.host}:Success`);

    // The snapshot boots.
    const clone = await boot("clone", "m1.small", res.imageId);
    assert.equal(clone.imageId, res.imageId);
  });

  test("a PAUSED server's snapshot leaves it paused; a snapshot needs a name", async () => {
    const s = await boot("snap-paused");
    await alice.servers.pauseServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    for (const name of ["", "   "]) {
      const bad = await failure(alice.servers.createServerImage({ id: s.id, name }));
      assert.equal(bad.code, status.INVALID_ARGUMENT, bad.message);
      assert.deepEqual(bad.fields, ["name"]);
    }
    const res = await alice.servers.createServerImage({ id: s.id, name: "paused-snap" });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_IMAGE_SNAPSHOT);
    const op = (await admin.operations.waitOperation({ name: res.operation!.name, timeoutSeconds: 20 })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const paused = await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    assert.deepEqual([paused.vmState, paused.powerState], [VmState.VM_STATE_PAUSED, PowerState.POWER_STATE_PAUSED]);
    assert.equal((await alice.images.getImage({ id: res.imageId })).image!.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    assert.deepEqual((await events(s.id)).map((a) => a.split(":")[0]), ["create_image", "pause", "create"], "the refused calls recorded nothing");
  });

  test("snapshots from ACTIVE and SUSPENDED leave the server so; SUSPENDED and STOPPED servers shelve and release their host", async () => {
    const [x, y] = await Promise.all([boot("snap-active"), boot("shelve-stopped")]);
    const before = await assertCapacityExact(env, admin);
    const snapshotKeeps = async (id: string, name: string, status: ServerStatus, power: PowerState) => {
      const res = await alice.servers.createServerImage({ id, name });
      assert.equal(res.server!.taskState, TaskState.TASK_STATE_IMAGE_SNAPSHOT, name);
      const op = (await admin.operations.waitOperation({ name: res.operation!.name, timeoutSeconds: 20 })).operation!;
      assert.equal(op.state, OperationState.OPERATION_STATE_SUCCEEDED, name);
      assert.equal((await alice.images.getImage({ id: res.imageId })).image!.status, ImageStatus.IMAGE_STATUS_ACTIVE, name);
      const after = await settled(id, status);
      assert.equal(after.powerState, power, name);
    };
    const shelves = async (id: string) => {
      const res = await alice.servers.shelveServer({ id });
      assert.equal(res.server!.taskState, TaskState.TASK_STATE_SHELVING);
      await settled(id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    };
    await Promise.all([
      (async () => {
        await snapshotKeeps(x.id, "from-active", ServerStatus.SERVER_STATUS_ACTIVE, PowerState.POWER_STATE_RUNNING);
        assert.equal((await domainsOf(x.host))[x.id]!.powerState, "RUNNING");
        await alice.servers.suspendServer({ id: x.id });
        await settled(x.id, ServerStatus.SERVER_STATUS_SUSPENDED);
        await snapshotKeeps(x.id, "from-suspended", ServerStatus.SERVER_STATUS_SUSPENDED, PowerState.POWER_STATE_SUSPENDED);
        assert.equal((await domainsOf(x.host))[x.id]!.powerState, "SUSPENDED");
        await shelves(x.id);
      })(),
      (async () => {
        await alice.servers.stopServer({ id: y.id });
        await settled(y.id, ServerStatus.SERVER_STATUS_SHUTOFF);
        await shelves(y.id);
      })(),
    ]);
    const usage = await assertCapacityExact(env, admin);
    for (const [host, u] of before) {
      const n = [x, y].filter((v) => v.host === host).length;
      assert.deepEqual(usage.get(host), { vcpus: u.vcpus - n * SMALL.vcpus, ram: u.ram - n * SMALL.ram, disk: u.disk - n * SMALL.disk, vms: u.vms - n }, host);
    }
    for (const v of [x, y]) {
      assert.ok(!(v.id in (await domainsOf(v.host))), "its host no longer has it");
      const img = (await alice.images.listImages({})).images.find((i) => i.properties["instance_uuid"] === v.id && i.properties["image_type"] === "shelved");
      assert.equal(img?.status, ImageStatus.IMAGE_STATUS_ACTIVE, "its shelved image is stored");
    }
  });

  test("shelve offloads the server and releases its host; unshelve places it again and claims capacity exactly", async () => {
    const s = await boot("shelve-me");
    const source = s.host;
    const before = await assertCapacityExact(env, admin);

    const res = await alice.servers.shelveServer({ id: s.id });
    assert.equal(res.server!.taskState, TaskState.TASK_STATE_SHELVING);
    assert.equal(res.operation!.action, "shelve");
    await taskReaches(s.id, TaskState.TASK_STATE_SHELVING_IMAGE_UPLOADING);
    const shelved = await settled(s.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    assert.deepEqual([shelved.vmState, shelved.host, shelved.powerState], [VmState.VM_STATE_SHELVED_OFFLOADED, "", PowerState.POWER_STATE_NOSTATE]);
    // Powered off, stored, removed from the host: each step was shown.
    const seen = await history(alice, s.id, (h) => h.includes("SHELVED_OFFLOADED/UNSPECIFIED"));
    assert.deepEqual(seen.slice(seen.indexOf("ACTIVE/SHELVING")), [
      "ACTIVE/SHELVING",
      "ACTIVE/SHELVING_IMAGE_UPLOADING",
      "ACTIVE/SHELVING_OFFLOADING",
      "SHELVED_OFFLOADED/UNSPECIFIED",
    ]);
    const during = await assertCapacityExact(env, admin);
    const s0 = before.get(source)!;
    assert.deepEqual(during.get(source), { vcpus: s0.vcpus - SMALL.vcpus, ram: s0.ram - SMALL.ram, disk: s0.disk - SMALL.disk, vms: s0.vms - 1 });
    assert.ok(!(s.id in (await domainsOf(source))), "the host no longer runs it");
    assert.equal((await events(s.id))[0], `shelve:compute_shelve@${source}:Success`);
    // Its disk is kept as an image of its project.
    const snap = (await alice.images.listImages({})).images.find((i) => i.properties["instance_uuid"] === s.id);
    assert.ok(snap, "a shelved image of the server exists");
    assert.equal(snap.status, ImageStatus.IMAGE_STATUS_ACTIVE);
    assert.ok(snap.sizeBytes > 0);
    assert.equal(snap.properties["image_type"], "shelved");
    assert.equal(snap.visibility, ImageVisibility.IMAGE_VISIBILITY_PRIVATE);

    // What needs a host is refused while shelved.
    for (const [what, call] of [
      ["start", () => alice.servers.startServer({ id: s.id })],
      ["rebuild", () => alice.servers.rebuildServer({ id: s.id })],
      ["create_image", () => alice.servers.createServerImage({ id: s.id, name: "x" })],
      ["shelve", () => alice.servers.shelveServer({ id: s.id })],
      ["live_migrate", () => admin.servers.liveMigrateServer({ id: s.id })],
    ] as const) {
      const f = await failure(call());
      assert.equal(f.code, status.FAILED_PRECONDITION, `${what}: ${f.message}`);
      assert.equal(f.reason, "INVALID_STATE", what);
      assert.equal(f.metadata["vm_state"], "SHELVED_OFFLOADED", what);
    }

    const un = await alice.servers.unshelveServer({ id: s.id });
    assert.equal(un.server!.taskState, TaskState.TASK_STATE_UNSHELVING);
    assert.equal(un.operation!.action, "unshelve");
    assert.equal(un.operation!.state, OperationState.OPERATION_STATE_PENDING, "pending until a host is chosen");
    const back = await settled(s.id, ServerStatus.SERVER_STATUS_ACTIVE);
    assert.ok(back.host.startsWith(hostPrefix), `placed on ${back.host}`);
    assert.deepEqual([back.vmState, back.powerState, back.flavor!.name], [VmState.VM_STATE_ACTIVE, PowerState.POWER_STATE_RUNNING, "m1.small"]);
    assert.equal((await domainsOf(back.host))[s.id]?.powerState, "RUNNING", "the new host runs it");
    const afterUnshelve = await assertCapacityExact(env, admin);
    const t0 = during.get(back.host)!;
    assert.deepEqual(afterUnshelve.get(back.host), { vcpus: t0.vcpus + SMALL.vcpus, ram: t0.ram + SMALL.ram, disk: t0.disk + SMALL.disk, vms: t0.vms + 1 });
    assert.equal((await events(s.id))[0], `unshelve:schedule@${back.host}:Success,compute_spawn@${back.host}:Success`);
    assert.equal((await admin.operations.getOperation({ name: un.operation!.name })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);

    const again = await failure(alice.servers.unshelveServer({ id: s.id }));
    assert.equal(again.code, status.FAILED_PRECONDITION);
    assert.equal(again.metadata["vm_state"], "ACTIVE");
  });

  test("a PAUSED server shelves; with every host disabled its unshelve fails NO_VALID_HOST and it stays shelved; deleting it is immediate", async () => {
    const s = await boot("shelve-paused");
    await alice.servers.pauseServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_PAUSED);
    await alice.servers.shelveServer({ id: s.id });
    await settled(s.id, ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED);
    const before = await assertCapacityExact(env, admin);

    const hosts = (await admin.hosts.listServices({})).services.map((x) => x.host);
    for (const host of hosts) await admin.hosts.disableService({ host, reason: "test: nowhere to go" });
    try {
      const un = await alice.servers.unshelveServer({ id: s.id });
      const op = (await admin.operations.waitOperation({ name: un.operation!.name, timeoutSeconds: 20 })).operation!;
      assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
      assert.equal(op.error!.code, status.RESOURCE_EXHAUSTED);
      const still = (await admin.servers.getServer({ id: s.id })).server!;
      assert.deepEqual(
        [still.status, still.vmState, still.taskState, still.host],
        [ServerStatus.SERVER_STATUS_SHELVED_OFFLOADED, VmState.VM_STATE_SHELVED_OFFLOADED, TaskState.TASK_STATE_UNSPECIFIED, ""],
      );
      assert.equal(still.fault!.code, "NO_VALID_HOST");
      assert.deepEqual(await assertCapacityExact(env, admin), before, "a failed unshelve holds nothing");
    } finally {
      for (const host of hosts) await admin.hosts.enableService({ host });
    }

    const del = await alice.servers.deleteServer({ id: s.id });
    assert.equal(del.server!.status, ServerStatus.SERVER_STATUS_DELETED, "nothing to destroy on a host: deleted at once");
    assert.equal(del.operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await admin.servers.getServer({ id: s.id })).server!.status, ServerStatus.SERVER_STATUS_DELETED);
    const [delAction] = (await admin.servers.listServerActions({ serverId: s.id })).actions;
    assert.equal(delAction!.action, "delete");
    assert.deepEqual(delAction!.events.map((e) => `${e.name}:${e.result}`), ["local_delete:Success"]);
    assert.deepEqual(await assertCapacityExact(env, admin), before);
  });
});
