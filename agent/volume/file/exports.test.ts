/**
 * The file backend's exports for real: qemu-storage-daemon serving NBD over
 * TLS, opened by qemu-io and qemu-img with compute hosts' certificates from
 * a throwaway CA. Skipped when qemu's tools are not installed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdir, open, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { DriverError } from "../../drivers/errors.js";
import { MiB, rawImage, rejectsWith } from "../contract.js";
import { startDaemon } from "./daemon-process.js";
import { nodeName } from "./export-daemons.js";
import type { FileVolumeBackend } from "./file-backend.js";
import type { FileVolumeBackendOptions } from "./options.js";
import { withQmp } from "./qmp.js";
import { FileLab, fileBackendSkip, firstByte, holdNbd, nbdSize, qemuIoFile, qemuIoNbd, running } from "./test-qemu.js";

const skip = fileBackendSkip();
let lab: FileLab;
let hostA = "";
let hostB = "";

before(async () => {
  if (skip) return;
  lab = await FileLab.make();
  [hostA, hostB] = await Promise.all([lab.pki.client("host-a"), lab.pki.client("host-b")]);
});
after(() => lab?.cleanup());

/** A backend on fresh directories, whose exports are stopped after the test. */
function backend(t: TestContext): { b: FileVolumeBackend; options: FileVolumeBackendOptions } {
  const options = lab.options(256 * MiB);
  const b = lab.backend(options);
  t.after(() => b.close({ stopExports: true }));
  return { b, options };
}

/** The daemon ends the TLS session of a certificate its authz list does not admit (or that the CA did not sign). */
const refused = /Cannot read from TLS channel/;
/**
 * Nothing serves that export (any more): its daemon answers that it has no
 * such export, or nothing listens on its port, or the connection is reset
 * (a daemon going away mid-handshake, or the port taken meanwhile by another
 * test's daemon, which does not know our certificate).
 */
const gone = /Requested export not available|Connection refused|Connection reset by peer/;

test("an export opens over TLS only with the certificate of its host, and after unexport not at all", { skip, timeout: 60_000 }, async (t) => {
  const { b } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const started = Date.now();
  const e = await b.export("v", "att-1", "host-a");
  t.diagnostic(`export (daemon start included) took ${Date.now() - started} ms`);
  const out = await qemuIoNbd(e, hostA, ["write -P 0xab 0 64k", "read -P 0xab 0 64k"]);
  assert.match(out, /read 65536\/65536 bytes at offset 0/, "host-a reads back what it wrote");
  await assert.rejects(qemuIoNbd(e, hostB, ["read 0 512"]), refused, "host-b's certificate is refused");
  const stranger = await lab.pki.stranger("host-a");
  await assert.rejects(qemuIoNbd(e, stranger, ["read 0 512"]), refused, "a certificate naming host-a from another CA is refused");
  // A value with an escaped comma reads like the RDN the list looks for ("…,OU=x\,CN=host-a").
  const crafted = await lab.pki.crafted("escaped", "/O=novamesh/CN=host-b/OU=x\\,CN=host-a");
  await assert.rejects(qemuIoNbd(e, crafted, ["read 0 512"]), refused, "host-b's certificate with host-a in an escaped value is refused");
  await b.unexport("v", "att-1");
  await assert.rejects(qemuIoNbd(e, hostA, ["read 0 512"]), gone, "after unexport host-a cannot open it either");
  assert.equal(firstByte(await qemuIoFile(join(lab.dir, "h1", "p1", "v.qcow2"), ["read -v 0 1"], true)), 0xab, "the write reached the volume's file");
});

test("each exported volume has its own daemon and port; a host opens only the volumes exported to it", { skip, timeout: 60_000 }, async (t) => {
  const { b } = backend(t);
  await b.create("va", "p1", 4 * MiB, { kind: "blank" });
  await b.create("vb", "p2", 4 * MiB, { kind: "blank" });
  const ea = await b.export("va", "att-a", "host-a");
  const eb = await b.export("vb", "att-b", "host-b");
  assert.notEqual(ea.port, eb.port);
  await qemuIoNbd(ea, hostA, ["read 0 512"]);
  await qemuIoNbd(eb, hostB, ["read 0 512"]);
  await assert.rejects(qemuIoNbd(ea, hostB, ["read 0 512"]), refused, "host-b cannot open host-a's volume");
  await assert.rejects(qemuIoNbd({ ...eb, exportName: "att-a" }, hostB, ["read 0 512"]), gone, "nor find it through its own volume's daemon");
  await assert.rejects(qemuIoNbd(eb, hostA, ["read 0 512"]), refused, "host-a cannot open host-b's volume");
  const ea2 = await b.export("va", "att-a2", "host-a");
  assert.equal(ea2.port, ea.port, "a second export of one volume shares its daemon");
  await qemuIoNbd(ea2, hostA, ["read 0 512"]);
});

