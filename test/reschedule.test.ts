import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { eventually, waitServers } from "./harness.js";
import { stack } from "./stack.js";

describe("spawn failures", () => {
  // Equal hosts tie on weight and are tried by name: "a" (always fails, retryably) first.
  const fx = stack({
    name: "reschedule",
    controller: { maxAttempts: 3 },
    members: [],
    agents: ({ id }) => [
      { host: `rs${id}-a`, capacity: null, faults: { spawn: { error: "image fetch timed out", retryable: true } } },
      { host: `rs${id}-b`, capacity: null },
    ],
  });
  const { admin, imageId } = fx;

  test("a retryable spawn failure releases the claim and reschedules to another host; with none left it is ERROR", async () => {
    const [bad, good] = fx.hosts as [string, string];
    const upCount = async () => (await admin.hosts.listServices({})).services.filter((x) => x.state === ServiceState.SERVICE_STATE_UP).length;

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
    await fx.agents.stop(good);
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
  const fx = stack({
    name: "alternates",
    controller: { maxAttempts: 2 },
    members: [],
    agents: ({ id }) => [{ host: `al${id}`, hosts: 3, capacity: null, faults: { spawn: { error: "disk full", retryable: true } } }],
  });
  const { env, admin, imageId } = fx;

  test("attempts stop at max_attempts, each on the next alternate; hosts that failed builds rank last until they build one", async () => {
    const base = `al${env.id}`;
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
