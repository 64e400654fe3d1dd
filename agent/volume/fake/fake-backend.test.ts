/** The fake volume backend: the contract, its state across restarts, injected faults, and many hosts at once. */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { VolumeBackend } from "../backend.js";
import { MiB, POOL_BYTES, rawImage, rejectsWith, volumeBackendContract } from "../contract.js";
import { parseVolumeFaults } from "./faults.js";
import { FakeVolumeBackend, type FakeVolumeBackendOptions } from "./fake-backend.js";

const dirs = new WeakMap<VolumeBackend, string>();
const pools = [
  { name: "p1", totalBytes: POOL_BYTES },
  { name: "p2", totalBytes: POOL_BYTES },
];

volumeBackendContract("fake", {
  make: async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "nm-fake-vol-"));
    const b = new FakeVolumeBackend({ pools, stateDir });
    dirs.set(b, stateDir);
    return b;
  },
  restart: async (closed) => {
    const stateDir = dirs.get(closed);
    assert.ok(stateDir);
    const b = new FakeVolumeBackend({ pools, stateDir });
    dirs.set(b, stateDir);
    return b;
  },
  cleanup: async (b) => {
    const dir = dirs.get(b);
    if (dir) await rm(dir, { recursive: true, force: true });
  },
  write: (b, id, byte, offset) => (b as FakeVolumeBackend).write(id, byte, offset),
  read: (b, id, offset) => (b as FakeVolumeBackend).read(id, offset),
  // The fake serves nothing: a client would be told the size of the volume the listed export names, if the volume is exported to it.
  exportedSize: async (b, e, as = e.client) => {
    const { volumes, exports } = await b.list();
    assert.ok(exports.some((x) => x.attachmentId === e.attachmentId && x.host === e.host && x.port === e.port), `export ${e.attachmentId} is listed`);
    assert.ok(exports.some((x) => x.volumeId === e.volumeId && x.client === as), `volume ${e.volumeId} is exported to ${as}`);
    const v = volumes.find((x) => x.id === e.volumeId);
    assert.ok(v, `volume ${e.volumeId} is listed`);
    return v.sizeBytes;
  },
});

const fake = (options: Partial<FakeVolumeBackendOptions> = {}) => new FakeVolumeBackend({ pools, ...options });

test("state: a state directory that is not there yet is made at the first change, and a new backend finds the volume in it", async () => {
  const root = await mkdtemp(join(tmpdir(), "nm-fake-vol-"));
  try {
    const stateDir = join(root, "agent", "volumes");
    await fake({ stateDir }).create("v", "p1", MiB, { kind: "blank" });
    assert.deepEqual((await fake({ stateDir }).list()).volumes.map((v) => v.id), ["v"]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("faults: a create fails the times configured, for the volume named, then works; the failed call leaves nothing", async () => {
  const b = fake({ faults: parseVolumeFaults({ create: { volumeId: "v1", error: "disk gone", retryable: true, failTimes: 1 } }) });
  await assert.rejects(b.create("v1", "p1", MiB, { kind: "blank" }), (err: Error & { code?: string; retryable?: boolean }) => {
    assert.equal(err.code, "CREATE_FAILED");
    assert.equal(err.retryable, true);
    assert.match(err.message, /disk gone/);
    return true;
  });
  assert.deepEqual((await b.list()).volumes, []);
  await b.create("v2", "p1", MiB, { kind: "blank" });
  await b.create("v1", "p1", MiB, { kind: "blank" });
  assert.deepEqual((await b.list()).volumes.map((v) => v.id), ["v1", "v2"]);
});

test("faults: codes of the contract can be injected, and every call of a method fails without failTimes", async () => {
  const b = fake({ faults: parseVolumeFaults({ export: { code: "POOL_FULL", error: "no" }, createSnapshot: { error: "io" } }) });
  await b.create("v", "p1", MiB, { kind: "blank" });
  await rejectsWith(b.export("v", "a1", "host-a"), "POOL_FULL");
  await rejectsWith(b.export("v", "a1", "host-a"), "POOL_FULL");
  await rejectsWith(b.createSnapshot("v", "s"), "CREATE_SNAPSHOT_FAILED");
  assert.deepEqual(await b.list(), { volumes: [{ id: "v", pool: "p1", sizeBytes: MiB, snapshotIds: [] }], exports: [] });
});

test("reimage: faults can be injected; the fake records the image it was given and keeps it across a restart", async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), "nm-fake-vol-"));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const b = fake({ stateDir, faults: parseVolumeFaults({ reimage: { volumeId: "v", error: "image store gone", retryable: true, failTimes: 1 } }) });
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  await b.write("v", 0x11);
  await b.write("v", 0x12, 7 * MiB);
  const image = await rawImage(t, 2 * MiB, 0x5a);
  await rejectsWith(b.reimage("v", image), "REIMAGE_FAILED");
  assert.deepEqual([await b.read("v"), await b.read("v", 7 * MiB), await b.imageOf("v")], [0x11, 0x12, undefined], "the failed call changed nothing");
  await b.reimage("v", image);
  const again = fake({ stateDir });
  assert.deepEqual([await again.read("v"), await again.read("v", 7 * MiB)], [0x5a, 0]);
  assert.deepEqual(await again.imageOf("v"), { path: image.path, format: "raw" });
  await rejectsWith(again.read("v", 8 * MiB), "INVALID_ARGUMENT");
});