test("a volume exported to two hosts at once: one daemon, each host writes and reads the same data, a third host is refused; ending one export leaves the other", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const ea = await b.export("v", "att-1", "host-a");
  const eb = await b.export("v", "move-1", "host-b");
  assert.equal(eb.port, ea.port, "the volume's one daemon serves both");
  assert.equal((await daemonPids(options)).length, 1);
  await qemuIoNbd(ea, hostA, ["write -P 0x71 0 64k"]);
  assert.match(await qemuIoNbd(eb, hostB, ["read -P 0x71 0 64k", "write -P 0x72 64k 64k"]), /read 65536\/65536/, "host-b reads what host-a wrote");
  assert.match(await qemuIoNbd(ea, hostA, ["read -P 0x72 64k 64k"]), /read 65536\/65536/, "and host-a what host-b wrote");
  const hostC = await lab.pki.client("host-c");
  await assert.rejects(qemuIoNbd(ea, hostC, ["read 0 512"]), refused, "host-c is not admitted");
  await b.unexport("v", "att-1");
  await assert.rejects(qemuIoNbd(ea, hostA, ["read 0 512"]), refused, "host-a is no longer admitted once its export ends");
  assert.match(await qemuIoNbd(eb, hostB, ["read -P 0x71 0 64k"]), /read 65536\/65536/, "host-b's export serves on");
  await b.unexport("v", "move-1");
  assert.deepEqual(await readdir(options.stateDir), [], "the daemon stopped with its last export");
});

test("a daemon of the earlier per-client layout is adopted and serves on: its exports listed and ended, its volume refused to another host meanwhile", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const path = join(options.pools.find((p) => p.name === "p1")?.path ?? "", "v.qcow2");
  const dir = join(options.stateDir, "c-0123456789abcdef");
  await mkdir(dir, { recursive: true });
  const spec = { name: "client host host-a", clients: ["host-a"], pidFile: join(dir, "pid"), socket: join(dir, "qmp.sock"), address: "127.0.0.1", port: options.exports.ports[1], tlsDir: options.exports.tlsDir };
  await writeFile(join(dir, "daemon.json"), JSON.stringify({ client: "host-a", port: spec.port, address: spec.address }));
  const pid = await startDaemon("qemu-storage-daemon", spec, 10_000);
  t.after(async () => {
    if (await running(pid)) process.kill(pid, "SIGKILL");
  });
  await withQmp(spec.socket, 10_000, async (qmp) => {
    await qmp.execute("blockdev-add", { driver: "qcow2", "node-name": nodeName("v"), file: { driver: "file", filename: path } });
    await qmp.execute("block-export-add", { type: "nbd", id: "x-old", "node-name": nodeName("v"), name: "att-old", writable: true });
  });
  await writeFile(join(dir, "exports.json"), JSON.stringify([{ attachmentId: "att-old", volumeId: "v", path }]));
  // An agent of this version starts on that state.
  await b.close();
  const again = lab.backend(options);
  t.after(() => again.close({ stopExports: true }));
  const old = { volumeId: "v", attachmentId: "att-old", host: "127.0.0.1", port: spec.port, exportName: "att-old", client: "host-a" };
  assert.deepEqual((await again.list()).exports, [old], "its export is listed");
  assert.match(await qemuIoNbd(old, hostA, ["write -P 0x4d 0 64k"]), /wrote 65536\/65536/, "and serves (again) to host-a");
  await rejectsWith(again.export("v", "move-1", "host-b"), "VOLUME_IN_USE");
  await again.extend("v", 12 * MiB);
  assert.equal(await nbdSize(old, hostA), 12 * MiB, "an extend goes through it");
  await again.unexport("v", "att-old");
  assert.equal(await running(pid), false, "it stopped with its last export");
  const moved = await again.export("v", "move-1", "host-b");
  assert.match(await qemuIoNbd(moved, hostB, ["read -P 0x4d 0 64k"]), /read 65536\/65536/, "then the volume goes to host-b in a daemon of its own");
});

