import { HostAllocation } from "../gen/novamesh/agent/v1/agent.js";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import type { NatsConnection } from "nats";
import { pino } from "pino";
import { ComputeOp } from "../gen/novamesh/agent/v1/ops.js";
import { PowerState } from "../gen/novamesh/compute/v1/server.js";
import { Agent, type AgentInit } from "./agent.js";
import { createTestOpStream, tryConnect, TEST_NATS_URL, type TestOpStream } from "./bus/nats-test-util.js";
import { FakeDriver, type FakeDriverOptions } from "./drivers/fake/fake-driver.js";
import { testInstance } from "./drivers/test-instance.js";
import { testOp, testVolume, testVolumeOp } from "./ops/test-ops.js";
import { computeOpOf, computeOpOfVolumeOp } from "./test-compute-op.js";
import { TestController } from "./test-controller.js";
import { DriverError } from "./drivers/errors.js";
import type { PoolCapacity, VolumeBackend } from "./volume/backend.js";
import { FakeVolumeBackend } from "./volume/fake/fake-backend.js";
import { GIB } from "../controller/domain/volume-ops.js";
import type { AgentVolumeOp } from "./ops/agent-op.js";

let nc: NatsConnection | undefined;
let ops: TestOpStream;
let controller: TestController;
let stateDir: string;
const agents: Agent[] = [];

before(async () => {
  nc = await tryConnect();
});
after(async () => {
  await nc?.drain();
});
beforeEach(async () => {
  if (!nc) throw new Error(`NATS not reachable at ${TEST_NATS_URL}`);
  ops = await createTestOpStream(nc, { ackWaitMs: 30_000 });
  controller = await TestController.start({
    reportIntervalSeconds: 1,
    stream: ops.stream,
    subject: ops.subject,
    consumer: ops.consumer,
    querySubject: "",
    natsCredential: undefined,
    opSigningKeys: [],
    inboxPrefix: "",
  });
  stateDir = await mkdtemp(join(tmpdir(), "agent-"));
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await controller.stop();
  await ops.delete();
  await rm(stateDir, { recursive: true, force: true });
});

function fake(options: Partial<FakeDriverOptions> = {}): FakeDriver {
  return new FakeDriver({ statePath: join(stateDir, "domains.json"), ...options });
}

async function startAgent(driver: FakeDriver, options: Partial<AgentInit> = {}): Promise<Agent> {
  const agent = new Agent({
    driver,
    controller: controller.address,
    token: "agent-secret",
    natsUrl: TEST_NATS_URL,
    host: "host-a",
    zone: "az-1",
    stateDir,
    fsync: false,
    reconnectInitialMs: 50,
    reconnectMaxMs: 200,
    stopTimeoutMs: 3_000,
    logger: pino({ level: "silent" }),
    ...options,
  });
  agents.push(agent);
  await agent.start();
  return agent;
}

/** A volume backend that only has pools (what the agent reports of it). */
function poolsOnly(kind: string, pools: () => PoolCapacity[]): VolumeBackend {
  const no = (): never => {
    throw new DriverError("NOT_SUPPORTED", "pools only");
  };
  return { kind, pools: async () => pools(), create: no, delete: no, extend: no, reimage: no, createSnapshot: no, deleteSnapshot: no, export: no, unexport: no, list: no, close: async () => {} };
}

/** A volume op as the bytes the controller publishes. */
function publishable(op: AgentVolumeOp): Uint8Array {
  return ComputeOp.encode(computeOpOfVolumeOp(op)).finish();
}