test("state of the earlier one-byte model loads: the byte is the first block's", async (t) => {
  const stateDir = await mkdtemp(join(tmpdir(), "nm-fake-vol-"));
  t.after(() => rm(stateDir, { recursive: true, force: true }));
  const volume = { id: "v", pool: "p1", requestedBytes: MiB, source: { kind: "blank" }, sizeBytes: MiB, content: 0x2a, snapshots: [{ id: "s", sizeBytes: MiB, content: 0x2b }] };
  await writeFile(join(stateDir, "volumes.json"), JSON.stringify({ volumes: [volume], exports: [], ports: [] }));
  const b = fake({ stateDir });
  assert.deepEqual([await b.read("v"), await b.read("v", 512 * 1024)], [0x2a, 0]);
  await b.create("from-s", "p2", MiB, { kind: "snapshot", volumeId: "v", snapshotId: "s" });
  assert.equal(await b.read("from-s"), 0x2b);
});

test("faults: bad specs are refused with what is wrong", () => {
  assert.throws(() => parseVolumeFaults({ resize: {} }), /unknown method "resize"/);
  assert.throws(() => parseVolumeFaults({ create: { failtimes: 1 } }), /unknown key "failtimes"/);
  assert.throws(() => parseVolumeFaults({ create: { delayMs: -1 } }), /delayMs must be a non-negative number/);
  assert.throws(() => parseVolumeFaults([]), /keyed by method/);
});

test("faults: a delay holds the call it is given for, not the others", async (t) => {
  const b = fake({ faults: parseVolumeFaults({ create: { volumeId: "slow", delayMs: 1_000 } }) });
  const started = Date.now();
  const slow = b.create("slow", "p1", MiB, { kind: "blank" });
  await b.create("quick", "p2", MiB, { kind: "blank" });
  assert.deepEqual((await b.list()).volumes.map((v) => v.id), ["quick"], "the quick one is done while the slow one waits");
  await slow;
  t.diagnostic(`the delayed create took ${Date.now() - started} ms`);
  assert.deepEqual((await b.list()).volumes.map((v) => v.id), ["quick", "slow"]);
});

test("concurrent creates in one pool: exactly those that fit are made, the rest are POOL_FULL", async () => {
  const b = fake();
  const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => b.create(`v${i}`, "p1", 10 * MiB, { kind: "blank" })));
  const made = results.filter((r) => r.status === "fulfilled").length;
  assert.equal(made, 6, "64 MiB hold six volumes of 10 MiB");
  for (const r of results) if (r.status === "rejected") assert.equal((r.reason as { code: string }).code, "POOL_FULL");
  const p1 = (await b.pools()).find((p) => p.name === "p1");
  assert.deepEqual(p1, { name: "p1", totalBytes: POOL_BYTES, freeBytes: 4 * MiB, provisionedBytes: 60 * MiB });
});

test("many hosts: 200 fake volume hosts each create, snapshot and export volumes, and each accounts for its own", async (t) => {
  const started = Date.now();
  const hosts = Array.from({ length: 200 }, () => fake({ pools: [{ name: "pool", totalBytes: 100 * MiB }] }));
  await Promise.all(
    hosts.map(async (b, h) => {
      for (let i = 0; i < 5; i++) {
        const id = `h${h}-v${i}`;
        await b.create(id, "pool", (i + 1) * MiB, { kind: "blank" });
        await b.createSnapshot(id, "s");
        await b.export(id, `${id}-att`, `compute-${h % 7}`);
      }
    }),
  );
  t.diagnostic(`1000 volumes on 200 hosts in ${Date.now() - started} ms`);
  for (const [h, b] of hosts.entries()) {
    const [pool] = await b.pools();
    assert.deepEqual(pool, { name: "pool", totalBytes: 100 * MiB, freeBytes: 85 * MiB, provisionedBytes: 15 * MiB }, `host ${h}`);
    const { volumes, exports } = await b.list();
    assert.equal(volumes.length, 5);
    assert.ok(exports.every((e) => e.client === `compute-${h % 7}` && e.volumeId.startsWith(`h${h}-`)));
  }
});