test("extend while exported: a client connecting after sees the new size and the old data", { skip, timeout: 60_000 }, async (t) => {
  const { b } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  await qemuIoNbd(e, hostA, ["write -P 0x5c 0 64k"]);
  assert.equal(await nbdSize(e, hostA), 8 * MiB);
  await b.extend("v", 24 * MiB);
  assert.equal(await nbdSize(e, hostA), 24 * MiB);
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0x5c 0 64k", "write -P 0x5d 20M 64k"]), /read 65536\/65536/);
  assert.deepEqual((await b.list()).volumes.map((v) => v.sizeBytes), [24 * MiB]);
  await assert.rejects(b.extend("v", 16 * MiB), /SHRINK|not shrunk/);
});

test("an export the daemon no longer serves when a new backend adopts it (an agent stopped half way through an extend) is served again", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  await qemuIoNbd(e, hostA, ["write -P 0x6a 0 64k"]);
  await b.close();
  const [dir] = await readdir(options.stateDir);
  assert.ok(dir);
  await withQmp(join(options.stateDir, dir, "qmp.sock"), 10_000, async (qmp) => {
    for (const x of await qmp.execute<{ id: string }[]>("query-block-exports")) await qmp.execute("block-export-del", { id: x.id, mode: "hard" });
  });
  await assert.rejects(qemuIoNbd(e, hostA, ["read 0 512"]), gone, "the export is down");
  const again = lab.backend(options);
  t.after(() => again.close({ stopExports: true }));
  assert.deepEqual((await again.list()).exports, [e], "listed where it was");
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0x6a 0 64k"]), /read 65536\/65536/, "and served again, with its data");
});

test("a snapshot while exported holds the data of its moment; a volume from it gets that data", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  await qemuIoNbd(e, hostA, ["write -P 0x11 0 64k"]);
  await b.createSnapshot("v", "before");
  await qemuIoNbd(e, hostA, ["write -P 0x22 0 64k"]);
  await b.create("copy", "p2", 8 * MiB, { kind: "snapshot", volumeId: "v", snapshotId: "before" });
  const p2 = options.pools.find((p) => p.name === "p2")?.path ?? "";
  assert.equal(firstByte(await qemuIoFile(join(p2, "copy.qcow2"), ["read -v 0 1"], true)), 0x11);
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0x22 0 64k"]), /read 65536\/65536/, "the exported volume has the later data");
  await b.deleteSnapshot("v", "before");
  assert.deepEqual((await b.list()).volumes.find((v) => v.id === "v")?.snapshotIds, []);
});

test("reimage while exported: a client connecting after reads the image's bytes and zeros, one that held its connection never reads the old data, the snapshot keeps it", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  await qemuIoNbd(e, hostA, ["write -P 0x77 0 64k", "write -P 0x78 6M 64k"]);
  await b.createSnapshot("v", "before");
  const image = join(lab.dir, "reimage.qcow2");
  await promisify(execFile)("qemu-img", ["create", "-q", "-f", "qcow2", image, "4M"]);
  await qemuIoFile(image, ["write -P 0x61 0 64k", "write -P 0x62 3M 64k"]);
  // The server's hypervisor keeps its connection open (its guest stopped, no I/O) while the volume is reimaged.
  const held = await holdNbd(e, hostA);
  t.after(() => held.close());
  assert.match(await held.run("read -P 0x77 0 64k"), /read 65536\/65536/);
  const started = Date.now();
  await b.reimage("v", { path: image, format: "qcow2" });
  t.diagnostic(`reimage of an exported volume with a client connected took ${Date.now() - started} ms`);
  const afterwards = await held.run("read -v 0 1");
  t.diagnostic(`the held connection after the reimage: ${afterwards.trim().split("\n")[0]}`);
  if (/^[0-9a-f]{8}:/m.test(afterwards)) assert.equal(firstByte(afterwards), 0x61, "a held connection that reads reads the image's data");
  await held.close();
  assert.deepEqual((await b.list()).exports, [e], "the same export");
  assert.equal(await nbdSize(e, hostA), 8 * MiB);
  const out = await qemuIoNbd(e, hostA, ["read -P 0x61 0 64k", "read -P 0 64k 3008k", "read -P 0x62 3M 64k", "read -P 0 4M 4M"]);
  assert.equal(out.match(/read \d+\/\d+ bytes/g)?.length, 4, `the image's data, its zeros and zeros past it: ${out}`);
  assert.doesNotMatch(out, /Pattern verification failed/);
  await assert.rejects(qemuIoNbd(e, hostB, ["read 0 512"]), refused, "host-b is still refused");
  await b.create("then", "p2", 8 * MiB, { kind: "snapshot", volumeId: "v", snapshotId: "before" });
  const copy = join(options.pools.find((p) => p.name === "p2")?.path ?? "", "then.qcow2");
  assert.match(await qemuIoFile(copy, ["read -P 0x77 0 64k", "read -P 0x78 6M 64k"], true), /read 65536\/65536 bytes at offset 6291456/, "the snapshot has the old data");
});

