import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { appendFile, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { GIB } from "../../controller/domain/volume-ops.js";
import { FakeDriver } from "../drivers/fake/fake-driver.js";
import { DirectoryImageStore, type ImageStore } from "../drivers/libvirt/image-store.js";
import { FakeVolumeBackend, type FakeVolumeBackendOptions } from "../volume/fake/fake-backend.js";
import { OpExecutor, type OpExecutorOptions } from "./executor.js";
import { testVolume, testVolumeOp } from "./test-ops.js";

let stateDir: string;
let imageDir: string;
const open: OpExecutor[] = [];
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "volume-ops-"));
  imageDir = join(stateDir, "store");
  await mkdir(imageDir);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
  await rm(stateDir, { recursive: true, force: true });
});

function backend(options: Partial<FakeVolumeBackendOptions> = {}): FakeVolumeBackend {
  return new FakeVolumeBackend({ pools: [{ name: "p1", totalBytes: 10 * GIB }], ...options });
}

async function executor(volumes: FakeVolumeBackend | undefined, options: Partial<OpExecutorOptions> = {}): Promise<OpExecutor> {
  const driver = new FakeDriver({ statePath: join(stateDir, "domains.json") });
  const images: ImageStore = new DirectoryImageStore(imageDir);
  const ex = await OpExecutor.open({ driver, stateDir, fsync: false, volumes, images, ...options });
  open.push(ex);
  return ex;
}

/** A raw image of 4 KiB whose first byte is `byte`, in the store; resolves its SHA-256. */
async function rawImage(id: string, byte: number): Promise<string> {
  const bytes = Buffer.alloc(4096, 0);
  bytes[0] = byte;
  await writeFile(join(imageDir, id), bytes);
  return createHash("sha256").update(bytes).digest("hex");
}

async function sizeOnBackend(volumes: FakeVolumeBackend, id: string): Promise<number | undefined> {
  return (await volumes.list()).volumes.find((v) => v.id === id)?.sizeBytes;
}

async function snapshotsOnBackend(volumes: FakeVolumeBackend, id: string): Promise<readonly string[] | undefined> {
  return (await volumes.list()).volumes.find((v) => v.id === id)?.snapshotIds;
}

