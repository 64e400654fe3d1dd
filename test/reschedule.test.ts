import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { spawnAgent, stopAgent, tempDir } from "./agents.js";
import { TestEnv, eventually, waitServers } from "./harness.js";

describe("spawn failures", () => {
  const env = new TestEnv();
  const agents: ChildProcess[] = [];
  after(async () => {
    for (const a of agents) await stopAgent(a);
    await env.cleanup();
  });

  test("a retryable spawn failure releases the claim and reschedules to another host; with none left it is ERROR", async () => {
    const ctl = await env.startController({ maxAttempts: 3 });
    const admin = env.admin(ctl);
    const imageId = await env.image(ctl);
    const dir = await tempDir("reschedule");
    const start = (host: string, faults: object | null) => {
      const a = spawnAgent({
        controller: env.address(ctl),
        token: env.adminToken,
        logFile: join(dir, `${host}.log`),
        args: ["--host", host, "--driver", "fake", "--state-dir", join(dir, host), ...(faults ? ["--fake-faults", JSON.stringify(faults)] : [])],
      });
      agents.push(a);
      return a;
    };
    // Equal hosts tie on weight and are tried by name: "a" (always fails, retryably) first.
    const bad = `rs${env.id}-a`;
    const good = `rs${env.id}-b`;
    start(bad, { spawn: { error: "image fetch timed out", retryable: true } });
    const goodAgent = start(good, null);
    const upCount = async () => (await admin.hosts.listServices({})).services.filter((x) => x.state === ServiceState.SERVICE_STATE_UP).length;
    await eventually(async () => (await upCount()) === 2, { what: "two hosts up" });

    const s = (await admin.servers.createServer({ name: "retry-me", flavorId: "m1.small", imageId })).server!;
    const [active] = await waitServers(admin, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE");
    assert.equal(active!.host, good);
    const create = (await admin.servers.listServerActions({ serverId: s.id })).actions.find((a) => a.action === "create")!;
    assert.deepEqual(
      create.events.map((e) => `${e.name}:${e.result}@${e.host}`),
      [`schedule:Success@${bad}`, `compute_spawn:Error@${bad}`, `schedule:Success@${good}`, `compute_spawn:Success@${good}`],
    );
    assert.match(create.events[1]!.fault, /image fetch timed out/);
    // The second host came from the alternates the scheduler chose with the build, not from a new scheduling pass.
    assert.match(create.events[2]!.details, /alternate host, attempt 2 after rs\w+-a failed/);
    // Only the host that runs the server holds its resources.
    const hv = await admin.hypervisors();
    assert.equal(hv.find((h) => h.hostname === bad)!.memoryMbUsed, 0);
    assert.equal(hv.find((h) => h.hostname === good)!.memoryMbUsed, 2048);

    // With the good host gone, a build fails on the bad one and no host is left.
    await stopAgent(goodAgent);
    await eventually(async () => (await upCount()) === 1, { what: "the good host down", timeoutMs: 20_000 });
    const doomed = (await admin.servers.createServer({ name: "doomed", flavorId: "m1.small", imageId })).server!;
    const [failed] = await waitServers(admin, [doomed.id], (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    assert.equal(failed!.fault!.code, "NO_VALID_HOST");
    assert.equal(failed!.fault!.details["filter.retry"], "1");
    assert.equal(failed!.fault!.details["filter.compute"], "1");
    assert.equal(failed!.host, "");
    const hv2 = await admin.hypervisors();
    assert.equal(hv2.find((h) => h.hostname === bad)!.memoryMbUsed, 0, "the failed build holds nothing");
  });
});

describe("alternates and build failures", () => {
  const env = new TestEnv();
  const agents: ChildProcess[] = [];
  after(async () => {
    for (const a of agents) await stopAgent(a);
    await env.cleanup();
  });

  test("attempts stop at max_attempts, each on the next alternate; hosts that failed builds rank last until they build one", async () => {
    const ctl = await env.startController({ maxAttempts: 2 });
    const admin = env.admin(ctl);
    const imageId = await env.image(ctl);
    const dir = await tempDir("alternates");
    const base = `al${env.id}`;
    agents.push(
      spawnAgent({
        controller: env.address(ctl),
        token: env.adminToken,
        logFile: join(dir, "agents.log"),
        args: ["--host", base, "--hosts", "3", "--driver", "fake", "--state-dir", join(dir, "agents"), "--fake-faults", JSON.stringify({ spawn: { error: "disk full", retryable: true } })],
      }),
    );
    await eventually(async () => (await admin.hosts.listServices({})).services.filter((x) => x.state === ServiceState.SERVICE_STATE_UP).length === 3, { what: "three hosts up" });
    const s = (await admin.servers.createServer({ name: "unlucky", flavorId: "m1.small", imageId })).server!;
    const [failed] = await waitServers(admin, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ERROR, "ERROR");
    assert.match(failed!.fault!.message, /disk full; gave up after 2 attempts/);
    const create = (await admin.servers.listServerActions({ serverId: s.id })).actions.find((a) => a.action === "create")!;
    const events = create.events.map((e) => `${e.name}:${e.result}@${e.host}`);
    assert.deepEqual(events, [`schedule:Success@${base}-1`, `compute_spawn:Error@${base}-1`, `schedule:Success@${base}-2`, `compute_spawn:Error@${base}-2`]);
    const hv = await admin.hypervisors();
    assert.deepEqual(
      hv.map((h) => [h.hostname, h.failedBuilds, h.memoryMbUsed]),
      [[`${base}-1`, 1, 0], [`${base}-2`, 1, 0], [`${base}-3`, 0, 0]],
      "each failed host counts its failure; no claim is left",
    );
    const ex = await admin.scheduler.explainPlacement({ flavorId: "m1.small", imageId, availabilityZone: "" });
    assert.equal(ex.chosenHost, `${base}-3`, "the host without failures ranks first");
    assert.ok(ex.hosts.find((h) => h.host === `${base}-1`)!.weights.build_failure! < ex.hosts.find((h) => h.host === `${base}-3`)!.weights.build_failure!);
  });
});
