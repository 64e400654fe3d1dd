/** The QMP client against a real qemu-storage-daemon: greeting, commands, QEMU's errors, a monitor that is not there, quit. */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { DriverError } from "../../drivers/errors.js";
import { daemonPid, startDaemon, stopDaemon } from "./daemon-process.js";
import { QmpClient, QmpError, withQmp } from "./qmp.js";
import { makeTestPki } from "./test-certs.js";
import { fileBackendSkip, running } from "./test-qemu.js";

const skip = fileBackendSkip();

test("QMP: commands answer, QEMU's errors carry their class, a missing monitor is a DriverError, quit stops the daemon", { skip, timeout: 30_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "nmq-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pki = await makeTestPki(join(dir, "pki"));
  const spec = { name: "volume v", clients: ["host-a"], pidFile: join(dir, "pid"), socket: join(dir, "qmp.sock"), address: "127.0.0.1", port: 21000 + (process.pid % 1000), tlsDir: pki.serverDir };
  const pid = await startDaemon("qemu-storage-daemon", spec, 10_000);
  t.after(async () => {
    if (await running(pid)) process.kill(pid, "SIGKILL");
  });
  assert.equal(await daemonPid(spec), pid, "the pid file names the daemon, whose command line has its socket");

  await withQmp(spec.socket, 5_000, async (qmp) => {
    const version = await qmp.execute<{ qemu: { major: number } }>("query-version");
    assert.ok(version.qemu.major >= 7, `qemu ${version.qemu.major}`);
    await assert.rejects(qmp.execute("no-such-command"), (err: unknown) => err instanceof QmpError && err.qmpClass === "CommandNotFound");
    await assert.rejects(qmp.execute("blockdev-del", { "node-name": "nothing" }), (err: unknown) => err instanceof QmpError && /nothing/.test(err.message));
    const objects = await qmp.execute<{ name: string }[]>("qom-list", { path: "/objects" });
    assert.deepEqual(objects.map((o) => o.name).filter((n) => n !== "type").sort(), ["authz0", "tls0"], "the TLS credentials and the authz list are there");
  });
  await assert.rejects(QmpClient.connect(join(dir, "no.sock"), 1_000), (err: unknown) => err instanceof DriverError && /QMP connection/.test(err.message));

  const warnings: string[] = [];
  await stopDaemon(spec, 5_000, (msg) => warnings.push(msg));
  assert.deepEqual(warnings, [], "quit answered");
  assert.equal(await running(pid), false);
  assert.equal(await daemonPid(spec), undefined);
});
