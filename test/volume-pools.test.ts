/**
 * Volume hosts' pools: an agent says them in its hello and its reports;
 * admins list them with their host's service (ListVolumePools); a bad pool
 * ends the agent's stream with the field named. Real MariaDB, NATS and
 * controller; the agent is a raw AgentService stream, or real agent
 * processes with the fake and the file volume backends.
 */
import assert from "node:assert/strict";
import { mkdir, rm, statfs } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status, type ServiceError } from "@grpc/grpc-js";
import type { VolumePool } from "../gen/novamesh/agent/v1/agent.js";
import { ServiceState, ServiceStatus } from "../gen/novamesh/compute/v1/host.js";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import type { Controller } from "../controller/controller.js";
import { eventually, failure } from "./harness.js";
import { makeTestPki } from "../agent/volume/file/test-certs.js";
import { spawnAgent, stopAgent, tempDir } from "./agents.js";
import { code, RawAgent } from "./raw-agent.js";
import { testEnv } from "./stack.js";

const GiB = 1024 ** 3;
const pool = (name: string, totalGiB: number, freeGiB: number, provisionedGiB = 0): VolumePool => ({
  name,
  backend: "file",
  totalBytes: totalGiB * GiB,
  freeBytes: freeGiB * GiB,
  provisionedBytes: provisionedGiB * GiB,
});