describe("Agent against a test controller and real JetStream", () => {
  test("says Hello with its token, reports at once and then every interval", async () => {
    const driver = fake({ capacity: { vcpus: 8, memoryMb: 8192, diskGb: 100 } });
    const agent = await startAgent(driver);
    const ack = await agent.connected();
    assert.equal(ack.consumer, ops.consumer);
    const session = await controller.waitFor("a session", () => controller.last);
    const { natsPublicKey, ...hello } = session.hello!;
    assert.match(natsPublicKey, /^U[A-Z2-7]{55}$/, "the public key of the NATS user key pair the agent made");
    assert.deepEqual(hello, {
      host: "host-a",
      hypervisorType: "fake",
      version: agent.options.version,
      capacity: { vcpus: 8, memoryMb: 8192, diskGb: 100 },
      zone: "az-1",
      migrationUri: `fake://fake-host${join(stateDir, "domains.json")}`,
      architecture: "x86_64",
      allocation: HostAllocation.fromPartial({}),
      tunnelIp: "",
      volumePools: [],
    });
    assert.deepEqual(session.metadata.get("authorization"), ["Bearer agent-secret"]);
    const first = await controller.waitFor("a report", () => session.reports[0], 500);
    assert.equal(first.freeMemoryMb, 8192);
    await controller.waitFor("a second report a second later", () => session.reports.length >= 2, 2_500);
  });

  test("a volume host says its pools in its hello and in every report", async () => {
    let free = 100;
    const volumes = poolsOnly("fake", () => [{ name: "p1", totalBytes: 100, freeBytes: free, provisionedBytes: 100 - free }]);
    await startAgent(fake(), { volumes });
    const session = await controller.waitFor("a session", () => controller.last);
    assert.deepEqual(session.hello!.volumePools, [{ name: "p1", backend: "fake", totalBytes: 100, freeBytes: 100, provisionedBytes: 0 }]);
    free = 60;
    const later = await controller.waitFor("a report with the pool's new figures", () => session.reports.find((r) => r.volumePools[0]?.freeBytes === 60), 2_500);
    assert.deepEqual(later.volumePools, [{ name: "p1", backend: "fake", totalBytes: 100, freeBytes: 60, provisionedBytes: 40 }]);
  });

  test("a volume backend that cannot tell its pools does not keep the host from the controller", async () => {
    let broken = true;
    const volumes = poolsOnly("file", () => {
      if (broken) throw new DriverError("VOLUME_COMMAND_FAILED", "qemu-img info failed");
      return [{ name: "p1", totalBytes: 100, freeBytes: 100, provisionedBytes: 0 }];
    });
    const agent = await startAgent(fake(), { volumes });
    await agent.connected();
    const session = await controller.waitFor("a session", () => controller.last);
    assert.deepEqual(session.hello!.volumePools, [], "a hello without pools");
    await controller.waitFor("a report", () => session.reports[0], 2_500);
    broken = false;
    await controller.waitFor("a report with the pool once the backend answers", () => session.reports.find((r) => r.volumePools.length === 1), 2_500);
  });

  test("a volume host runs a volume op, reports the volume's id and size, re-sends it after a reconnect, and acks after OpResultAck", async () => {
    controller.autoAck = false;
    const volumes = new FakeVolumeBackend({ pools: [{ name: "p1", totalBytes: 10 * GIB }] });
    await startAgent(fake(), { volumes });
    const vol = testVolume({ sizeBytes: 2 * GIB });
    const create = testVolumeOp(vol, { kind: "create_volume" });
    await ops.publish(publishable(create));
    const result = await controller.waitFor("the result", () => controller.last?.results.find((r) => r.opId === create.opId));
    assert.equal(result.error, undefined);
    assert.equal(result.serverId, "");
    assert.equal(result.volumeId, vol.id);
    assert.deepEqual(result.volume, { sizeBytes: 2 * GIB, export: undefined, device: "" });
    assert.equal((await volumes.list()).volumes[0]?.id, vol.id);
    controller.last!.kill();
    await controller.waitFor("a second session", () => controller.sessions.length === 2);
    const resent = await controller.waitFor("the re-sent result", () => controller.sessions[1]!.results[0]);
    assert.deepEqual(resent, result);
    assert.equal(await ops.ackPending(), 1, "not acked before the controller acknowledged");
    controller.sessions[1]!.ack(create.opId);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
  });

  test("a host exports a volume for an attachment and attaches that export to an instance; the results say the export and the device", async () => {
    const driver = fake();
    const volumes = new FakeVolumeBackend({ pools: [{ name: "p1", totalBytes: 10 * GIB }], address: "192.0.2.7" });
    await startAgent(driver, { volumes });
    const inst = testInstance();
    const vol = testVolume();
    const resultOf = (opId: string) => controller.waitFor(`the result of ${opId}`, () => controller.results.find((r) => r.opId === opId));
    const spawn = testOp(inst, { kind: "spawn" });
    const create = testVolumeOp(vol, { kind: "create_volume" });
    await ops.publish(spawn);
    await ops.publish(publishable(create));
    assert.equal((await resultOf(spawn.opId)).error, undefined);
    assert.equal((await resultOf(create.opId)).error, undefined);
    const exp = testVolumeOp(vol, { kind: "export_volume", attachmentId: "att-1", client: "host-a", serverId: inst.id });
    await ops.publish(publishable(exp));
    const exported = await resultOf(exp.opId);
    assert.equal(exported.error, undefined);
    assert.deepEqual([exported.serverId, exported.volumeId], [inst.id, vol.id]);
    assert.deepEqual(exported.volume, { sizeBytes: 0, export: { host: "192.0.2.7", port: 10809, exportName: "att-1" }, device: "" });
    const attach = testOp(inst, { kind: "attach_volume", attachmentId: "att-1", volumeId: vol.id, export: exported.volume!.export! });
    await ops.publish(attach);
    const attached = await resultOf(attach.opId);
    assert.equal(attached.error, undefined);
    assert.equal(attached.serverId, inst.id);
    assert.deepEqual(attached.volume, { sizeBytes: 0, export: undefined, device: "vdb" });
    assert.deepEqual((await driver.volumes({ instanceId: inst.id })).map((v) => [v.device, v.connection.host]), [["vdb", "192.0.2.7"]]);
  });

  test("an agent without a volume backend answers a volume op NO_VOLUME_BACKEND and acks it once acknowledged", async () => {
    await startAgent(fake());
    const vol = testVolume();
    const del = testVolumeOp(vol, { kind: "delete_volume" });
    await ops.publish(publishable(del));
    const result = await controller.waitFor("the result", () => controller.results.find((r) => r.opId === del.opId));
    assert.equal(result.error?.code, "NO_VOLUME_BACKEND");
    assert.equal(result.error?.retryable, false);
    assert.equal(result.volumeId, vol.id);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
  });

  test("runs a published op, reports its result, and acks JetStream only after OpResultAck", async () => {
    controller.autoAck = false;
    const driver = fake();
    await startAgent(driver);
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    await ops.publish(op);
    const result = await controller.waitFor("the result", () => controller.results.find((r) => r.opId === op.opId));
    assert.equal(result.serverId, inst.id);
    assert.equal(result.error, undefined);
    assert.equal(result.powerState, PowerState.POWER_STATE_RUNNING);
    assert.ok(result.startTime && result.finishTime && result.finishTime >= result.startTime);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await ops.ackPending(), 1, "not acked before the controller acknowledged");
    controller.last!.ack(op.opId);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
    const report = await controller.waitFor("a report listing the instance", () =>
      controller.last!.reports.find((r) => r.instances.some((i) => i.serverId === inst.id)),
    2_500);
    assert.equal(report.instances.find((i) => i.serverId === inst.id)?.powerState, PowerState.POWER_STATE_RUNNING);
  });

  test("an op message without an instance is answered INVALID_OP, not run, and acked once acknowledged", async () => {
    const driver = fake();
    await startAgent(driver);
    const op = testOp(testInstance(), { kind: "spawn" });
    await ops.publish(ComputeOp.encode({ ...computeOpOf(op), instance: undefined }).finish());
    const result = await controller.waitFor("the result", () => controller.results.find((r) => r.opId === op.opId));
    assert.deepEqual(result.error, { code: "INVALID_OP", message: "instance.id is empty", retryable: false });
    assert.equal(result.serverId, "");
    assert.equal(result.powerState, PowerState.POWER_STATE_UNSPECIFIED);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
    assert.deepEqual(driver.calls, [], "the driver was not called");
  });

  test("after losing the stream it reconnects, says Hello again and re-sends the unacknowledged result", async () => {
    controller.autoAck = false;
    const driver = fake();
    const agent = await startAgent(driver);
    const op = testOp(testInstance(), { kind: "spawn" });
    await ops.publish(op);
    const first = await controller.waitFor("the first session's result", () => controller.last?.results[0]);
    controller.last!.kill();
    await controller.waitFor("a second session", () => controller.sessions.length === 2);
    const resent = await controller.waitFor("the re-sent result", () => controller.sessions[1]!.results[0]);
    assert.deepEqual(resent, first);
    assert.equal(await ops.ackPending(), 1);
    controller.sessions[1]!.ack(op.opId);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
    assert.equal(agent.pendingResults, 0);
    assert.deepEqual(driver.calls.filter((c) => c.opId === op.opId).map((c) => c.method), ["spawn"]);
  });

  test("a restarted agent re-reports an op it finished before, without running it again", async () => {
    controller.autoAck = false;
    const first = await startAgent(fake(), { stopTimeoutMs: 300 });
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    await ops.publish(op);
    const result = await controller.waitFor("the result", () => controller.last?.results[0]);
    await first.stop(); // the controller never acknowledged: the message goes back to JetStream

    controller.autoAck = true;
    const driver = fake();
    await startAgent(driver);
    await controller.waitFor("the re-reported result", () => controller.sessions[1]?.results[0]);
    assert.deepEqual(controller.sessions[1]!.results[0], result);
    await controller.waitFor("the JetStream ack", async () => (await ops.ackPending()) === 0);
    assert.deepEqual(driver.calls, [], "the second agent did not call the driver");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
  });

  test("sends a live migration's progress on the stream as OpProgress, then its result", async () => {
    const driver = fake({ faults: { liveMigrate: { delayMs: 40 } } });
    await startAgent(driver, { progressIntervalMs: 0 });
    const inst = testInstance();
    await ops.publish(testOp(inst, { kind: "spawn" }));
    const migrate = testOp(inst, { kind: "live_migrate", targetHost: "host-b" });
    await ops.publish(migrate);
    const result = await controller.waitFor("the migration's result", () => controller.results.find((r) => r.opId === migrate.opId));
    assert.equal(result.error, undefined);
    assert.equal(result.powerState, PowerState.POWER_STATE_NOSTATE);
    const progress = controller.last!.progress.filter((p) => p.opId === migrate.opId);
    assert.deepEqual(progress.map((p) => p.percent), [0, 25, 50, 75, 100]);
    assert.ok(progress.every((p) => p.serverId === inst.id && p.message.length > 0));
  });

  test("stop() lets an in-flight op finish and its result be acknowledged before it returns", async () => {
    const driver = fake({ faults: { spawn: { delayMs: 400 } } });
    const agent = await startAgent(driver);
    await agent.connected();
    const op = testOp(testInstance(), { kind: "spawn" });
    await ops.publish(op);
    await controller.waitFor("the spawn to start", () => driver.calls.length === 1);
    await agent.stop();
    assert.equal(agent.state, "stopped");
    assert.equal(controller.results.find((r) => r.opId === op.opId)?.error, undefined);
    assert.equal(await ops.ackPending(), 0);
    assert.equal(controller.last!.ended, true, "the agent ended its stream");
  });
});