describe("Volume ops: what each kind does on the backend", () => {
  test("a blank create makes the volume in its pool and reports its id and size, and no server", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume({ sizeBytes: 2 * GIB });
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.serverId, "");
    assert.equal(outcome.volumeId, vol.id);
    assert.deepEqual(outcome.volume, { sizeBytes: 2 * GIB });
    assert.equal(await sizeOnBackend(volumes, vol.id), 2 * GIB);
    assert.equal((await volumes.pools())[0]?.freeBytes, 8 * GIB);
  });

  test("a create from a snapshot copies the snapshot's content", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const source = testVolume();
    await ex.execute(testVolumeOp(source, { kind: "create_volume" }));
    await volumes.write(source.id, 7);
    await volumes.createSnapshot(source.id, "snap-1");
    await volumes.write(source.id, 9); // after the snapshot: not copied
    const copy = testVolume();
    const { outcome } = await ex.execute(testVolumeOp(copy, { kind: "create_volume", source: { kind: "snapshot", volumeId: source.id, snapshotId: "snap-1" } }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual(outcome.volume, { sizeBytes: GIB });
    assert.equal(await volumes.read(copy.id), 7);
    const missing = await ex.execute(testVolumeOp(testVolume(), { kind: "create_volume", source: { kind: "snapshot", volumeId: source.id, snapshotId: "nope" } }));
    assert.deepEqual(missing.outcome.failure, { code: "NOT_FOUND", message: `volume ${source.id} has no snapshot nope`, retryable: false });
  });

  test("a create from an image fetches it through the image store, checks it, copies it and removes the fetched file", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const checksum = await rawImage("img-1", 0x42);
    const vol = testVolume({ sizeBytes: 1024 });
    const image = { id: "img-1", name: "tiny", diskFormat: "raw", checksum };
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "create_volume", source: { kind: "image", image } }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual(outcome.volume, { sizeBytes: 4096 }, "the image is larger than asked: the volume is the image's size");
    assert.equal(await volumes.read(vol.id), 0x42, "the image's bytes");
    assert.deepEqual(await readdir(join(stateDir, "volume-images")), [], "the fetched file is gone");
  });

  test("an image whose bytes do not match its checksum makes no volume and leaves no file", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    await rawImage("img-1", 0x42);
    const vol = testVolume();
    const image = { id: "img-1", name: "tiny", diskFormat: "raw", checksum: "0".repeat(64) };
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "create_volume", source: { kind: "image", image } }));
    assert.equal(outcome.failure?.code, "IMAGE_CHECKSUM_MISMATCH");
    assert.equal(outcome.failure?.retryable, false);
    assert.equal(outcome.volume, undefined);
    assert.equal(await sizeOnBackend(volumes, vol.id), undefined);
    assert.deepEqual(await readdir(join(stateDir, "volume-images")), []);
  });

  test("an image of another format than qcow2 or raw, or no image store, is a non-retryable failure that makes nothing", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const checksum = await rawImage("img-1", 1);
    const vmdk = { id: "img-1", name: "tiny", diskFormat: "vmdk", checksum };
    const { outcome } = await ex.execute(testVolumeOp(testVolume(), { kind: "create_volume", source: { kind: "image", image: vmdk } }));
    assert.deepEqual(outcome.failure, { code: "IMAGE_FORMAT_UNSUPPORTED", message: "image img-1 is vmdk; a volume is made from a qcow2 or raw image", retryable: false });
    const noStore = await executor(volumes, { stateDir: join(stateDir, "other"), images: undefined });
    const raw = { ...vmdk, diskFormat: "raw" };
    const got = await noStore.execute(testVolumeOp(testVolume(), { kind: "create_volume", source: { kind: "image", image: raw } }));
    assert.equal(got.outcome.failure?.code, "NO_IMAGE_STORE");
    assert.equal(got.outcome.failure?.retryable, false);
    assert.deepEqual((await volumes.list()).volumes, []);
  });

  test("an unknown image is the store's non-retryable IMAGE_NOT_FOUND", async () => {
    const ex = await executor(backend());
    const image = { id: "img-none", name: "gone", diskFormat: "qcow2", checksum: "" };
    const { outcome } = await ex.execute(testVolumeOp(testVolume(), { kind: "create_volume", source: { kind: "image", image } }));
    assert.equal(outcome.failure?.code, "IMAGE_NOT_FOUND");
    assert.equal(outcome.failure?.retryable, false);
  });

  test("a delete removes the volume; a delete of an unknown volume succeeds; neither reports a size", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "delete_volume" }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.volume, undefined);
    assert.equal(outcome.volumeId, vol.id);
    assert.equal(await sizeOnBackend(volumes, vol.id), undefined);
    const unknown = await ex.execute(testVolumeOp(testVolume(), { kind: "delete_volume" }));
    assert.equal(unknown.outcome.failure, undefined);
  });

  test("an extend grows the volume and reports its new size; a shrink or an unknown volume is refused, not retryable", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 3 * GIB }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual(outcome.volume, { sizeBytes: 3 * GIB });
    assert.equal(await sizeOnBackend(volumes, vol.id), 3 * GIB);
    const shrink = await ex.execute(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: GIB }));
    assert.equal(shrink.outcome.failure?.code, "SHRINK_REFUSED");
    assert.equal(shrink.outcome.failure?.retryable, false);
    assert.equal(shrink.outcome.volume, undefined);
    const unknown = await ex.execute(testVolumeOp(testVolume(), { kind: "extend_volume", sizeBytes: 2 * GIB }));
    assert.equal(unknown.outcome.failure?.code, "NOT_FOUND");
    assert.equal(unknown.outcome.failure?.retryable, false);
  });

  test("a grow of an attached volume grows it while it stays exported, and reports its new size and the server", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const exported = await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-1", serverId: "server-1" }));
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "grow_volume", sizeBytes: 3 * GIB, serverId: "server-1" }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual([outcome.volume, outcome.serverId, outcome.volumeId], [{ sizeBytes: 3 * GIB }, "server-1", vol.id]);
    assert.equal(await sizeOnBackend(volumes, vol.id), 3 * GIB);
    const { exports } = await volumes.list();
    assert.deepEqual(exports.map((e) => ({ host: e.host, port: e.port, exportName: e.exportName })), [exported.outcome.volume?.export], "the export is still where it was");
    const again = await ex.execute(testVolumeOp(vol, { kind: "grow_volume", sizeBytes: 3 * GIB, serverId: "server-1" }));
    assert.deepEqual([again.outcome.failure, again.outcome.volume], [undefined, { sizeBytes: 3 * GIB }], "growing to its size again succeeds");
    const shrink = await ex.execute(testVolumeOp(vol, { kind: "grow_volume", sizeBytes: GIB }));
    assert.deepEqual([shrink.outcome.failure?.code, shrink.outcome.failure?.retryable], ["SHRINK_REFUSED", false]);
  });

  test("a snapshot's create takes it and reports the volume's size; its delete removes it and reports no volume", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    await ex.execute(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 2 * GIB }));
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "create_volume_snapshot", snapshotId: "snap-1" }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual([outcome.serverId, outcome.volumeId, outcome.volume], ["", vol.id, { sizeBytes: 2 * GIB }]);
    assert.deepEqual(await snapshotsOnBackend(volumes, vol.id), ["snap-1"]);
    const again = await ex.execute(testVolumeOp(vol, { kind: "create_volume_snapshot", snapshotId: "snap-1" }));
    assert.deepEqual([again.replayed, again.outcome.failure, again.outcome.volume], [false, undefined, { sizeBytes: 2 * GIB }], "one that exists is taken");
    const del = await ex.execute(testVolumeOp(vol, { kind: "delete_volume_snapshot", snapshotId: "snap-1" }));
    assert.deepEqual([del.outcome.failure, del.outcome.volumeId, del.outcome.volume], [undefined, vol.id, undefined]);
    assert.deepEqual(await snapshotsOnBackend(volumes, vol.id), []);
  });

  test("a delete of an unknown snapshot, or of one of an unknown volume, succeeds; a snapshot of an unknown volume is NOT_FOUND, not retryable", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const unknown = await ex.execute(testVolumeOp(vol, { kind: "delete_volume_snapshot", snapshotId: "never" }));
    assert.equal(unknown.outcome.failure, undefined);
    const noVolume = await ex.execute(testVolumeOp(testVolume(), { kind: "delete_volume_snapshot" }));
    assert.equal(noVolume.outcome.failure, undefined);
    const ghost = testVolume();
    const take = await ex.execute(testVolumeOp(ghost, { kind: "create_volume_snapshot" }));
    assert.deepEqual(take.outcome.failure, { code: "NOT_FOUND", message: `no volume ${ghost.id} on this host`, retryable: false });
    assert.equal(take.outcome.volume, undefined);
  });

  test("a full pool is retryable (another pool or host may have room); a backend fault keeps its code", async () => {
    const volumes = backend({ pools: [{ name: "p1", totalBytes: GIB }], faults: { delete: { error: "disk gone", code: "DELETE_FAILED" } } });
    const ex = await executor(volumes);
    const big = await ex.execute(testVolumeOp(testVolume({ sizeBytes: 2 * GIB }), { kind: "create_volume" }));
    assert.equal(big.outcome.failure?.code, "POOL_FULL");
    assert.equal(big.outcome.failure?.retryable, true);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const grow = await ex.execute(testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 2 * GIB }));
    assert.deepEqual([grow.outcome.failure?.code, grow.outcome.failure?.retryable], ["POOL_FULL", true]);
    const del = await ex.execute(testVolumeOp(vol, { kind: "delete_volume" }));
    assert.deepEqual(del.outcome.failure, { code: "DELETE_FAILED", message: "disk gone", retryable: false });
  });
});

