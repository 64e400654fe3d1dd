/**
 * Volumes through the whole stack: real MariaDB, NATS and controller, agent
 * processes that are volume hosts with the fake backend. Placement never
 * overcommits a pool whatever the concurrency; every call is an operation
 * with a deadline; the status table and bad input are refused with the
 * field or the status named; a volume host killed mid-create leaves the
 * volume in ERROR by its deadline, never CREATING.
 */
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { OperationState } from "../gen/novamesh/compute/v1/operation.js";
import { VolumeSnapshotStatus, VolumeStatus, type Volume } from "../gen/novamesh/volume/v1/volume.js";
import { eventually, failure, operationError, type Clients } from "./harness.js";
import { fakeVolumeHost } from "./agents.js";
import { stack } from "./stack.js";

const GiB = 1024 ** 3;

const volumeHost = (host: string, gb: number, extra: string[] = []) => fakeVolumeHost(host, { gb, extra });

/** Waits until every volume in `ids` is in `want` (as `c` sees them; one list per look). */
async function settledVolumes(c: Clients, ids: readonly string[], want: VolumeStatus, timeoutMs = 30_000): Promise<Volume[]> {
  return eventually(
    async () => {
      const all = new Map((await c.volumes.listVolumes({ pageSize: 1000 })).volumes.map((v) => [v.id, v]));
      const got = ids.map((id) => all.get(id));
      return got.every((v) => v?.status === want) && (got as Volume[]);
    },
    { what: `${ids.length} volumes ${VolumeStatus[want]}`, timeoutMs },
  );
}

