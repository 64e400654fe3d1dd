import assert from "node:assert/strict";
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { PowerState } from "../../gen/novamesh/compute/v1/server.js";
import { FakeDriver, type FakeDriverOptions } from "../drivers/fake/fake-driver.js";
import { testInstance } from "../drivers/test-instance.js";
import { ExecutorClosedError, OpExecutor } from "./executor.js";
import { testOp } from "./test-ops.js";

let stateDir: string;
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "executor-"));
});
afterEach(async () => {
  await rm(stateDir, { recursive: true, force: true });
});

function fake(options: Partial<FakeDriverOptions> = {}): FakeDriver {
  return new FakeDriver({ statePath: join(stateDir, "domains.json"), ...options });
}

function callsOf(driver: FakeDriver, opId: string): string[] {
  return driver.calls.filter((c) => c.opId === opId).map((c) => c.method);
}

describe("OpExecutor: at most once per op id", () => {
  test("the same op delivered twice runs once and the second delivery re-reports the result", async () => {
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const op = testOp(testInstance(), { kind: "spawn" });
    const first = await executor.execute(op);
    const second = await executor.execute(op);
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    assert.equal(first.result.error, undefined);
    assert.equal(first.result.powerState, PowerState.POWER_STATE_RUNNING);
    assert.equal(second.replayed, true);
    assert.deepEqual(second.result, first.result);
    await executor.close();
  });

  test("a duplicate delivered while the op is still running shares its execution", async () => {
    const driver = fake({ faults: { spawn: { delayMs: 50 } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const op = testOp(testInstance(), { kind: "spawn" });
    const [a, b] = await Promise.all([executor.execute(op), executor.execute(op)]);
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    assert.deepEqual(a.result, b.result);
    await executor.close();
  });

  test("after an agent restart a finished op is re-reported, not re-run — even a failed one", async () => {
    const inst = testInstance();
    const reboot = testOp(inst, { kind: "reboot", hard: true });
    const driver1 = fake();
    const ex1 = await OpExecutor.open({ driver: driver1, stateDir });
    await ex1.execute(testOp(inst, { kind: "spawn" }));
    await ex1.execute(reboot);
    const missing = testOp(testInstance(), { kind: "powerOn" });
    const failed = await ex1.execute(missing);
    await ex1.close();
    await driver1.close();

    const driver2 = fake();
    await driver2.init();
    const ex2 = await OpExecutor.open({ driver: driver2, stateDir });
    const again = await ex2.execute(reboot);
    const failedAgain = await ex2.execute(missing);
    assert.equal(again.replayed, true);
    assert.equal(failedAgain.replayed, true);
    assert.deepEqual(failedAgain.result.error, failed.result.error);
    assert.equal(driver2.calls.length, 0, "the restarted agent called the driver for nothing");
    assert.equal(driver2.domain(inst.id)?.boots, 2, "spawned once and rebooted once");
    await ex2.close();
  });
});

describe("OpExecutor: reconciling an op interrupted between started and finished", () => {
  /** What a crash during the driver call leaves: `started` journaled, no `finished`. */
  async function journalStarted(opId: string, serverId: string, kind: string): Promise<void> {
    const line = { t: "started", opId, serverId, kind, time: new Date().toISOString() };
    await appendFile(join(stateDir, "ops-journal.jsonl"), `${JSON.stringify(line)}\n`);
  }

  test("spawn whose domain exists is reported successful without spawning again", async () => {
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    const before = fake();
    await before.spawn({ instance: inst }, { opId: op.opId }); // the driver call completed, then the agent died
    await journalStarted(op.opId, inst.id, "spawn");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const { result, reconciled } = await executor.execute(op);
    assert.equal(reconciled, true);
    assert.equal(result.error, undefined);
    assert.equal(result.powerState, PowerState.POWER_STATE_RUNNING);
    assert.deepEqual(callsOf(driver, op.opId), [], "spawn was not called again");
    assert.equal((await executor.execute(op)).replayed, true, "and now the outcome is journaled");
    await executor.close();
  });

  test("spawn whose domain does not exist is run", async () => {
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    await journalStarted(op.opId, inst.id, "spawn");
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const { result, reconciled } = await executor.execute(op);
    assert.equal(reconciled, true);
    assert.equal(result.error, undefined);
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    await executor.close();
  });

  test("spawn whose domain exists but is not running is powered on, not spawned again", async () => {
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    const before = fake();
    await before.spawn({ instance: inst });
    await before.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
    await journalStarted(op.opId, inst.id, "spawn");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const { result } = await executor.execute(op);
    assert.equal(result.error, undefined);
    assert.equal(result.powerState, PowerState.POWER_STATE_RUNNING);
    assert.deepEqual(callsOf(driver, op.opId), ["powerOn"]);
    await executor.close();
  });

  test("power off runs only if the instance is not already shut down", async () => {
    const done = testInstance();
    const notDone = testInstance();
    const setup = fake();
    for (const inst of [done, notDone]) await setup.spawn({ instance: inst });
    await setup.powerOff({ instanceId: done.id, timeoutSeconds: 0 });
    const opDone = testOp(done, { kind: "powerOff" });
    const opNotDone = testOp(notDone, { kind: "powerOff" });
    await journalStarted(opDone.opId, done.id, "powerOff");
    await journalStarted(opNotDone.opId, notDone.id, "powerOff");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const results = await Promise.all([executor.execute(opDone), executor.execute(opNotDone)]);
    assert.deepEqual(callsOf(driver, opDone.opId), []);
    assert.deepEqual(callsOf(driver, opNotDone.opId), ["powerOff"]);
    for (const r of results) assert.equal(r.result.powerState, PowerState.POWER_STATE_SHUTDOWN);
    await executor.close();
  });

  test("an op aborted by close() stays unfinished and is reconciled by the next executor", async () => {
    const inst = testInstance();
    const op = testOp(inst, { kind: "spawn" });
    const slow = fake({ faults: { spawn: { delayMs: 5_000 } } });
    const ex1 = await OpExecutor.open({ driver: slow, stateDir });
    const pending = ex1.execute(op);
    await new Promise((r) => setTimeout(r, 30));
    await ex1.close();
    await assert.rejects(pending, ExecutorClosedError);

    const driver = fake();
    const ex2 = await OpExecutor.open({ driver, stateDir });
    const { result, reconciled } = await ex2.execute(op);
    assert.equal(reconciled, true);
    assert.equal(result.powerState, PowerState.POWER_STATE_RUNNING);
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    await ex2.close();
  });
});

describe("OpExecutor: ordering and parallelism", () => {
  test("ops of one server run in arrival order while another server's ops run alongside", async () => {
    const driver = fake({ delayMs: 80 });
    const executor = await OpExecutor.open({ driver, stateDir });
    const a = testInstance();
    const b = testInstance();
    const started = Date.now();
    const results = await Promise.all([
      executor.execute(testOp(a, { kind: "spawn" })),
      executor.execute(testOp(a, { kind: "powerOff" })),
      executor.execute(testOp(a, { kind: "reboot", hard: true })),
      executor.execute(testOp(b, { kind: "spawn" })),
    ]);
    const elapsed = Date.now() - started;
    for (const r of results) assert.equal(r.result.error, undefined, JSON.stringify(r.result.error));
    assert.deepEqual(
      driver.calls.filter((c) => c.instanceId === a.id).map((c) => c.method),
      ["spawn", "powerOff", "reboot"],
    );
    assert.ok(elapsed >= 3 * 80 - 10, `server a's three ops ran one after another (${elapsed} ms)`);
    assert.ok(elapsed < 4 * 80, `server b's spawn ran alongside (${elapsed} ms)`);
    await executor.close();
  });

  test("no more than `concurrency` servers run at once", async () => {
    const driver = fake({ delayMs: 60 });
    const executor = await OpExecutor.open({ driver, stateDir, concurrency: 2 });
    const started = Date.now();
    await Promise.all([1, 2, 3, 4].map(() => executor.execute(testOp(testInstance(), { kind: "spawn" }))));
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 2 * 60 - 10 && elapsed < 3 * 60 + 40, `4 spawns in two waves took ${elapsed} ms`);
    await executor.close();
  });
});

describe("OpExecutor: errors", () => {
  test("a driver failure becomes OpError with its code, message and retryable flag", async () => {
    const driver = fake({ faults: { spawn: { error: "no space on pool", code: "DISK_FULL", retryable: true } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const { result } = await executor.execute(testOp(testInstance(), { kind: "spawn" }));
    assert.deepEqual(result.error, { code: "DISK_FULL", message: "no space on pool", retryable: true });
    assert.equal(result.powerState, PowerState.POWER_STATE_NOSTATE);
    await executor.close();
  });

  test("an unknown instance is NOT_FOUND and not retryable; refused capacity is retryable", async () => {
    const driver = fake({ capacity: { vcpus: 1, memoryMb: 256, diskGb: 1 } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const notFound = await executor.execute(testOp(testInstance(), { kind: "powerOn" }));
    assert.equal(notFound.result.error?.code, "NOT_FOUND");
    assert.equal(notFound.result.error?.retryable, false);
    const tooBig = await executor.execute(testOp(testInstance({ memoryMb: 4096 }), { kind: "spawn" }));
    assert.equal(tooBig.result.error?.code, "INSUFFICIENT_RESOURCES");
    assert.equal(tooBig.result.error?.retryable, true);
    await executor.close();
  });

  test("an op without an operation or instance is rejected as INVALID_OP without calling the driver", async () => {
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const op = { ...testOp(testInstance(), { kind: "spawn" }), op: undefined };
    const { result } = await executor.execute(op);
    assert.equal(result.error?.code, "INVALID_OP");
    const noInstance = await executor.execute({ ...testOp(testInstance(), { kind: "destroy" }), instance: undefined });
    assert.equal(noInstance.result.error?.code, "INVALID_OP");
    assert.equal(driver.calls.length, 0);
    await executor.close();
  });
});
