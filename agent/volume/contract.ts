/**
 * The volume backend contract as tests: the fake and file backends run this
 * one suite, so they promise the same things (see `backend.ts`).
 *
 *   volumeBackendContract("fake", { make: async () => new FakeVolumeBackend(…), … });
 *
 * Content is checked through the kit: `write` fills 64 KiB of a volume
 * (the first, or those at an offset) with one byte, `read` says the byte at
 * an offset (the volume's first byte by default). Images are raw files made
 * here (a first 64 KiB of one byte, sparse after it).
 */
import assert from "node:assert/strict";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { DriverError } from "../drivers/errors.js";
import type { ExportInfo, VolumeBackend, VolumeSource } from "./backend.js";

export const MiB = 1024 * 1024;

/** How the suite makes backends. */
export interface VolumeContractKit {
  /** Why the suite cannot run here (it is skipped), or undefined. */
  readonly skip?: string;
  /**
   * A fresh backend of its own state with two pools, "p1" and "p2", of
   * {@link POOL_BYTES} each (and nothing in them).
   */
  make(): Promise<VolumeBackend>;
  /** A new backend on the state of `closed` (already closed), as after an agent restart. */
  restart(closed: VolumeBackend): Promise<VolumeBackend>;
  /** Removes whatever the backend made (after it is closed with its exports stopped). */
  cleanup(backend: VolumeBackend): Promise<void>;
  /** Fills the 64 KiB at `offset` (a multiple of 64 KiB; default 0) of an unexported volume with `byte`. */
  write(backend: VolumeBackend, volumeId: string, byte: number, offset?: number): Promise<void>;
  /** The byte at `offset` (a multiple of 64 KiB; default 0) of an unexported volume (0 for a blank one). */
  read(backend: VolumeBackend, volumeId: string, offset?: number): Promise<number>;
  /**
   * The size a client that connects to `e` now is told: the client is host
   * `as` (default: `e.client`). Rejects if the export does not answer or
   * does not admit that host.
   */
  exportedSize(backend: VolumeBackend, e: ExportInfo, as?: string): Promise<number>;
}

/** The size of each pool the kit makes. */
export const POOL_BYTES = 64 * MiB;