describe("volumes", () => {
  const fx = stack({
    name: "volumes",
    fixedPort: true,
    members: ["alice", "bob"],
    // Long enough for a burst of creates on a busy machine, short enough for the test that waits for it.
    // No host is expected to go down here: a busy machine may hold reports up for longer than the default 5 s.
    controller: { volumeTimeouts: "CREATING=12", reaperIntervalSeconds: 1, reaperGraceSeconds: 0, serviceDownTimeSeconds: 30 },
    agents: ({ id }) => [
      volumeHost(`va${id}`, 50),
      volumeHost(`vb${id}`, 50),
      // Creates on this one hang, so a test can kill it mid-create.
      volumeHost(`vs${id}`, 10, ["--fake-volume-faults", JSON.stringify({ create: { delayMs: 600_000 } })]),
    ],
  });
  const { env, admin, alice, bob } = fx;
  const [va, vb, vs] = [`va${env.id}`, `vb${env.id}`, `vs${env.id}`];
  const pools = async () => (await admin.hosts.listVolumePools({})).pools.filter((p) => [va, vb, vs].includes(p.host));

  // The slow host is out of every test but the last.
  before(async () => {
    await eventually(async () => (await pools()).length === 3, { what: "the volume hosts' pools" });
    await admin.hosts.disableService({ host: vs, reason: "hangs on purpose" });
  });

  test("200 concurrent creates on two 50 GiB volume hosts: exactly 100 placed, the rest refused, no pool over its size", async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => alice.volumes.createVolume({ name: `burst-${i}`, sizeGb: 1, requestId: `burst-${i}` })),
    );
    const placed = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.volume!] : []));
    const refused = await Promise.all(results.flatMap((r) => (r.status === "rejected" ? [failure(Promise.reject(r.reason))] : [])));
    assert.equal(placed.length, 100, "two 50 GiB pools take 100 volumes of 1 GiB");
    assert.equal(refused.length, 100);
    for (const f of refused) {
      assert.equal(f.code, status.RESOURCE_EXHAUSTED);
      assert.equal(f.reason, "NO_VALID_POOL");
    }
    const byHost = new Map<string, number>();
    for (const v of (await admin.volumes.listVolumes({ allProjects: true, pageSize: 1000 })).volumes) byHost.set(v.host, (byHost.get(v.host) ?? 0) + v.sizeGb);
    assert.deepEqual([byHost.get(va), byHost.get(vb)], [50, 50], "each pool holds exactly its size");
    for (const p of (await pools()).filter((p) => p.host !== vs)) assert.equal(p.allocatedBytes, 50 * GiB, `${p.host}'s claims`);

    // Each becomes AVAILABLE once its host made it; a member sees no host.
    const ids = placed.map((v) => v.id);
    const made = await settledVolumes(alice, ids, VolumeStatus.VOLUME_STATUS_AVAILABLE, 60_000);
    assert.ok(made.every((v) => v.host === "" && v.pool === "" && v.volumeType === "default"));
    await eventually(async () => (await pools()).filter((p) => p.host !== vs).every((p) => p.provisionedBytes === 50 * GiB), {
      what: "the hosts report the volumes they made",
    });

    // Deleting frees exactly what the volumes held.
    const gone = ids.slice(0, 10);
    const ops = await Promise.all(gone.map((id) => alice.volumes.deleteVolume({ id })));
    for (const o of ops) assert.match(o.operation!.name, /^volumes\/[0-9a-f-]{36}\/operations\/.+$/);
    for (const o of ops) {
      const w = (await alice.operations.waitOperation({ name: o.operation!.name, timeoutSeconds: 30 })).operation!;
      assert.deepEqual([w.action, OperationState[w.state]], ["delete", "OPERATION_STATE_SUCCEEDED"]);
    }
    for (const id of gone) assert.equal((await failure(alice.volumes.getVolume({ id }))).code, status.NOT_FOUND);
    assert.equal((await pools()).filter((p) => p.host !== vs).reduce((n, p) => n + p.allocatedBytes, 0), 90 * GiB);
    const again = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => alice.volumes.createVolume({ sizeGb: 1, requestId: `again-${i}` })));
    const madeAgain = again.flatMap((r) => (r.status === "fulfilled" ? [r.value.volume!.id] : []));
    assert.equal(madeAgain.length, 10, "the 10 GiB freed, and no more");
    await settledVolumes(alice, madeAgain, VolumeStatus.VOLUME_STATUS_AVAILABLE);

    // Clean up for the other tests.
    const all = (await alice.volumes.listVolumes({ pageSize: 1000 })).volumes;
    const dels = await Promise.all(all.map((v) => alice.volumes.deleteVolume({ id: v.id })));
    for (const d of dels) await alice.operations.waitOperation({ name: d.operation!.name, timeoutSeconds: 60 });
    assert.equal((await alice.volumes.listVolumes({})).volumes.length, 0);
  });

  test("extend, repeat and the status table: each call an operation; wrong status FAILED_PRECONDITION naming it; bad input names the field", async () => {
    const created = await alice.volumes.createVolume({ name: "data", sizeGb: 1, requestId: "data-1" });
    const v = created.volume!;
    assert.equal(v.status, VolumeStatus.VOLUME_STATUS_CREATING);
    assert.equal(created.operation!.name, `volumes/${v.id}/operations/data-1`);
    assert.equal(created.operation!.volumeId, v.id);
    assert.ok(created.operation!.deadline, "a create has a deadline");
    // The same request id: the same volume; another request with it is refused, the field named.
    assert.equal((await alice.volumes.createVolume({ name: "data", sizeGb: 1, requestId: "data-1" })).volume!.id, v.id);
    const reused = await failure(alice.volumes.createVolume({ name: "data", sizeGb: 2, requestId: "data-1" }));
    assert.equal(reused.code, status.ALREADY_EXISTS);
    assert.deepEqual(reused.fields, ["request_id", "size_gb"]);

    const done = await alice.operations.waitOperation({ name: created.operation!.name, timeoutSeconds: 30 });
    assert.equal(done.operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await alice.volumes.getVolume({ id: v.id })).volume!.status, VolumeStatus.VOLUME_STATUS_AVAILABLE);

    const ext = await alice.volumes.extendVolume({ id: v.id, newSizeGb: 3, requestId: "grow" });
    assert.equal(ext.operation!.action, "extend");
    const extended = await alice.operations.waitOperation({ name: ext.operation!.name, timeoutSeconds: 30 });
    assert.equal(extended.operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const grown = (await alice.volumes.getVolume({ id: v.id })).volume!;
    assert.equal(grown.sizeGb, 3);
    assert.equal(grown.status, VolumeStatus.VOLUME_STATUS_AVAILABLE);
    const listed = (await alice.operations.listOperations({ volumeId: v.id })).operations.map((o) => `${o.action}:${OperationState[o.state]}`);
    assert.deepEqual(listed, ["extend:OPERATION_STATE_SUCCEEDED", "create:OPERATION_STATE_SUCCEEDED"]);
    const smaller = await failure(alice.volumes.extendVolume({ id: v.id, newSizeGb: 2 }));
    assert.equal(smaller.code, status.INVALID_ARGUMENT);
    assert.deepEqual(smaller.fields, ["new_size_gb"]);
    const tooBig = await failure(alice.volumes.extendVolume({ id: v.id, newSizeGb: 60 }));
    assert.equal(tooBig.code, status.RESOURCE_EXHAUSTED);
    assert.equal(tooBig.reason, "NO_VALID_POOL");

    // Another project's volume does not exist for it.
    for (const call of [() => bob.volumes.getVolume({ id: v.id }), () => bob.volumes.deleteVolume({ id: v.id }), () => bob.volumes.extendVolume({ id: v.id, newSizeGb: 4 })]) {
      assert.equal((await failure(call())).code, status.NOT_FOUND);
    }
    assert.equal((await failure(bob.operations.getOperation({ name: created.operation!.name }))).code, status.NOT_FOUND);
    assert.equal((await bob.volumes.listVolumes({})).volumes.length, 0);

    // Bad input.
    for (const [req, field] of [
      [{ sizeGb: 0 }, "size_gb"],
      [{ sizeGb: -5 }, "size_gb"],
      [{ sizeGb: 20000 }, "size_gb"],
      [{ sizeGb: 1, volumeType: "no-such-type" }, "volume_type"],
      [{ sizeGb: 1, volumeType: "bad type!" }, "volume_type"],
      [{ sizeGb: 1, imageId: "not-a-uuid" }, "image_id"],
      [{ sizeGb: 1, name: "x".repeat(256) }, "name"],
      [{ sizeGb: 1, requestId: "novamesh:server-delete-x" }, "request_id"],
    ] as const) {
      const f = await failure(alice.volumes.createVolume(req));
      assert.equal(f.code, status.INVALID_ARGUMENT, JSON.stringify(req));
      assert.deepEqual(f.fields, [field], JSON.stringify(req));
    }
    const huge = await failure(alice.volumes.createVolume({ sizeGb: 1000 }));
    assert.equal(huge.code, status.RESOURCE_EXHAUSTED, "larger than any pool");
    assert.match(huge.message, /no pool has room for 1000 GiB/);
    assert.equal((await failure(alice.volumes.createVolume({ sizeGb: 1, availabilityZone: "nowhere" }))).code, status.RESOURCE_EXHAUSTED);
    assert.deepEqual((await failure(alice.volumes.getVolume({ id: "x" }))).fields, ["id"]);
    assert.equal((await failure(alice.operations.cancelOperation({ name: ext.operation!.name }))).code, status.FAILED_PRECONDITION);

    // Delete, then every call on it is NOT_FOUND; its operations stay readable.
    const del = await alice.volumes.deleteVolume({ id: v.id, requestId: "bye" });
    // A repeat of the same delete is the same operation, not a refusal.
    assert.equal((await alice.volumes.deleteVolume({ id: v.id, requestId: "bye" })).operation!.name, del.operation!.name);
    assert.equal((await alice.operations.waitOperation({ name: del.operation!.name, timeoutSeconds: 30 })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await failure(alice.volumes.getVolume({ id: v.id }))).code, status.NOT_FOUND);
    assert.equal((await alice.operations.getOperation({ name: created.operation!.name })).operation!.action, "create");
  });

  test("snapshots: taken of a volume as an operation of it, copied into a new volume beside it, holding their volume until deleted", async () => {
    const src = (await alice.volumes.createVolume({ name: "src", sizeGb: 1, requestId: "snap-src" })).volume!;
    await settledVolumes(alice, [src.id], VolumeStatus.VOLUME_STATUS_AVAILABLE);
    const taken = await alice.volumes.createVolumeSnapshot({ volumeId: src.id, name: "before", requestId: "snap-1" });
    assert.equal(taken.operation!.name, `volumes/${src.id}/operations/snap-1`);
    assert.equal(taken.operation!.action, "create_snapshot");
    assert.equal(taken.snapshot!.status, VolumeSnapshotStatus.VOLUME_SNAPSHOT_STATUS_CREATING);
    assert.equal((await alice.operations.waitOperation({ name: taken.operation!.name, timeoutSeconds: 30 })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    const snap = (await alice.volumes.getVolumeSnapshot({ id: taken.snapshot!.id })).snapshot!;
    assert.deepEqual([snap.status, snap.sizeGb, snap.volumeId, snap.name], [VolumeSnapshotStatus.VOLUME_SNAPSHOT_STATUS_AVAILABLE, 1, src.id, "before"]);
    assert.equal((await alice.volumes.createVolumeSnapshot({ volumeId: src.id, name: "before", requestId: "snap-1" })).snapshot!.id, snap.id, "a repeat: the same snapshot");
    assert.equal((await alice.volumes.getVolume({ id: src.id })).volume!.status, VolumeStatus.VOLUME_STATUS_AVAILABLE, "the volume keeps its status");

    // A copy goes to the snapshot's pool.
    const copy = (await alice.volumes.createVolume({ name: "copy", sizeGb: 2, snapshotId: snap.id, requestId: "snap-copy" })).volume!;
    await settledVolumes(alice, [copy.id], VolumeStatus.VOLUME_STATUS_AVAILABLE);
    const made = (await admin.volumes.getVolume({ id: copy.id })).volume;
    const source = (await admin.volumes.getVolume({ id: src.id })).volume!;
    assert.deepEqual([made!.host, made!.pool, made!.sourceSnapshotId, made!.sizeGb], [source.host, source.pool, snap.id, 2]);
    for (const [req, field, code] of [
      [{ sizeGb: 1, snapshotId: snap.id, imageId: snap.id }, "snapshot_id", status.INVALID_ARGUMENT],
      [{ sizeGb: 1, snapshotId: "not-a-uuid" }, "snapshot_id", status.INVALID_ARGUMENT],
    ] as const) {
      const f = await failure(alice.volumes.createVolume(req));
      assert.deepEqual([f.code, f.fields], [code, [field]]);
    }
    assert.equal((await failure(alice.volumes.createVolume({ sizeGb: 1, snapshotId: "4f6d2c1e-0000-4000-8000-00000000cafe" }))).code, status.NOT_FOUND);
    assert.equal((await failure(bob.volumes.getVolumeSnapshot({ id: snap.id }))).code, status.NOT_FOUND, "another project's snapshot");
    assert.equal((await failure(bob.volumes.createVolume({ sizeGb: 1, snapshotId: snap.id }))).code, status.NOT_FOUND);
    assert.deepEqual((await alice.volumes.listVolumeSnapshots({ volumeId: src.id })).snapshots.map((x) => x.id), [snap.id]);

    // The volume cannot go while it has a snapshot; the snapshot goes, then the volume; the copy stays.
    const held = await failure(alice.volumes.deleteVolume({ id: src.id }));
    assert.deepEqual([held.code, held.reason], [status.FAILED_PRECONDITION, "VOLUME_HAS_SNAPSHOTS"]);
    const dropped = await alice.volumes.deleteVolumeSnapshot({ id: snap.id, requestId: "snap-drop" });
    assert.equal(dropped.operation!.action, "delete_snapshot");
    assert.equal((await alice.operations.waitOperation({ name: dropped.operation!.name, timeoutSeconds: 30 })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await failure(alice.volumes.getVolumeSnapshot({ id: snap.id }))).code, status.NOT_FOUND);
    // The same delete again, after the snapshot went: its first operation, not NOT_FOUND.
    assert.equal((await alice.volumes.deleteVolumeSnapshot({ id: snap.id, requestId: "snap-drop" })).operation!.name, dropped.operation!.name);
    for (const id of [src.id, copy.id]) {
      const d = await alice.volumes.deleteVolume({ id });
      assert.equal((await alice.operations.waitOperation({ name: d.operation!.name, timeoutSeconds: 30 })).operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    }
  });

  test("volumes, snapshots and their gigabytes count against the project's quota, reserved while being made, freed when deleted", async () => {
    const usage = async () => Object.fromEntries((await bob.quotas.getLimits({ projectId: "" })).limits.map((l) => [l.resource, l.inUse + l.reserved]));
    const u0 = await usage();
    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { volumes: u0.volumes! + 2, gigabytes: u0.gigabytes! + 3, snapshots: u0.snapshots! + 1 } });
    const refusal = async (p: Promise<unknown>, resource: string, fields: string[]) => {
      const f = await failure(p);
      assert.deepEqual([f.code, f.reason, f.metadata.resource, f.fields], [status.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED", resource, fields], f.message);
      assert.equal(f.quota[0]!.subject, `project:bob/${resource}`);
    };
    const big = (await bob.volumes.createVolume({ name: "q-big", sizeGb: 2, requestId: "q-big" })).volume!;
    const creating = (await bob.quotas.getLimits({ projectId: "" })).limits.find((l) => l.resource === "gigabytes")!;
    assert.equal(creating.inUse + creating.reserved, u0.gigabytes! + 2, "a volume counts from the moment it is accepted");
    await refusal(bob.volumes.createVolume({ name: "q-over", sizeGb: 2, requestId: "q-over" }), "gigabytes", ["size_gb"]);
    const small = (await bob.volumes.createVolume({ name: "q-small", sizeGb: 1, requestId: "q-small" })).volume!;
    const f = await failure(bob.volumes.createVolume({ name: "q-third", sizeGb: 1, requestId: "q-third" }));
    assert.deepEqual(f.quota.map((v) => v.subject).sort(), ["project:bob/gigabytes", "project:bob/volumes"], "both exceeded, both named");
    await settledVolumes(bob, [big.id, small.id], VolumeStatus.VOLUME_STATUS_AVAILABLE);
    assert.deepEqual(await usage(), { ...u0, volumes: u0.volumes! + 2, gigabytes: u0.gigabytes! + 3 });

    // A snapshot takes the size of its volume; an extend, its growth.
    await refusal(bob.volumes.createVolumeSnapshot({ volumeId: small.id, name: "s", requestId: "q-snap-1" }), "gigabytes", []);
    await refusal(bob.volumes.extendVolume({ id: big.id, newSizeGb: 3, requestId: "q-extend" }), "gigabytes", ["new_size_gb"]);
    await admin.quotas.setProjectLimits({ projectId: "bob", limits: { gigabytes: u0.gigabytes! + 4 } });
    const snap = await bob.volumes.createVolumeSnapshot({ volumeId: small.id, name: "s", requestId: "q-snap-2" });
    await refusal(bob.volumes.createVolumeSnapshot({ volumeId: big.id, name: "s2", requestId: "q-snap-3" }), "snapshots", []);
    await bob.operations.waitOperation({ name: snap.operation!.name, timeoutSeconds: 30 });
    assert.deepEqual(await usage(), { ...u0, volumes: u0.volumes! + 2, snapshots: u0.snapshots! + 1, gigabytes: u0.gigabytes! + 4 });

    // Deleted, each frees exactly what it held.
    const done = async (o: { operation?: { name: string } }) => bob.operations.waitOperation({ name: o.operation!.name, timeoutSeconds: 30 });
    await done(await bob.volumes.deleteVolumeSnapshot({ id: snap.snapshot!.id, requestId: "q-snap-drop" }));
    await done(await bob.volumes.deleteVolume({ id: small.id }));
    assert.deepEqual(await usage(), { ...u0, volumes: u0.volumes! + 1, gigabytes: u0.gigabytes! + 2 });
    await done(await bob.volumes.deleteVolume({ id: big.id }));
    assert.deepEqual(await usage(), u0);
    await admin.quotas.resetProjectLimits({ projectId: "bob", resources: [] });
  });

  test("volume types pick the backend; only admins make them; one in use cannot go", async () => {
    assert.equal((await failure(alice.volumes.createVolumeType({ name: "gold", backend: "fake" }))).code, status.PERMISSION_DENIED);
    const bad = await failure(admin.volumes.createVolumeType({ name: "gold", backend: "ceph" }));
    assert.deepEqual([bad.code, bad.fields], [status.INVALID_ARGUMENT, ["backend"]]);
    await admin.volumes.createVolumeType({ name: "gold", backend: "fake", description: "fake pools" });
    await admin.volumes.createVolumeType({ name: "files", backend: "file" });
    assert.equal((await failure(admin.volumes.createVolumeType({ name: "gold" }))).code, status.ALREADY_EXISTS);
    assert.deepEqual((await alice.volumes.listVolumeTypes({})).volumeTypes.map((t) => `${t.name}:${t.backend}`), ["default:", "files:file", "gold:fake"]);

    const onFile = await failure(alice.volumes.createVolume({ sizeGb: 1, volumeType: "files" }));
    assert.equal(onFile.code, status.RESOURCE_EXHAUSTED, "no volume host has a file pool");
    assert.match(onFile.message, /backend file/);
    const gold = (await alice.volumes.createVolume({ sizeGb: 1, volumeType: "gold", requestId: "gold-1" })).volume!;
    assert.equal(gold.volumeType, "gold");
    const inUse = await failure(admin.volumes.deleteVolumeType({ name: "gold" }));
    assert.deepEqual([inUse.code, inUse.reason], [status.FAILED_PRECONDITION, "VOLUME_TYPE_IN_USE"]);
    await admin.volumes.deleteVolumeType({ name: "files" });
    assert.equal((await failure(admin.volumes.deleteVolumeType({ name: "files" }))).code, status.NOT_FOUND);
    await settledVolumes(alice, [gold.id], VolumeStatus.VOLUME_STATUS_AVAILABLE);
    const d = await alice.volumes.deleteVolume({ id: gold.id });
    await alice.operations.waitOperation({ name: d.operation!.name, timeoutSeconds: 30 });
    await admin.volumes.deleteVolumeType({ name: "gold" });
  });

  test("a volume host killed mid-create: the volume is in ERROR by its deadline, and deletable once the host is back", async () => {
    await Promise.all([va, vb].map((host) => admin.hosts.disableService({ host, reason: "test" })));
    await admin.hosts.enableService({ host: vs });
    const created = await alice.volumes.createVolume({ name: "doomed", sizeGb: 2, requestId: "doomed" });
    const v = created.volume!;
    assert.equal(v.status, VolumeStatus.VOLUME_STATUS_CREATING);
    const deadline = created.operation!.deadline!.getTime();
    // Its status allows no other call while it is made.
    const wrong = await failure(alice.volumes.extendVolume({ id: v.id, newSizeGb: 3 }));
    assert.deepEqual([wrong.code, wrong.reason, wrong.metadata.status], [status.FAILED_PRECONDITION, "WRONG_STATUS", "CREATING"]);
    assert.equal((await failure(alice.volumes.deleteVolume({ id: v.id }))).metadata.status, "CREATING");
    await fx.agents.stop(vs, "SIGKILL");

    const [failed] = await settledVolumes(alice, [v.id], VolumeStatus.VOLUME_STATUS_ERROR, 25_000);
    assert.ok(Date.now() - deadline < 5000, "reaped soon after its 12 s deadline");
    assert.equal(failed!.fault!.code, "TASK_TIMED_OUT");
    assert.match(failed!.fault!.message, /CREATING did not finish within 12 s/);
    const op = (await alice.operations.getOperation({ name: created.operation!.name })).operation!;
    assert.equal(op.state, OperationState.OPERATION_STATE_FAILED);
    assert.equal(operationError(op).code, status.DEADLINE_EXCEEDED);
    assert.equal(operationError(op).reason, "TASK_TIMED_OUT");
    // It still holds its size: what its host made is there until deleted.
    assert.equal((await pools()).find((p) => p.host === vs)!.allocatedBytes, 2 * GiB);

    // The host comes back (the late create is past its deadline and is not run); a delete removes it.
    fx.agents.restart(vs, { driverArgs: volumeHost(vs, 10).driverArgs });
    const del = await alice.volumes.deleteVolume({ id: v.id });
    const w = await alice.operations.waitOperation({ name: del.operation!.name, timeoutSeconds: 60 });
    assert.equal(w.operation!.state, OperationState.OPERATION_STATE_SUCCEEDED);
    assert.equal((await failure(alice.volumes.getVolume({ id: v.id }))).code, status.NOT_FOUND);
    assert.equal((await pools()).find((p) => p.host === vs)!.allocatedBytes, 0);
  });
});