describe("Volume ops: exporting a volume for an attachment", () => {
  const where = (attachmentId: string, port = 10809) => ({ host: "127.0.0.1", port, exportName: attachmentId });

  test("an export reports where the compute host opens it and the server; the same attachment again answers the same", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const exp = testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-1", serverId: "srv-1" });
    const { outcome } = await ex.execute(exp);
    assert.equal(outcome.failure, undefined);
    assert.deepEqual([outcome.serverId, outcome.volumeId], ["srv-1", vol.id]);
    assert.deepEqual(outcome.volume, { export: where("att-1") });
    assert.deepEqual((await volumes.list()).exports.map((e) => [e.attachmentId, e.client]), [["att-1", "compute-1"]]);
    const again = await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-1", serverId: "srv-1" }));
    assert.equal(again.replayed, false);
    assert.deepEqual(again.outcome.volume, { export: where("att-1") });
    const redelivered = await ex.execute(exp);
    assert.equal(redelivered.replayed, true);
    assert.deepEqual(redelivered.outcome, outcome);
  });

  test("a volume is exported to a second host beside the first; an export id in use for another host is VOLUME_IN_USE, not retryable; an unknown volume NOT_FOUND", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-1" }));
    const second = await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "move-1", client: "compute-2" }));
    assert.deepEqual(second.outcome.volume, { export: where("move-1", 10810) });
    assert.deepEqual((await volumes.list()).exports.map((e) => [e.attachmentId, e.client]), [["att-1", "compute-1"], ["move-1", "compute-2"]]);
    const taken = await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-2" }));
    assert.deepEqual([taken.outcome.failure?.code, taken.outcome.failure?.retryable, taken.outcome.volume], ["VOLUME_IN_USE", false, undefined]);
    const unknown = await ex.execute(testVolumeOp(testVolume(), { kind: "export_volume" }));
    assert.deepEqual([unknown.outcome.failure?.code, unknown.outcome.failure?.retryable], ["NOT_FOUND", false]);
  });

  test("an unexport ends the export, after which another host may have it; an unknown one succeeds; neither reports a volume", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "compute-1" }));
    const { outcome } = await ex.execute(testVolumeOp(vol, { kind: "unexport_volume", attachmentId: "att-1", serverId: "srv-1" }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.volume, undefined);
    assert.equal(outcome.serverId, "srv-1");
    assert.deepEqual((await volumes.list()).exports, []);
    const moved = await ex.execute(testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-2", client: "compute-2" }));
    assert.deepEqual(moved.outcome.volume, { export: where("att-2", 10810) });
    const unknown = await ex.execute(testVolumeOp(testVolume(), { kind: "unexport_volume", attachmentId: "att-never" }));
    assert.equal(unknown.outcome.failure, undefined);
  });
});