/** Asserts a rejection with this DriverError code. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof DriverError, `expected a DriverError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** A raw image file of `sizeBytes` whose first 64 KiB are `byte`, in a directory removed after the test. */
export async function rawImage(t: TestContext, sizeBytes: number, byte: number): Promise<VolumeSource & { kind: "image" }> {
  const dir = await mkdtemp(join(tmpdir(), "nm-vol-image-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "image.raw");
  const handle = await open(path, "w");
  try {
    await handle.write(Buffer.alloc(64 * 1024, byte), 0, 64 * 1024, 0);
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
  return { kind: "image", path, format: "raw" };
}

const blank: VolumeSource = { kind: "blank" };

/** Registers the contract tests of a volume backend with node:test. */
export function volumeBackendContract(name: string, kit: VolumeContractKit): void {
  const withBackend = (title: string, body: (b: VolumeBackend, t: TestContext, restart: () => Promise<VolumeBackend>) => Promise<void>) =>
    test(title, { skip: kit.skip, timeout: 60_000 }, async (t) => {
      let b = await kit.make();
      t.after(async () => {
        try {
          await b.close({ stopExports: true });
        } finally {
          await kit.cleanup(b);
        }
      });
      const restart = async () => {
        await b.close();
        b = await kit.restart(b);
        return b;
      };
      await body(b, t, restart);
    });

  const provisioned = async (b: VolumeBackend, pool: string) => {
    const p = (await b.pools()).find((x) => x.name === pool);
    assert.ok(p, `pool ${pool} is reported`);
    return p;
  };

  describe(`volume backend contract: ${name}`, () => {
    withBackend("pools report their capacity; an empty pool has nothing provisioned", async (b) => {
      const pools = await b.pools();
      assert.deepEqual(pools.map((p) => p.name).sort(), ["p1", "p2"]);
      for (const p of pools) {
        assert.equal(p.totalBytes, POOL_BYTES);
        assert.equal(p.provisionedBytes, 0);
        assert.ok(p.freeBytes > 0 && p.freeBytes <= p.totalBytes, `free ${p.freeBytes} within the total`);
      }
    });

    withBackend("a blank volume: created, listed, empty; creating it again resolves; another size or pool is VOLUME_EXISTS", async (b) => {
      const info = await b.create("vol-1", "p1", 8 * MiB, blank);
      assert.deepEqual(info, { id: "vol-1", pool: "p1", sizeBytes: 8 * MiB, snapshotIds: [] });
      assert.deepEqual(await b.create("vol-1", "p1", 8 * MiB, blank), info);
      assert.deepEqual((await b.list()).volumes, [info]);
      assert.equal(await kit.read(b, "vol-1"), 0);
      await rejectsWith(b.create("vol-1", "p1", 16 * MiB, blank), "VOLUME_EXISTS");
      await rejectsWith(b.create("vol-1", "p2", 8 * MiB, blank), "VOLUME_EXISTS");
      await rejectsWith(b.create("vol-2", "no-such-pool", 8 * MiB, blank), "NOT_FOUND");
      await rejectsWith(b.create("../etc", "p1", 8 * MiB, blank), "INVALID_ARGUMENT");
      await rejectsWith(b.create("vol-3", "p1", 0, blank), "INVALID_ARGUMENT");
      assert.deepEqual((await b.list()).volumes.map((v) => v.id), ["vol-1"], "refused creates leave nothing");
    });

    withBackend("a volume from an image has its content and at least its size", async (b, t) => {
      const image = await rawImage(t, 4 * MiB, 0x5a);
      const small = await b.create("from-image", "p1", 8 * MiB, image);
      assert.equal(small.sizeBytes, 8 * MiB, "the size asked for, when larger than the image");
      assert.equal(await kit.read(b, "from-image"), 0x5a);
      const big = await rawImage(t, 12 * MiB, 0x33);
      const grown = await b.create("bigger-image", "p2", 2 * MiB, big);
      assert.equal(grown.sizeBytes, 12 * MiB, "the image's size, when larger than the size asked for");
      assert.deepEqual(await b.create("bigger-image", "p2", 2 * MiB, big), grown, "creating it again resolves");
      assert.equal(await kit.read(b, "bigger-image"), 0x33);
      await rejectsWith(b.create("missing-image", "p1", 8 * MiB, { kind: "image", path: join(tmpdir(), "nm-no-such-image.raw"), format: "raw" }), "NOT_FOUND");
    });

    withBackend("snapshots are points in time: a volume from one has the content of then, and outlives its source", async (b) => {
      await b.create("src", "p1", 8 * MiB, blank);
      await kit.write(b, "src", 0x11);
      await b.createSnapshot("src", "snap-1");
      await b.createSnapshot("src", "snap-1");
      await kit.write(b, "src", 0x22);
      await b.createSnapshot("src", "snap-2");
      assert.deepEqual((await b.list()).volumes.find((v) => v.id === "src")?.snapshotIds, ["snap-1", "snap-2"]);
      const copy = await b.create("copy", "p2", 8 * MiB, { kind: "snapshot", volumeId: "src", snapshotId: "snap-1" });
      assert.deepEqual(copy, { id: "copy", pool: "p2", sizeBytes: 8 * MiB, snapshotIds: [] });
      assert.equal(await kit.read(b, "copy"), 0x11, "the copy has the snapshot's content");
      assert.equal(await kit.read(b, "src"), 0x22, "the source keeps its own");
      await rejectsWith(b.create("x", "p1", 8 * MiB, { kind: "snapshot", volumeId: "src", snapshotId: "nope" }), "NOT_FOUND");
      await rejectsWith(b.create("y", "p1", 8 * MiB, { kind: "snapshot", volumeId: "nope", snapshotId: "snap-1" }), "NOT_FOUND");
      await rejectsWith(b.create("self", "p1", 8 * MiB, { kind: "snapshot", volumeId: "self", snapshotId: "snap-1" }), "NOT_FOUND");
      await rejectsWith(b.createSnapshot("nope", "snap-1"), "NOT_FOUND");
      await b.deleteSnapshot("src", "snap-1");
      await b.deleteSnapshot("src", "snap-1");
      await b.deleteSnapshot("nope", "snap-1");
      assert.deepEqual((await b.list()).volumes.find((v) => v.id === "src")?.snapshotIds, ["snap-2"]);
      await b.delete("src");
      assert.equal(await kit.read(b, "copy"), 0x11, "the copy outlives its source");
    });

    withBackend("capacity: virtual sizes are provisioned; what does not fit is POOL_FULL; a delete gives the room back", async (b) => {
      await b.create("a", "p1", 40 * MiB, blank);
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 40 * MiB);
      assert.equal((await provisioned(b, "p2")).provisionedBytes, 0, "other pools are not charged");
      await rejectsWith(b.create("b", "p1", 32 * MiB, blank), "POOL_FULL");
      await rejectsWith(b.extend("a", 72 * MiB), "POOL_FULL");
      await b.create("b", "p1", 24 * MiB, blank);
      const full = await provisioned(b, "p1");
      assert.equal(full.provisionedBytes, POOL_BYTES);
      assert.ok(full.freeBytes >= 0 && full.freeBytes <= full.totalBytes);
      await b.createSnapshot("a", "s");
      await b.delete("a");
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 24 * MiB);
      assert.equal((await b.create("c", "p1", 40 * MiB, blank)).sizeBytes, 40 * MiB, "the room is there again");
    });

    withBackend("extend grows a volume and keeps its content; a smaller size is SHRINK_REFUSED", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x42);
      await b.extend("v", 16 * MiB);
      await b.extend("v", 16 * MiB);
      assert.equal((await b.list()).volumes[0]?.sizeBytes, 16 * MiB);
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 16 * MiB);
      assert.equal(await kit.read(b, "v"), 0x42);
      await rejectsWith(b.extend("v", 8 * MiB), "SHRINK_REFUSED");
      await rejectsWith(b.extend("nope", 8 * MiB), "NOT_FOUND");
      assert.equal((await b.list()).volumes[0]?.sizeBytes, 16 * MiB);
    });

    withBackend("exports per export id, to one host or several at once; again is the same; an id in use for another volume or host is VOLUME_IN_USE", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await b.create("w", "p1", 4 * MiB, blank);
      const e1 = await b.export("v", "att-1", "host-a");
      assert.equal(e1.volumeId, "v");
      assert.equal(e1.attachmentId, "att-1");
      assert.equal(e1.exportName, "att-1");
      assert.equal(e1.client, "host-a");
      assert.ok(e1.host !== "" && e1.port > 0 && e1.port < 65536, `an address: ${e1.host}:${e1.port}`);
      assert.deepEqual(await b.export("v", "att-1", "host-a"), e1);
      const e2 = await b.export("v", "att-2", "host-a");
      assert.equal(e2.exportName, "att-2");
      const e3 = await b.export("v", "att-3", "host-b");
      assert.deepEqual([e3.client, e3.exportName], ["host-b", "att-3"]);
      assert.deepEqual(await b.export("v", "att-3", "host-b"), e3);
      await rejectsWith(b.export("v", "att-1", "host-b"), "VOLUME_IN_USE");
      await rejectsWith(b.export("w", "att-1", "host-a"), "VOLUME_IN_USE");
      await rejectsWith(b.export("nope", "att-4", "host-a"), "NOT_FOUND");
      await rejectsWith(b.export("v", "att-5", "not a host"), "INVALID_ARGUMENT");
      assert.deepEqual((await b.list()).exports.map((e) => e.attachmentId), ["att-1", "att-2", "att-3"]);
      await b.unexport("v", "att-1");
      await b.unexport("v", "att-1");
      await b.unexport("nope", "att-9");
      await b.unexport("v", "att-2");
      assert.deepEqual((await b.list()).exports, [e3], "the other host's export stays");
      await b.unexport("v", "att-3");
      assert.deepEqual((await b.list()).exports, []);
      const e4 = await b.export("v", "att-1", "host-b");
      assert.equal(e4.client, "host-b", "an ended export's id may be used again");
      assert.deepEqual((await b.list()).exports, [e4]);
    });

    withBackend("a volume exported to two hosts at once: each reaches it, a host it is not exported to does not, nor another volume's", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await b.create("w", "p1", 4 * MiB, blank);
      const a = await b.export("v", "att-1", "host-a");
      const bb = await b.export("v", "move-1", "host-b");
      const w = await b.export("w", "att-w", "host-a");
      assert.equal(await kit.exportedSize(b, a), 8 * MiB);
      assert.equal(await kit.exportedSize(b, bb), 8 * MiB);
      assert.equal(await kit.exportedSize(b, w), 4 * MiB);
      await assert.rejects(kit.exportedSize(b, a, "host-c"), "a host the volume is not exported to cannot open it");
      await assert.rejects(kit.exportedSize(b, w, "host-b"), "host-b cannot open a volume exported to host-a only");
      await b.unexport("v", "att-1");
      assert.equal(await kit.exportedSize(b, bb), 8 * MiB, "the target's export serves on once the source's ends");
      await b.extend("v", 16 * MiB);
      assert.equal(await kit.exportedSize(b, bb), 16 * MiB);
      await b.unexport("v", "move-1");
      await b.unexport("w", "att-w");
      assert.deepEqual((await b.list()).exports, []);
    });

    withBackend("extend and snapshots work while exported", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x7e);
      await b.export("v", "att-1", "host-a");
      await b.extend("v", 12 * MiB);
      await b.createSnapshot("v", "live");
      assert.deepEqual((await b.list()).volumes, [{ id: "v", pool: "p1", sizeBytes: 12 * MiB, snapshotIds: ["live"] }]);
      await b.create("from-live", "p2", 12 * MiB, { kind: "snapshot", volumeId: "v", snapshotId: "live" });
      assert.equal(await kit.read(b, "from-live"), 0x7e);
      await b.deleteSnapshot("v", "live");
      assert.deepEqual((await b.list()).volumes.find((v) => v.id === "v")?.snapshotIds, []);
      assert.equal((await b.list()).exports.length, 1, "the export stays");
    });

    withBackend("extend while exported to two hosts: each export answers where it did, a client connecting after is told the new size, and the content stays", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x5e);
      const e1 = await b.export("v", "att-1", "host-a");
      const e2 = await b.export("v", "att-2", "host-b");
      assert.equal(await kit.exportedSize(b, e1), 8 * MiB);
      await b.extend("v", 24 * MiB);
      assert.deepEqual((await b.list()).exports, [e1, e2], "the same exports: host, port and name");
      assert.deepEqual([await kit.exportedSize(b, e1), await kit.exportedSize(b, e2)], [24 * MiB, 24 * MiB]);
      await b.extend("v", 24 * MiB);
      assert.equal(await kit.exportedSize(b, e1), 24 * MiB, "extending to its size again changes nothing");
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 24 * MiB);
      await b.unexport("v", "att-1");
      await b.unexport("v", "att-2");
      assert.equal(await kit.read(b, "v"), 0x5e);
    });

    withBackend("reimage: the image's bytes at the start, zeros after, the same size and snapshots (with their data); again gives the same", async (b, t) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x11);
      await kit.write(b, "v", 0x12, 6 * MiB);
      await b.createSnapshot("v", "before");
      const image = await rawImage(t, 4 * MiB, 0x5a);
      await b.reimage("v", image);
      const after = { id: "v", pool: "p1", sizeBytes: 8 * MiB, snapshotIds: ["before"] };
      assert.deepEqual((await b.list()).volumes, [after], "id, pool, size and snapshots stay");
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 8 * MiB);
      const content = async () => [await kit.read(b, "v"), await kit.read(b, "v", 64 * 1024), await kit.read(b, "v", 6 * MiB)];
      assert.deepEqual(await content(), [0x5a, 0, 0], "the image's first 64 KiB, its zeros, and zeros past its end");
      await b.reimage("v", image);
      assert.deepEqual(await content(), [0x5a, 0, 0], "reimaging again gives the same content");
      await kit.write(b, "v", 0x13);
      await kit.write(b, "v", 0x14, 6 * MiB);
      await b.reimage("v", image);
      assert.deepEqual(await content(), [0x5a, 0, 0], "what was written since is gone again");
      assert.deepEqual((await b.list()).volumes, [after]);
      await b.create("then", "p2", 8 * MiB, { kind: "snapshot", volumeId: "v", snapshotId: "before" });
      assert.deepEqual([await kit.read(b, "then"), await kit.read(b, "then", 6 * MiB)], [0x11, 0x12], "the snapshot still has the data of before");
    });

    withBackend("reimage of an exported volume: the same exports answer, at the same size, and the volume has the image's content", async (b, t) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x21, 2 * MiB);
      const e1 = await b.export("v", "att-1", "host-a");
      const e2 = await b.export("v", "move-1", "host-b");
      const image = await rawImage(t, 6 * MiB, 0x6b);
      await b.reimage("v", image);
      assert.deepEqual((await b.list()).exports, [e1, e2], "the same exports: host, port, name and client");
      assert.deepEqual([await kit.exportedSize(b, e1), await kit.exportedSize(b, e2)], [8 * MiB, 8 * MiB]);
      await assert.rejects(kit.exportedSize(b, e1, "host-c"), "a host the volume is not exported to is still refused");
      await b.reimage("v", image);
      assert.deepEqual((await b.list()).exports, [e1, e2]);
      await b.unexport("v", "att-1");
      await b.unexport("v", "move-1");
      assert.deepEqual([await kit.read(b, "v"), await kit.read(b, "v", 2 * MiB)], [0x6b, 0]);
    });

    withBackend("reimage refuses an image larger than the volume (IMAGE_TOO_LARGE), an unknown volume (NOT_FOUND) and a missing image, changing nothing", async (b, t) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await kit.write(b, "v", 0x31);
      await kit.write(b, "v", 0x32, 7 * MiB);
      await b.createSnapshot("v", "s1");
      const before = await b.list();
      const big = await rawImage(t, 8 * MiB + 64 * 1024, 0x41);
      await rejectsWith(b.reimage("v", big), "IMAGE_TOO_LARGE");
      const fits = await rawImage(t, 8 * MiB, 0x42);
      await rejectsWith(b.reimage("nope", fits), "NOT_FOUND");
      await rejectsWith(b.reimage("v", { path: join(tmpdir(), "nm-no-such-image.raw"), format: "raw" }), "NOT_FOUND");
      await rejectsWith(b.reimage("../v", fits), "INVALID_ARGUMENT");
      assert.deepEqual(await b.list(), before);
      assert.deepEqual([await kit.read(b, "v"), await kit.read(b, "v", 7 * MiB)], [0x31, 0x32], "the refused reimages changed nothing");
      await b.reimage("v", fits);
      assert.deepEqual([await kit.read(b, "v"), await kit.read(b, "v", 7 * MiB)], [0x42, 0], "an image of the volume's size fits");
    });

    withBackend("delete removes a volume with its snapshots and exports; again resolves", async (b) => {
      await b.create("v", "p1", 8 * MiB, blank);
      await b.createSnapshot("v", "s1");
      await b.export("v", "att-1", "host-a");
      await b.delete("v");
      await b.delete("v");
      assert.deepEqual(await b.list(), { volumes: [], exports: [] });
      assert.equal((await provisioned(b, "p1")).provisionedBytes, 0);
      const again = await b.create("v", "p1", 4 * MiB, blank);
      assert.deepEqual(again.snapshotIds, [], "a new volume of that id has none of the old one's snapshots");
      assert.deepEqual((await b.export("v", "att-2", "host-b")).client, "host-b", "nor its exports");
    });

    withBackend("after a restart the new backend lists the same volumes and exports, and can end them", async (b, _t, restart) => {
      await b.create("v1", "p1", 8 * MiB, blank);
      await b.create("v2", "p2", 4 * MiB, blank);
      await b.createSnapshot("v1", "s1");
      const e = await b.export("v1", "att-1", "host-a");
      const moved = await b.export("v1", "move-1", "host-b");
      const before = await b.list();
      const pools = await b.pools();
      const again = await restart();
      assert.deepEqual(await again.list(), before);
      assert.deepEqual(
        (await again.pools()).map((p) => [p.name, p.provisionedBytes]),
        pools.map((p) => [p.name, p.provisionedBytes]),
      );
      assert.deepEqual(await again.export("v1", "att-1", "host-a"), e, "the export is the same one");
      assert.equal(await kit.exportedSize(again, moved), 8 * MiB, "the other host's export still serves");
      await again.unexport("v1", "att-1");
      assert.deepEqual((await again.list()).exports, [moved]);
      await again.unexport("v1", "move-1");
      await again.delete("v2");
      assert.deepEqual((await again.list()).exports, []);
      assert.deepEqual((await again.list()).volumes.map((v) => v.id), ["v1"]);
    });
  });
}