test("a reimage killed midway fails retryable and leaves the exports served; a retry completes it, the file sound and its snapshot whole", { skip, timeout: 60_000 }, async (t) => {
  const options = lab.options(256 * MiB);
  // A qemu-img whose first rewrite of a volume is killed 100 ms in, as a crash would stop it.
  const wrapper = join(options.stateDir, "..", "qemu-img-killed");
  const mark = `${wrapper}.done`;
  await mkdir(join(wrapper, ".."), { recursive: true });
  await writeFile(
    wrapper,
    `#!/bin/sh\nif [ "$1" = convert ] && [ "$3" = -n ] && [ ! -e '${mark}' ]; then\n  : > '${mark}'\n  qemu-img "$@" & pid=$!\n  sleep 0.1\n  kill -KILL $pid\n  wait $pid\n  echo 'qemu-img: killed midway' >&2\n  exit 1\nfi\nexec qemu-img "$@"\n`,
  );
  await chmod(wrapper, 0o755);
  const b = lab.backend({ ...options, qemuImg: wrapper });
  t.after(() => b.close({ stopExports: true }));
  await b.create("v", "p1", 64 * MiB, { kind: "blank" });
  const path = join(options.pools.find((p) => p.name === "p1")?.path ?? "", "v.qcow2");
  await qemuIoFile(path, ["write -P 0x11 0 64k", "write -P 0x12 60M 64k"]);
  await b.createSnapshot("v", "before");
  const e = await b.export("v", "att-1", "host-a");
  const image = await rawImage(t, 48 * MiB, 0x5a);
  const handle = await open(image.path, "r+");
  try {
    await handle.write(Buffer.alloc(48 * MiB - 64 * 1024, 0x33), 0, 48 * MiB - 64 * 1024, 64 * 1024);
  } finally {
    await handle.close();
  }
  await assert.rejects(b.reimage("v", image), (err: unknown) => err instanceof DriverError && err.code === "VOLUME_COMMAND_FAILED" && err.retryable && /killed midway/.test(err.message));
  assert.deepEqual((await b.list()).exports, [e], "the export is listed");
  assert.match(await qemuIoNbd(e, hostA, ["read 0 64k"]), /read 65536\/65536/, "and served again");
  await b.reimage("v", image);
  const out = await qemuIoNbd(e, hostA, ["read -P 0x5a 0 64k", "read -P 0x33 64k 47M", "read -P 0 48M 16M"]);
  assert.equal(out.match(/read \d+\/\d+ bytes/g)?.length, 3, `the retry wrote the image and zeros after it: ${out}`);
  await b.unexport("v", "att-1");
  const check = await promisify(execFile)("qemu-img", ["check", "-f", "qcow2", path]).then(
    (r) => r.stdout,
    (err: { code?: number; stdout?: string }) => {
      // 3: only leaked clusters (what a killed writer may leave), which waste space and corrupt nothing.
      if (err.code === 3) return err.stdout ?? "";
      throw err;
    },
  );
  t.diagnostic(check.trim().split("\n").join(" | "));
  assert.deepEqual((await b.list()).volumes.find((v) => v.id === "v")?.snapshotIds, ["before"]);
  await b.create("then", "p2", 64 * MiB, { kind: "snapshot", volumeId: "v", snapshotId: "before" });
  const copy = join(options.pools.find((p) => p.name === "p2")?.path ?? "", "then.qcow2");
  assert.match(await qemuIoFile(copy, ["read -P 0x11 0 64k", "read -P 0x12 60M 64k"], true), /read 65536\/65536 bytes at offset 62914560/, "the snapshot has the old data");
});

