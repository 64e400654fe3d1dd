/** What the file backend does beyond the contract: crash leftovers, qcow2 images, standalone copies, the file system's capacity. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { DriverError } from "../../drivers/errors.js";
import { MiB, rejectsWith } from "../contract.js";
import { FileLab, fileBackendSkip, firstByte, qemuIoFile } from "./test-qemu.js";

const run = promisify(execFile);
const skip = fileBackendSkip();
let lab: FileLab;
before(async () => {
  if (!skip) lab = await FileLab.make();
});
after(() => lab?.cleanup());

test("a restart removes what a crash left half made and lists what is whole", { skip, timeout: 30_000 }, async (t) => {
  const options = lab.options(64 * MiB);
  const b = lab.backend(options);
  t.after(() => b.close({ stopExports: true }));
  await b.create("whole", "p1", 4 * MiB, { kind: "blank" });
  await b.close();
  const p1 = options.pools[0]!.path;
  await run("qemu-img", ["create", "-q", "-f", "qcow2", join(p1, ".half.qcow2.tmp"), "1M"]);
  await writeFile(join(p1, "gone.json"), JSON.stringify({ id: "gone", requestedBytes: MiB, source: { kind: "blank" } }));
  const again = lab.backend(options);
  t.after(() => again.close({ stopExports: true }));
  assert.deepEqual((await again.list()).volumes, [{ id: "whole", pool: "p1", sizeBytes: 4 * MiB, snapshotIds: [] }]);
  assert.deepEqual((await readdir(p1)).sort(), ["whole.json", "whole.qcow2"]);
  assert.equal((await again.create("half", "p1", MiB, { kind: "blank" })).sizeBytes, MiB, "the half-made id can be created");
});

test("a volume from a qcow2 image is standalone with its content; an image that reads another file is refused", { skip, timeout: 30_000 }, async (t) => {
  const options = lab.options(64 * MiB);
  const b = lab.backend(options);
  t.after(() => b.close({ stopExports: true }));
  const image = join(lab.dir, "image.qcow2");
  const overlay = join(lab.dir, "overlay.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", image, "6M"]);
  await qemuIoFile(image, ["write -P 0x61 0 64k"]);
  const v = await b.create("v", "p1", 2 * MiB, { kind: "image", path: image, format: "qcow2" });
  assert.equal(v.sizeBytes, 6 * MiB, "at least the image's size");
  const file = join(options.pools[0]!.path, "v.qcow2");
  const info = JSON.parse((await run("qemu-img", ["info", "--output=json", file])).stdout) as Record<string, unknown>;
  assert.equal(info.format, "qcow2");
  assert.equal(info["backing-filename"], undefined, "no backing file");
  assert.equal(firstByte(await qemuIoFile(file, ["read -v 0 1"], true)), 0x61);
  // An overlay naming a backing file (here the image; it could be another volume or a device) would copy that file's bytes.
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, overlay]);
  await assert.rejects(b.create("o", "p1", MiB, { kind: "image", path: overlay, format: "qcow2" }), (e: unknown) => e instanceof DriverError && e.code === "INVALID_ARGUMENT" && e.message.includes(image));
  await rejectsWith(b.create("w", "p1", MiB, { kind: "image", path: join(lab.dir, "not-an-image.qcow2"), format: "qcow2" }), "NOT_FOUND");
  const garbage = join(lab.dir, "garbage.qcow2");
  await writeFile(garbage, "this is not a qcow2 image");
  await rejectsWith(b.create("w", "p1", MiB, { kind: "image", path: garbage, format: "qcow2" }), "VOLUME_COMMAND_FAILED");
  assert.deepEqual((await b.list()).volumes.map((x) => x.id), ["v"], "the refused creates left no volume");
  assert.deepEqual((await readdir(options.pools[0]!.path)).sort(), ["v.json", "v.qcow2"], "nor a file");
});

test("reimage writes into the volume's own file: a standalone qcow2 with its snapshots, thin; an image that reads another file or is no image is refused, changing nothing", { skip, timeout: 30_000 }, async (t) => {
  const options = lab.options(64 * MiB);
  const b = lab.backend(options);
  t.after(() => b.close({ stopExports: true }));
  await b.create("v", "p1", 16 * MiB, { kind: "blank" });
  const file = join(options.pools[0]!.path, "v.qcow2");
  await qemuIoFile(file, ["write -P 0x21 0 64k", "write -P 0x22 12M 4M"]);
  await b.createSnapshot("v", "s1");
  const used = async () => (await b.pools()).find((p) => p.name === "p1")!.freeBytes;
  const freeBefore = await used();
  const overlayBase = join(lab.dir, "reimage-base.qcow2");
  const overlay = join(lab.dir, "reimage-overlay.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", overlayBase, "4M"]);
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", overlayBase, overlay]);
  await rejectsWith(b.reimage("v", { path: overlay, format: "qcow2" }), "INVALID_ARGUMENT");
  const garbage = join(lab.dir, "reimage-garbage.qcow2");
  await writeFile(garbage, "this is not a qcow2 image");
  await rejectsWith(b.reimage("v", { path: garbage, format: "qcow2" }), "VOLUME_COMMAND_FAILED");
  assert.match(await qemuIoFile(file, ["read -P 0x21 0 64k", "read -P 0x22 12M 4M"], true), /read 4194304\/4194304/, "the refused reimages changed nothing");
  // A raw image whose size is no multiple of a sector: qemu reads its last sector padded with zeros.
  const odd = join(lab.dir, "odd.raw");
  await writeFile(odd, Buffer.alloc(1000, 0x7b));
  await b.reimage("v", { path: odd, format: "raw" });
  const out = await qemuIoFile(file, ["read -P 0x7b 0 1000", "read -P 0 1000 24", "read -P 0 1k 16383k"], true);
  assert.equal(out.match(/read \d+\/\d+ bytes/g)?.length, 3, out);
  assert.doesNotMatch(out, /verification failed/);
  const info = JSON.parse((await run("qemu-img", ["info", "--output=json", file])).stdout) as { format: string; "virtual-size": number; "backing-filename"?: string; snapshots?: { name: string }[] };
  assert.deepEqual([info.format, info["virtual-size"], info["backing-filename"], info.snapshots?.map((s) => s.name)], ["qcow2", 16 * MiB, undefined, ["s1"]]);
  assert.ok((await used()) >= freeBefore - MiB, "zeros take no room: the old data is kept by the snapshot only");
  assert.match((await run("qemu-img", ["check", file])).stdout, /No errors were found/);
  await b.deleteSnapshot("v", "s1");
  assert.ok((await used()) > freeBefore + 3 * MiB, "the old data's room comes back with its snapshot");
});

test("a pool without a limit reports its file system's size, and volumes are thin", { skip, timeout: 30_000 }, async (t) => {
  const options = lab.options(64 * MiB);
  const unlimited = { ...options, pools: options.pools.map((p) => ({ name: p.name, path: p.path })) };
  const b = lab.backend(unlimited);
  t.after(() => b.close({ stopExports: true }));
  await b.create("big", "p1", 10 * 1024 * MiB, { kind: "blank" });
  const fs = await statfs(unlimited.pools[0]!.path);
  const [p1] = await b.pools();
  assert.equal(p1?.totalBytes, fs.blocks * fs.bsize);
  assert.equal(p1?.provisionedBytes, 10 * 1024 * MiB);
  assert.ok((p1?.freeBytes ?? 0) > 0 && (p1?.freeBytes ?? 0) <= fs.bavail * fs.bsize + MiB, "free is what the file system has");
  await rejectsWith(b.create("too-big", "p1", fs.blocks * fs.bsize, { kind: "blank" }), "POOL_FULL");
});

test("concurrent creates in one pool: exactly those that fit are made", { skip, timeout: 30_000 }, async (t) => {
  const b = lab.backend(lab.options(64 * MiB));
  t.after(() => b.close({ stopExports: true }));
  const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => b.create(`v${i}`, "p1", 10 * MiB, { kind: "blank" })));
  assert.equal(results.filter((r) => r.status === "fulfilled").length, 6);
  for (const r of results) if (r.status === "rejected") assert.equal((r.reason as { code: string }).code, "POOL_FULL");
  assert.equal((await b.pools()).find((p) => p.name === "p1")?.provisionedBytes, 60 * MiB);
});

test("options that cannot work are refused when the backend is made", { skip }, () => {
  const options = lab.options(64 * MiB);
  assert.throws(() => lab.backend({ ...options, exports: { ...options.exports, ports: [2000, 1000] } }), /export ports 2000-1000/);
  assert.throws(() => lab.backend({ ...options, stateDir: join(lab.dir, "x".repeat(120)) }), /too long for a unix socket path/);
});