describe("volume pools", () => {
  const env = testEnv();

  async function agent(ctl: Controller, host: string): Promise<RawAgent> {
    const { secret } = await env.admin(ctl).identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" });
    return new RawAgent(env.address(ctl), secret);
  }

  test("a volume host's pools are listed with its service; reports keep them current; a new hello replaces them", async (t) => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const vol = await agent(ctl, "storage-1");
    t.after(() => vol.close());
    assert.equal(code(await vol.hello("storage-1", [pool("fast", 100, 100), pool("bulk", 1000, 900, 300)])), "helloAck");
    const compute = await agent(ctl, "compute-1");
    t.after(() => compute.close());
    assert.equal(code(await compute.hello("compute-1")), "helloAck");

    let pools = (await admin.hosts.listVolumePools({})).pools;
    assert.deepEqual(
      pools.map((p) => [p.host, p.name, p.backend, p.totalBytes, p.freeBytes, p.provisionedBytes]),
      [
        ["storage-1", "bulk", "file", 1000 * GiB, 900 * GiB, 300 * GiB],
        ["storage-1", "fast", "file", 100 * GiB, 100 * GiB, 0],
      ],
      "only the volume host has pools, listed by host and name",
    );
    for (const p of pools) {
      assert.equal(p.state, ServiceState.SERVICE_STATE_UP);
      assert.equal(p.status, ServiceStatus.SERVICE_STATUS_ENABLED);
      assert.equal(p.availabilityZone, "nova");
    }
    assert.deepEqual((await admin.hosts.listVolumePools({ host: "compute-1" })).pools, []);

    // A report moves the figures.
    vol.report([], [pool("fast", 100, 40, 60), pool("bulk", 1000, 900, 300)]);
    await eventually(async () => (await admin.hosts.listVolumePools({ host: "storage-1" })).pools.find((p) => p.name === "fast")?.freeBytes === 40 * GiB, {
      what: "the report's free bytes",
    });
    pools = (await admin.hosts.listVolumePools({ host: "storage-1" })).pools;
    assert.equal(pools.find((p) => p.name === "fast")!.provisionedBytes, 60 * GiB);

    // Disabled hosts show as such.
    await admin.hosts.disableService({ host: "storage-1", reason: "disk swap" });
    assert.ok((await admin.hosts.listVolumePools({})).pools.every((p) => p.status === ServiceStatus.SERVICE_STATUS_DISABLED));

    // An agent restarts with one pool less: the other is gone.
    const { secret } = await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host: "storage-2", description: "" });
    const other = new RawAgent(env.address(ctl), secret);
    t.after(() => other.close());
    assert.equal(code(await other.hello("storage-2", [pool("a", 10, 10), pool("b", 10, 10)])), "helloAck");
    other.close();
    const restarted = new RawAgent(env.address(ctl), secret);
    t.after(() => restarted.close());
    assert.equal(code(await restarted.hello("storage-2", [pool("b", 20, 5)])), "helloAck");
    assert.deepEqual(
      (await admin.hosts.listVolumePools({ host: "storage-2" })).pools.map((p) => [p.name, p.totalBytes, p.freeBytes]),
      [["b", 20 * GiB, 5 * GiB]],
    );

    // Members do not see the operator's storage.
    const member = await env.as(ctl, "demo");
    assert.equal((await failure(member.hosts.listVolumePools({}))).code, status.PERMISSION_DENIED);
  });

  test("a bad pool ends the agent's stream with INVALID_ARGUMENT naming it, and records nothing", async () => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const cases: [VolumePool[], RegExp][] = [
      [[pool("a", 1, 1), pool("a", 2, 2)], /hello\.volume_pools\[1\]\.name.*named twice/],
      [[pool("no/slash", 1, 1)], /hello\.volume_pools\[0\]\.name/],
      [[pool("", 1, 1)], /hello\.volume_pools\[0\]\.name/],
      [[pool("over", 1, 2)], /hello\.volume_pools\[0\]\.free_bytes.*must not exceed total_bytes/],
      [[{ ...pool("neg", 1, 1), provisionedBytes: -1 }], /hello\.volume_pools\[0\]\.provisioned_bytes/],
      [[{ ...pool("kind", 1, 1), backend: "Bad Backend" }], /hello\.volume_pools\[0\]\.backend/],
      [Array.from({ length: 65 }, (_, i) => pool(`p${i}`, 1, 1)), /hello\.volume_pools.*at most 64/],
    ];
    for (const [i, [pools, message]] of cases.entries()) {
      const a = await agent(ctl, `bad-${i}`);
      const r = await a.hello(`bad-${i}`, pools);
      a.close();
      assert.equal(code(r), status.INVALID_ARGUMENT, String(message));
      assert.match((r as ServiceError).details, message);
    }
    const badPools = async () => (await admin.hosts.listVolumePools({})).pools.filter((p) => p.host.startsWith("bad-"));
    assert.deepEqual(await badPools(), [], "no pool of a refused hello");

    // In a report: the stream ends, the pools stay as the hello gave them.
    const a = await agent(ctl, "bad-report");
    assert.equal(code(await a.hello("bad-report", [pool("ok", 5, 5)])), "helloAck");
    a.report([], [pool("ok", 5, 6)]);
    const ended = await a.ended;
    a.close();
    assert.notEqual(ended, "ended");
    assert.equal((ended as ServiceError).code, status.INVALID_ARGUMENT);
    assert.match((ended as ServiceError).details, /report\.volume_pools\[0\]\.free_bytes/);
    assert.deepEqual(
      (await badPools()).map((p) => [p.host, p.name, p.freeBytes]),
      [["bad-report", "ok", 5 * GiB]],
    );
  });

  test("agents started with --volume-backend report their pools: a fake pool as sized, a file pool of a real directory with its limit", async (t) => {
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const dir = await tempDir("volume-agents");
    const pki = await makeTestPki(join(dir, "pki"));
    await mkdir(join(dir, "pool-a"));
    const token = async (host: string) => (await admin.identity.createToken({ projectId: "infra", role: Role.ROLE_AGENT, host, description: "" })).secret;
    const common = (host: string) => ["--host", host, "--state-dir", join(dir, host), "--report-interval", "1"];
    const fakeHost = spawnAgent({
      controller: env.address(ctl),
      token: await token("vol-fake"),
      args: [...common("vol-fake"), "--volume-backend", "fake", "--volume-pools", "gold:100G,silver:2T"],
      logFile: join(dir, "vol-fake.log"),
    });
    const fileHost = spawnAgent({
      controller: env.address(ctl),
      token: await token("vol-file"),
      args: [...common("vol-file"), "--volume-backend", "file", "--volume-pools", `a=${join(dir, "pool-a")}:1G`, "--volume-tls-dir", pki.serverDir],
      logFile: join(dir, "vol-file.log"),
    });
    t.after(async () => {
      await Promise.all([stopAgent(fakeHost), stopAgent(fileHost)]);
      await rm(dir, { recursive: true, force: true });
    });
    await eventually(async () => (await admin.hosts.listVolumePools({})).pools.filter((p) => p.host.startsWith("vol-")).length === 3, {
      what: "both volume hosts' pools",
      timeoutMs: 30_000,
    });
    const pools = (await admin.hosts.listVolumePools({})).pools.filter((p) => p.host.startsWith("vol-"));
    // The file pool's free bytes: its limit, unless its file system has less.
    const fs = await statfs(join(dir, "pool-a"));
    const fileFree = pools.find((p) => p.host === "vol-file")!.freeBytes;
    assert.ok(fileFree <= GiB && Math.abs(fileFree - Math.min(GiB, fs.bavail * fs.bsize)) < 64 * 1024 ** 2, `free ${fileFree}`);
    assert.deepEqual(
      pools.map((p) => [p.host, p.name, p.backend, p.totalBytes, p.host === "vol-file" ? "checked" : p.freeBytes, p.provisionedBytes]),
      [
        ["vol-fake", "gold", "fake", 100 * GiB, 100 * GiB, 0],
        ["vol-fake", "silver", "fake", 2048 * GiB, 2048 * GiB, 0],
        ["vol-file", "a", "file", GiB, "checked", 0],
      ],
    );
    assert.ok(pools.every((p) => p.state === ServiceState.SERVICE_STATE_UP));
  });
});