test("an agent stopped while the daemon had let go of a volume it reimaged: a new backend serves the exports again, and the retried reimage completes", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 8 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  await qemuIoNbd(e, hostA, ["write -P 0x44 0 64k"]);
  await b.close();
  const [dir] = await readdir(options.stateDir);
  assert.ok(dir);
  await withQmp(join(options.stateDir, dir, "qmp.sock"), 10_000, async (qmp) => {
    for (const x of await qmp.execute<{ id: string }[]>("query-block-exports")) await qmp.execute("block-export-del", { id: x.id, mode: "hard" });
    while ((await qmp.execute<unknown[]>("query-block-exports")).length > 0) await sleep(20);
    await qmp.execute("blockdev-del", { "node-name": nodeName("v") });
  });
  await assert.rejects(qemuIoNbd(e, hostA, ["read 0 512"]), gone, "the export is down");
  const again = lab.backend(options);
  t.after(() => again.close({ stopExports: true }));
  assert.deepEqual((await again.list()).exports, [e], "listed where it was");
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0x44 0 64k"]), /read 65536\/65536/, "and served again");
  await again.reimage("v", await rawImage(t, 2 * MiB, 0x45));
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0x45 0 64k", "read -P 0 64k 8128k"]), /read 8323072\/8323072/);
});

/** The pids in the pid files of the backend's export daemons. */
async function daemonPids(options: FileVolumeBackendOptions): Promise<number[]> {
  const dirs = await readdir(options.stateDir);
  return Promise.all(dirs.map(async (d) => Number((await readFile(join(options.stateDir, d, "pid"), "utf8")).trim())));
}

test("exports outlive the backend; a new one adopts them, and drops those whose daemon died", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v1", "p1", 4 * MiB, { kind: "blank" });
  await b.create("v2", "p1", 4 * MiB, { kind: "blank" });
  const e1 = await b.export("v1", "att-1", "host-a");
  const e2 = await b.export("v2", "att-2", "host-b");
  const before = await b.list();
  await b.close();
  await qemuIoNbd(e1, hostA, ["write -P 0x3c 0 64k"]);

  const [pidA, pidB] = await daemonPids(options);
  assert.ok(pidA && pidB);
  const again = lab.backend(options);
  t.after(() => again.close({ stopExports: true }));
  assert.deepEqual(await again.list(), before, "the new backend lists the same volumes and exports");
  assert.match(await qemuIoNbd(e1, hostA, ["read -P 0x3c 0 64k"]), /read 65536\/65536/, "the adopted export serves");
  await again.unexport("v1", "att-1");
  await assert.rejects(qemuIoNbd(e1, hostA, ["read 0 512"]), gone, "and ends on unexport");
  await again.close();

  const host = e2.client === "host-b" ? hostB : hostA;
  await qemuIoNbd(e2, host, ["read 0 512"]);
  const [left] = await daemonPids(options);
  assert.ok(left);
  process.kill(left, "SIGKILL");
  const third = lab.backend(options);
  t.after(() => third.close({ stopExports: true }));
  assert.deepEqual((await third.list()).exports, [], "an export whose daemon is gone is not listed");
  const back = await third.export("v2", "att-2", "host-b");
  await qemuIoNbd(back, hostB, ["read 0 512"]);

  const [pid] = await daemonPids(options);
  assert.ok(pid);
  process.kill(pid, "SIGKILL");
  while (await running(pid)) await sleep(20);
  assert.deepEqual((await third.list()).exports, [], "a daemon that dies while the backend runs takes its exports from the list");
  await third.delete("v2");
  assert.deepEqual((await third.list()).volumes.map((v) => v.id), ["v1"], "and its volume can be deleted");
});

test("close with stopExports ends every export and stops the daemons", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 4 * MiB, { kind: "blank" });
  const e = await b.export("v", "att-1", "host-a");
  const [pid] = await daemonPids(options);
  assert.ok(pid);
  await b.close({ stopExports: true });
  await assert.rejects(qemuIoNbd(e, hostA, ["read 0 512"]), gone);
  assert.equal(await running(pid), false, "the daemon is gone");
  assert.deepEqual(await readdir(options.stateDir), [], "and its files");
});

test("a daemon that does not answer its monitor is killed when a new backend adopts, and the volume can be exported again", { skip, timeout: 60_000 }, async (t) => {
  const { b, options } = backend(t);
  await b.create("v", "p1", 4 * MiB, { kind: "blank" });
  await b.export("v", "att-1", "host-a");
  await b.close();
  const [pid] = await daemonPids(options);
  assert.ok(pid);
  process.kill(pid, "SIGSTOP");
  t.after(async () => {
    if (await running(pid)) process.kill(pid, "SIGKILL");
  });
  const again = lab.backend({ ...options, commandTimeoutMs: 1_000 });
  t.after(() => again.close({ stopExports: true }));
  assert.deepEqual((await again.list()).exports, [], "its exports are not listed");
  while (await running(pid)) await sleep(20);
  const e = await again.export("v", "att-1", "host-a");
  assert.match(await qemuIoNbd(e, hostA, ["read -P 0 0 64k"]), /read 65536\/65536/);
});