describe("Volume ops: at most once, in order, in time", () => {
  /** What a crash during the backend call leaves: `started` journaled, no `finished`. */
  async function journalStarted(opId: string, volumeId: string, kind: string): Promise<void> {
    const line = { t: "started", opId, serverId: "", volumeId, kind, time: new Date().toISOString() };
    await appendFile(join(stateDir, "ops-journal.jsonl"), `${JSON.stringify(line)}\n`);
  }

  test("a redelivered op whose result is journaled is re-reported without calling the backend, also after a restart", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    const create = testVolumeOp(vol, { kind: "create_volume" });
    const first = await ex.execute(create);
    await volumes.delete(vol.id); // were the create run again, the volume would be back
    const again = await ex.execute(create);
    assert.equal(again.replayed, true);
    assert.deepEqual(again.outcome, first.outcome);
    await ex.close();
    const restarted = await executor(volumes);
    const afterRestart = await restarted.execute(create);
    assert.equal(afterRestart.replayed, true);
    assert.deepEqual(afterRestart.outcome, first.outcome);
    assert.equal(await sizeOnBackend(volumes, vol.id), undefined, "the backend was not asked again");
  });

  test("a redelivered snapshot op is re-reported without calling the backend again", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    await ex.execute(testVolumeOp(vol, { kind: "create_volume" }));
    const take = testVolumeOp(vol, { kind: "create_volume_snapshot", snapshotId: "snap-1" });
    const first = await ex.execute(take);
    await volumes.deleteSnapshot(vol.id, "snap-1"); // were the create run again, the snapshot would be back
    const again = await ex.execute(take);
    assert.deepEqual([again.replayed, again.outcome], [true, first.outcome]);
    assert.deepEqual(await snapshotsOnBackend(volumes, vol.id), []);
    await volumes.createSnapshot(vol.id, "snap-2");
    const drop = testVolumeOp(vol, { kind: "delete_volume_snapshot", snapshotId: "snap-2" });
    const dropped = await ex.execute(drop);
    await volumes.createSnapshot(vol.id, "snap-2"); // were the delete run again, the snapshot would be gone
    const dropAgain = await ex.execute(drop);
    assert.deepEqual([dropAgain.replayed, dropAgain.outcome], [true, dropped.outcome]);
    assert.deepEqual(await snapshotsOnBackend(volumes, vol.id), ["snap-2"]);
  });

  test("an op started but not finished before a restart is run again", async () => {
    const volumes = backend();
    const vol = testVolume();
    const create = testVolumeOp(vol, { kind: "create_volume" });
    await journalStarted(create.opId, vol.id, "create_volume");
    const ex = await executor(volumes);
    const { outcome, reconciled } = await ex.execute(create);
    assert.equal(reconciled, true);
    assert.equal(outcome.failure, undefined);
    assert.equal(await sizeOnBackend(volumes, vol.id), GIB);
    // The extend had reached the backend when the agent died: running it again finds it done.
    const extend = testVolumeOp(vol, { kind: "extend_volume", sizeBytes: 2 * GIB });
    await volumes.extend(vol.id, 2 * GIB);
    await journalStarted(extend.opId, vol.id, "extend_volume");
    await ex.close();
    const restarted = await executor(volumes);
    const again = await restarted.execute(extend);
    assert.equal(again.reconciled, true);
    assert.equal(again.outcome.failure, undefined);
    assert.deepEqual(again.outcome.volume, { sizeBytes: 2 * GIB });
  });

  test("an op past its deadline is not started and finishes DEADLINE_EXCEEDED; a delete, which has none, runs late", async () => {
    const volumes = backend();
    const ex = await executor(volumes);
    const vol = testVolume();
    const late = { ...testVolumeOp(vol, { kind: "create_volume" }), deadline: new Date(Date.now() - 1_000) };
    const { outcome } = await ex.execute(late);
    assert.equal(outcome.failure?.code, "DEADLINE_EXCEEDED");
    assert.equal(outcome.failure?.retryable, false);
    assert.equal(await sizeOnBackend(volumes, vol.id), undefined, "not created");
    assert.equal((await ex.execute(late)).replayed, true, "journaled");
    const inTime = { ...testVolumeOp(vol, { kind: "create_volume" }), deadline: new Date(Date.now() + 60_000) };
    assert.equal((await ex.execute(inTime)).outcome.failure, undefined);
    const lateSnapshot = { ...testVolumeOp(vol, { kind: "create_volume_snapshot" }), deadline: new Date(Date.now() - 1_000) };
    assert.equal((await ex.execute(lateSnapshot)).outcome.failure?.code, "DEADLINE_EXCEEDED");
    assert.deepEqual(await snapshotsOnBackend(volumes, vol.id), [], "not taken");
  });

  test("ops of one volume run in the order they came; another volume's do not wait for them", async () => {
    const slow = testVolume();
    const volumes = backend({ faults: { create: { volumeId: slow.id, delayMs: 150 } } });
    const ex = await executor(volumes);
    const fast = testVolume();
    const finished: string[] = [];
    const track = (what: string, p: Promise<unknown>) => p.then(() => finished.push(what));
    await Promise.all([
      track("create slow", ex.execute(testVolumeOp(slow, { kind: "create_volume" }))),
      track("extend slow", ex.execute(testVolumeOp(slow, { kind: "extend_volume", sizeBytes: 2 * GIB }))),
      track("create fast", ex.execute(testVolumeOp(fast, { kind: "create_volume" }))),
    ]);
    assert.deepEqual(finished, ["create fast", "create slow", "extend slow"]);
    assert.equal(await sizeOnBackend(volumes, slow.id), 2 * GIB, "the extend found the volume its create made");
  });
});

describe("Volume ops on a host without a volume backend", () => {
  test("are answered NO_VOLUME_BACKEND, not retryable, with the volume id, and not journaled", async () => {
    const ex = await executor(undefined);
    const vol = testVolume();
    const op = testVolumeOp(vol, { kind: "create_volume" });
    const { outcome, replayed } = await ex.execute(op);
    assert.equal(replayed, false);
    assert.equal(outcome.failure?.code, "NO_VOLUME_BACKEND");
    assert.equal(outcome.failure?.retryable, false);
    assert.equal(outcome.volumeId, vol.id);
    assert.equal(outcome.serverId, "");
    assert.equal((await ex.execute(op)).replayed, false, "nothing ran, so nothing was journaled");
    assert.equal(ex.inFlight, 0);
    const exp = await ex.execute(testVolumeOp(vol, { kind: "export_volume", serverId: "srv-1" }));
    assert.deepEqual([exp.outcome.failure?.code, exp.outcome.volumeId, exp.outcome.serverId], ["NO_VOLUME_BACKEND", vol.id, "srv-1"]);
    for (const kind of ["create_volume_snapshot", "delete_volume_snapshot"] as const) {
      const snap = await ex.execute(testVolumeOp(vol, { kind }));
      assert.deepEqual([snap.outcome.failure?.code, snap.outcome.failure?.retryable, snap.outcome.volumeId], ["NO_VOLUME_BACKEND", false, vol.id], kind);
    }
  });
});

describe("Invalid volume op messages", () => {
  test("are answered INVALID_OP with the volume id they carried", async () => {
    const ex = await executor(backend());
    const { outcome } = await ex.execute({ opId: randomUUID(), serverId: "", volumeId: "vol-1", problem: "volume.pool is empty" });
    assert.deepEqual(outcome.failure, { code: "INVALID_OP", message: "volume.pool is empty", retryable: false });
    assert.equal(outcome.volumeId, "vol-1");
  });
});
