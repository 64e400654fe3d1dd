import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { FakeDriver, type FakeDriverOptions } from "../drivers/fake/fake-driver.js";
import { FakeNetworkDriver } from "../network/fake/fake-network-driver.js";
import { testNetwork, testPort } from "../network/test-ports.js";
import { testInstance } from "../drivers/test-instance.js";
import type { PowerState } from "../drivers/types.js";
import type { AgentOp, InvalidOp } from "./agent-op.js";
import { ExecutorClosedError, OpExecutor } from "./executor.js";
import type { OpProgressEvent } from "./progress.js";
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
    assert.equal(first.outcome.failure, undefined);
    assert.equal(first.outcome.powerState, "RUNNING");
    assert.equal(second.replayed, true);
    assert.deepEqual(second.outcome, first.outcome);
    await executor.close();
  });

  test("a duplicate delivered while the op is still running shares its execution", async () => {
    const driver = fake({ faults: { spawn: { delayMs: 50 } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const op = testOp(testInstance(), { kind: "spawn" });
    const [a, b] = await Promise.all([executor.execute(op), executor.execute(op)]);
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    assert.deepEqual(a.outcome, b.outcome);
    assert.deepEqual([a.joined, b.joined], [undefined, true], "the second delivery is marked as sharing the first's run");
    await executor.close();
  });

  test("after an agent restart a finished op is re-reported, not re-run — even a failed one", async () => {
    const inst = testInstance();
    const reboot = testOp(inst, { kind: "reboot", hard: true });
    const driver1 = fake();
    const ex1 = await OpExecutor.open({ driver: driver1, stateDir });
    await ex1.execute(testOp(inst, { kind: "spawn" }));
    await ex1.execute(reboot);
    const missing = testOp(testInstance(), { kind: "power_on" });
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
    assert.deepEqual(failedAgain.outcome.failure, failed.outcome.failure);
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
    const { outcome, reconciled } = await executor.execute(op);
    assert.equal(reconciled, true);
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.powerState, "RUNNING");
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
    const { outcome, reconciled } = await executor.execute(op);
    assert.equal(reconciled, true);
    assert.equal(outcome.failure, undefined);
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
    const { outcome } = await executor.execute(op);
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.powerState, "RUNNING");
    assert.deepEqual(callsOf(driver, op.opId), ["powerOn"]);
    await executor.close();
  });

  test("power off runs only if the instance is not already shut down", async () => {
    const done = testInstance();
    const notDone = testInstance();
    const setup = fake();
    for (const inst of [done, notDone]) await setup.spawn({ instance: inst });
    await setup.powerOff({ instanceId: done.id, timeoutSeconds: 0 });
    const opDone = testOp(done, { kind: "power_off" });
    const opNotDone = testOp(notDone, { kind: "power_off" });
    await journalStarted(opDone.opId, done.id, "power_off");
    await journalStarted(opNotDone.opId, notDone.id, "power_off");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const results = await Promise.all([executor.execute(opDone), executor.execute(opNotDone)]);
    assert.deepEqual(callsOf(driver, opDone.opId), []);
    assert.deepEqual(callsOf(driver, opNotDone.opId), ["powerOff"]);
    for (const r of results) assert.equal(r.outcome.powerState, "SHUTDOWN");
    await executor.close();
  });

  test("pause is skipped if the domain is PAUSED; suspend runs if it is not SUSPENDED", async () => {
    const paused = testInstance();
    const running = testInstance();
    const setup = fake();
    for (const inst of [paused, running]) await setup.spawn({ instance: inst });
    await setup.pause({ instanceId: paused.id });
    const pause = testOp(paused, { kind: "pause" });
    const suspend = testOp(running, { kind: "suspend" });
    await journalStarted(pause.opId, paused.id, "pause");
    await journalStarted(suspend.opId, running.id, "suspend");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const [p, s] = await Promise.all([executor.execute(pause), executor.execute(suspend)]);
    assert.deepEqual(callsOf(driver, pause.opId), []);
    assert.equal(p.outcome.powerState, "PAUSED");
    assert.deepEqual(callsOf(driver, suspend.opId), ["suspend"]);
    assert.equal(s.outcome.powerState, "SUSPENDED");
    assert.ok(p.reconciled && s.reconciled);
    await executor.close();
  });

  test("a live migration whose instance is gone from the source completed: skipped with a note; one still here runs again", async () => {
    const gone = testInstance();
    const here = testInstance();
    const setup = fake();
    await setup.spawn({ instance: here });
    const doneOp = testOp(gone, { kind: "live_migrate", targetHost: "b" });
    const againOp = testOp(here, { kind: "live_migrate", targetHost: "b" });
    await journalStarted(doneOp.opId, gone.id, "live_migrate");
    await journalStarted(againOp.opId, here.id, "live_migrate");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const done = await executor.execute(doneOp);
    assert.equal(done.outcome.failure, undefined);
    assert.equal(done.outcome.note, "the live migration had completed before an agent restart");
    assert.equal(done.outcome.powerState, "NOSTATE");
    assert.deepEqual(callsOf(driver, doneOp.opId), []);
    const again = await executor.execute(againOp);
    assert.equal(again.outcome.failure, undefined);
    assert.deepEqual(callsOf(driver, againOp.opId), ["liveMigrate"]);
    assert.equal(driver.domain(here.id), undefined);
    await executor.close();
  });

  test("a shelve whose instance is gone is reported done without snapshot info, and the note says why", async () => {
    const inst = testInstance();
    const op = testOp(inst, { kind: "shelve", imageId: "img-9" });
    await journalStarted(op.opId, inst.id, "shelve");
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const { outcome } = await executor.execute(op);
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.snapshot, undefined);
    assert.match(outcome.note ?? "", /snapshot's size and checksum are unknown/);
    assert.deepEqual(callsOf(driver, op.opId), []);
    await executor.close();
  });

  test("an interrupted op is not run again after its deadline, unless it is already done", async () => {
    const notDone = testInstance();
    const done = testInstance();
    const setup = fake();
    for (const inst of [notDone, done]) await setup.spawn({ instance: inst });
    await setup.pause({ instanceId: done.id });
    const deadline = new Date(Date.now() - 1);
    const late = { ...testOp(notDone, { kind: "pause" }), deadline };
    const lateButDone = { ...testOp(done, { kind: "pause" }), deadline };
    await journalStarted(late.opId, notDone.id, "pause");
    await journalStarted(lateButDone.opId, done.id, "pause");

    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const a = await executor.execute(late);
    assert.equal(a.outcome.failure?.code, "DEADLINE_EXCEEDED");
    assert.equal(a.outcome.powerState, "RUNNING");
    const b = await executor.execute(lateButDone);
    assert.equal(b.outcome.failure, undefined);
    assert.equal(driver.calls.length, 0);
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
    const { outcome, reconciled } = await ex2.execute(op);
    assert.equal(reconciled, true);
    assert.equal(outcome.powerState, "RUNNING");
    assert.deepEqual(callsOf(driver, op.opId), ["spawn"]);
    await ex2.close();
  });
});

/**
 * Records when the fake driver's spawn, powerOff and reboot start and end
 * (in order, no clock), and lets a test hold a call until something else
 * has happened (a gate that times out instead of hanging).
 */
function instrument(driver: FakeDriver, hold: (method: string, instanceId: string, inFlight: () => number, events: string[]) => Promise<void>) {
  const events: string[] = [];
  let inFlight = 0;
  let most = 0;
  for (const method of ["spawn", "powerOff", "reboot"] as const) {
    const original = (driver[method] as (o: unknown, c?: unknown) => Promise<void>).bind(driver);
    (driver as unknown as Record<string, unknown>)[method] = async (o: { instance?: { id: string }; instanceId?: string }, c?: unknown) => {
      const id = o.instance?.id ?? o.instanceId ?? "?";
      events.push(`start ${method} ${id}`);
      inFlight++;
      most = Math.max(most, inFlight);
      try {
        await hold(method, id, () => inFlight, events);
        await original(o, c);
      } finally {
        inFlight--;
        events.push(`end ${method} ${id}`);
      }
    };
  }
  return { events, most: () => most };
}

/** Resolves once `cond` holds (checked every 5 ms); rejects after 5 s, naming what it waited for. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`waited 5 s for ${what}`);
}

describe("OpExecutor: ordering and parallelism", () => {
  test("ops of one server run in arrival order, one at a time, while another server's ops run alongside", async () => {
    const driver = fake();
    const a = testInstance();
    const b = testInstance();
    // a's spawn goes on only once b's spawn has started: were servers run one at a time, it would never start.
    const calls = instrument(driver, (method, id, _n, events) =>
      id === a.id && method === "spawn" ? until(() => events.includes(`start spawn ${b.id}`), "server b's spawn to start alongside") : Promise.resolve(),
    );
    const executor = await OpExecutor.open({ driver, stateDir });
    const results = await Promise.all([
      executor.execute(testOp(a, { kind: "spawn" })),
      executor.execute(testOp(a, { kind: "power_off" })),
      executor.execute(testOp(a, { kind: "reboot", hard: true })),
      executor.execute(testOp(b, { kind: "spawn" })),
    ]);
    for (const r of results) assert.equal(r.outcome.failure, undefined, JSON.stringify(r.outcome.failure));
    assert.deepEqual(
      calls.events.filter((e) => e.endsWith(a.id)),
      ["spawn", "powerOff", "reboot"].flatMap((m) => [`start ${m} ${a.id}`, `end ${m} ${a.id}`]),
      "server a's ops ran in arrival order, each ending before the next started",
    );
    assert.ok(calls.events.indexOf(`start spawn ${b.id}`) < calls.events.indexOf(`end spawn ${a.id}`), "b's spawn ran alongside a's");
    await executor.close();
  });

  test("no more than `concurrency` servers run at once", async () => {
    const driver = fake();
    // Each spawn waits until two run (or the last ones are left): more than two at once would show as a peak above two.
    let done = 0;
    const calls = instrument(driver, (_m, _id, inFlight) => until(() => inFlight() >= 2 || done >= 3, "a second spawn to run alongside"));
    const executor = await OpExecutor.open({ driver, stateDir, concurrency: 2 });
    await Promise.all([1, 2, 3, 4].map(() => executor.execute(testOp(testInstance(), { kind: "spawn" })).then(() => done++)));
    assert.equal(calls.most(), 2, "two at once, never more");
    assert.equal(calls.events.filter((e) => e.startsWith("end spawn")).length, 4);
    await executor.close();
  });
});

describe("OpExecutor: errors", () => {
  test("a driver failure becomes OpError with its code, message and retryable flag", async () => {
    const driver = fake({ faults: { spawn: { error: "no space on pool", code: "DISK_FULL", retryable: true } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const { outcome } = await executor.execute(testOp(testInstance(), { kind: "spawn" }));
    assert.deepEqual(outcome.failure, { code: "DISK_FULL", message: "no space on pool", retryable: true });
    assert.equal(outcome.powerState, "NOSTATE");
    await executor.close();
  });

  test("an unknown instance is NOT_FOUND and not retryable; refused capacity is retryable", async () => {
    const driver = fake({ capacity: { vcpus: 1, memoryMb: 256, diskGb: 1 } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const notFound = await executor.execute(testOp(testInstance(), { kind: "power_on" }));
    assert.equal(notFound.outcome.failure?.code, "NOT_FOUND");
    assert.equal(notFound.outcome.failure?.retryable, false);
    const tooBig = await executor.execute(testOp(testInstance({ memoryMb: 4096 }), { kind: "spawn" }));
    assert.equal(tooBig.outcome.failure?.code, "INSUFFICIENT_RESOURCES");
    assert.equal(tooBig.outcome.failure?.retryable, true);
    await executor.close();
  });

  test("an op message that names nothing runnable is answered INVALID_OP without calling the driver or journaling", async () => {
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const noOp: InvalidOp = { opId: randomUUID(), serverId: testInstance().id, problem: "the op names no operation" };
    const { outcome, replayed } = await executor.execute(noOp);
    assert.deepEqual(outcome.failure, { code: "INVALID_OP", message: "the op names no operation", retryable: false });
    assert.equal(outcome.serverId, noOp.serverId);
    assert.equal(outcome.powerState, undefined, "nothing ran, so nothing is said of the instance");
    assert.equal(replayed, false);
    const noInstance = await executor.execute({ opId: randomUUID(), serverId: "", problem: "instance.id is empty" });
    assert.equal(noInstance.outcome.failure?.code, "INVALID_OP");
    assert.equal((await executor.execute(noOp)).replayed, false, "not journaled: nothing ran");
    assert.equal(driver.calls.length, 0);
    await executor.close();
  });
});

describe("OpExecutor: every op kind reaches its driver call", () => {
  test("a cold migration with revert, a live migration, a rollback and the rest dispatch to the right methods", async () => {
    const src = new FakeDriver({ hostname: "src", statePath: join(stateDir, "src", "domains.json") });
    const dst = new FakeDriver({ hostname: "dst", statePath: join(stateDir, "dst", "domains.json") });
    const exSrc = await OpExecutor.open({ driver: src, stateDir: join(stateDir, "src") });
    const exDst = await OpExecutor.open({ driver: dst, stateDir: join(stateDir, "dst") });
    const inst = testInstance();
    const bigger = { ...inst, memoryMb: 1024 };
    const steps: Array<[OpExecutor, FakeDriver, AgentOp, string[], PowerState]> = [
      [exSrc, src, testOp(inst, { kind: "spawn" }), ["spawn"], "RUNNING"],
      [exSrc, src, testOp(inst, { kind: "pause" }), ["pause"], "PAUSED"],
      [exSrc, src, testOp(inst, { kind: "unpause" }), ["unpause"], "RUNNING"],
      [exSrc, src, testOp(inst, { kind: "suspend" }), ["suspend"], "SUSPENDED"],
      [exSrc, src, testOp(inst, { kind: "resume" }), ["resume"], "RUNNING"],
      [exSrc, src, testOp(inst, { kind: "rebuild" }), ["rebuild"], "RUNNING"],
      [exSrc, src, testOp(inst, { kind: "migrate_disk", targetHost: "dst" }), ["migrateDiskAndPowerOff"], "SHUTDOWN"],
      [exDst, dst, testOp(bigger, { kind: "finish_migration", sourceHost: "src", powerOn: true }), ["finishMigration"], "RUNNING"],
      [exDst, dst, testOp(bigger, { kind: "revert_migration" }), ["destroy"], "NOSTATE"],
      [exSrc, src, testOp(inst, { kind: "finish_revert_migration", powerOn: true }), ["finishRevertMigration"], "RUNNING"],
      [exSrc, src, testOp(inst, { kind: "confirm_migration" }), ["confirmMigration"], "RUNNING"],
      [exDst, dst, testOp(inst, { kind: "pre_live_migration", sourceHost: "src" }), ["preLiveMigration"], "PAUSED"],
      [exDst, dst, testOp(inst, { kind: "rollback_live_migration" }), ["rollbackLiveMigration"], "NOSTATE"],
      [exDst, dst, testOp(inst, { kind: "pre_live_migration", sourceHost: "src" }), ["preLiveMigration"], "PAUSED"],
      [exSrc, src, testOp(inst, { kind: "live_migrate", targetHost: "dst", targetUri: dst.migrationUri! }), ["liveMigrate"], "NOSTATE"],
      [exDst, dst, testOp(inst, { kind: "post_live_migration", sourceHost: "src" }), ["postLiveMigration"], "RUNNING"],
      [exDst, dst, testOp(inst, { kind: "shelve", imageId: "img-shelved" }), ["powerOff", "snapshot", "destroy"], "NOSTATE"],
      [exDst, dst, testOp(inst, { kind: "rebuild", recreate: true }), ["spawn"], "RUNNING"],
    ];
    for (const [executor, driver, op, methods, powerState] of steps) {
      const { outcome } = await executor.execute(op);
      const { kind } = op;
      assert.equal(outcome.failure, undefined, `${kind}: ${JSON.stringify(outcome.failure)}`);
      assert.deepEqual(callsOf(driver, op.opId), methods, kind);
      assert.equal(outcome.powerState, powerState, `${kind} leaves ${powerState}`);
    }
    const shelve = steps.at(-2)![2];
    assert.match((await exDst.execute(shelve)).outcome.snapshot?.checksum ?? "", /^[0-9a-f]{64}$/, "the shelve result carries the snapshot");
    const recreate = steps.at(-1)![2];
    assert.equal((await exDst.execute(recreate)).outcome.note, "the instance was not on this host; created it");
    await exSrc.close();
    await exDst.close();
  });
});

describe("OpExecutor: soft reboot falls back to hard", () => {
  test("a guest that ignores ACPI is rebooted hard after the soft timeout, and the note says so", async () => {
    const inst = testInstance();
    const driver = fake({ faults: { ignoreAcpi: [inst.id] } });
    const executor = await OpExecutor.open({ driver, stateDir });
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const op = testOp(inst, { kind: "reboot", hard: false, softTimeoutSeconds: 1 });
    const started = Date.now();
    const { outcome } = await executor.execute(op);
    assert.ok(Date.now() - started >= 950, "the guest had its second");
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.note, "soft reboot not completed within 1 s; rebooted hard");
    assert.equal(outcome.powerState, "RUNNING");
    assert.deepEqual(callsOf(driver, op.opId), ["reboot", "reboot"]);
    assert.equal(driver.domain(inst.id)?.boots, 2, "booted by spawn and by the hard reboot only");
    await executor.close();
  });

  test("a driver that cannot soft reboot, or an instance that is not running, is rebooted hard with a note", async () => {
    const driver = fake({ capabilities: { softReboot: false } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const inst = testInstance();
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const cannot = await executor.execute(testOp(inst, { kind: "reboot", hard: false }));
    assert.equal(cannot.outcome.note, "the driver cannot soft reboot; rebooted hard");
    assert.equal(driver.domain(inst.id)?.boots, 2);
    await executor.close();

    const driver2 = new FakeDriver();
    const ex2 = await OpExecutor.open({ driver: driver2, stateDir: join(stateDir, "2") });
    await ex2.execute(testOp(inst, { kind: "spawn" }));
    await ex2.execute(testOp(inst, { kind: "power_off" }));
    const off = await ex2.execute(testOp(inst, { kind: "reboot", hard: false }));
    assert.equal(off.outcome.failure, undefined);
    assert.match(off.outcome.note ?? "", /^soft reboot not possible \(.*SHUTDOWN\); rebooted hard$/);
    assert.equal(off.outcome.powerState, "RUNNING");
    const hard = await ex2.execute(testOp(inst, { kind: "reboot", hard: true }));
    assert.equal(hard.outcome.note, undefined, "a plain reboot has no note");
    await ex2.close();
  });
});

describe("OpExecutor: abort", () => {
  test("aborting a running live migration finishes it ABORTED (journaled), the source keeps the instance", async () => {
    const inst = testInstance();
    const driver = fake({ faults: { liveMigrate: { delayMs: 150 } } });
    const progress: OpProgressEvent[] = [];
    const executor = await OpExecutor.open({ driver, stateDir, progressIntervalMs: 0, onProgress: (p) => progress.push(p) });
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const migrate = testOp(inst, { kind: "live_migrate", targetHost: "elsewhere" });
    const running = executor.execute(migrate);
    while (!progress.some((p) => p.opId === migrate.opId && p.percent === 25)) await new Promise((r) => setTimeout(r, 10));
    const abort = await executor.execute(testOp(inst, { kind: "abort", targetOpId: migrate.opId }));
    assert.equal(abort.outcome.failure, undefined);
    assert.equal(abort.outcome.note, "aborted");
    const { outcome } = await running;
    assert.equal(outcome.failure?.code, "ABORTED");
    assert.equal(outcome.failure?.retryable, false);
    assert.equal(outcome.powerState, "RUNNING");
    assert.ok(progress.every((p) => p.percent < 100), "it never completed");
    await executor.close();

    const ex2 = await OpExecutor.open({ driver: fake(), stateDir });
    const again = await ex2.execute(migrate);
    assert.equal(again.replayed, true, "journaled finished, not left started");
    assert.equal(again.outcome.failure?.code, "ABORTED");
    assert.equal((await ex2.execute(testOp(inst, { kind: "abort", targetOpId: migrate.opId }))).outcome.note, "already finished");
    await ex2.close();
  });

  test("an abort is not queued behind its server's ops; a queued target ends ABORTED without a driver call", async () => {
    const inst = testInstance();
    const driver = fake({ faults: { spawn: { delayMs: 400 } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    let spawnDone = false;
    const spawn = executor.execute(testOp(inst, { kind: "spawn" })).finally(() => (spawnDone = true));
    const powerOffOp = testOp(inst, { kind: "power_off" });
    const powerOff = executor.execute(powerOffOp);
    await new Promise((r) => setTimeout(r, 30));
    const abort = await executor.execute(testOp(inst, { kind: "abort", targetOpId: powerOffOp.opId }));
    assert.equal(spawnDone, false, "the abort was answered while the spawn (400 ms) still ran");
    assert.equal(abort.outcome.note, "aborted");
    const off = await powerOff;
    assert.equal(off.outcome.failure?.code, "ABORTED");
    assert.match(off.outcome.failure?.message ?? "", /before it started/);
    const spawned = await spawn;
    assert.equal(spawned.outcome.failure, undefined, "the running op was not touched");
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(callsOf(driver, powerOffOp.opId), [], "power off never reached the driver");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
    await executor.close();
  });

  test("an abort of an unknown op, or of another server's op", async () => {
    const driver = fake({ faults: { spawn: { delayMs: 200 } } });
    const executor = await OpExecutor.open({ driver, stateDir });
    const a = testInstance();
    const b = testInstance();
    const spawnA = testOp(a, { kind: "spawn" });
    const pending = executor.execute(spawnA);
    const unknown = await executor.execute(testOp(b, { kind: "abort", targetOpId: "no-such-op" }));
    assert.deepEqual([unknown.outcome.failure, unknown.outcome.note], [undefined, "op not running"]);
    const wrong = await executor.execute(testOp(b, { kind: "abort", targetOpId: spawnA.opId }));
    assert.equal(wrong.outcome.failure?.code, "INVALID_OP");
    assert.equal((await pending).outcome.failure, undefined, "a's spawn went on");
    await executor.close();
  });
});

describe("OpExecutor: results carry snapshot info and notes, also when replayed", () => {
  test("a snapshot's info is in the result and re-reported after a restart", async () => {
    const inst = testInstance();
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const op = testOp(inst, { kind: "snapshot", imageId: "img-1" });
    const { outcome } = await executor.execute(op);
    const expected = await driver.snapshot({ instanceId: inst.id, imageId: "img-1", imageName: "x" });
    assert.deepEqual(outcome.snapshot, expected);
    assert.equal(outcome.powerState, "RUNNING");
    await executor.close();

    const ex2 = await OpExecutor.open({ driver: fake(), stateDir });
    const again = await ex2.execute(op);
    assert.equal(again.replayed, true);
    assert.deepEqual(again.outcome, outcome);
    await ex2.close();
  });

  test("progress is throttled per op: with a long interval only the first and the 100 % get through", async () => {
    const inst = testInstance();
    const progress: OpProgressEvent[] = [];
    const executor = await OpExecutor.open({ driver: fake(), stateDir, progressIntervalMs: 60_000, onProgress: (p) => progress.push(p) });
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const op = testOp(inst, { kind: "live_migrate", targetHost: "b" });
    await executor.execute(op);
    assert.deepEqual(
      progress.map((p) => [p.opId, p.serverId, p.percent]),
      [
        [op.opId, inst.id, 0],
        [op.opId, inst.id, 100],
      ],
    );
    await executor.close();
  });
});

describe("OpExecutor: deadlines", () => {
  test("an op past its deadline is not started and finishes DEADLINE_EXCEEDED, journaled", async () => {
    const inst = testInstance();
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir });
    const late = { ...testOp(inst, { kind: "spawn" }), deadline: new Date(Date.now() - 1_000) };
    const { outcome } = await executor.execute(late);
    assert.equal(outcome.failure?.code, "DEADLINE_EXCEEDED");
    assert.equal(outcome.failure?.retryable, false);
    assert.equal(driver.calls.length, 0);
    assert.equal((await executor.execute(late)).replayed, true);
    const inTime = { ...testOp(inst, { kind: "spawn" }), deadline: new Date(Date.now() + 60_000) };
    assert.equal((await executor.execute(inTime)).outcome.failure, undefined);
    await executor.close();
  });
});

describe("OpExecutor: task steps", () => {
  test("rebuild, snapshot and shelve report each step they reach, in order, before their result", async () => {
    const progress: OpProgressEvent[] = [];
    const driver = fake();
    const executor = await OpExecutor.open({ driver, stateDir, progressIntervalMs: 60_000, onProgress: (p) => progress.push(p) });
    const inst = testInstance();
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const rebuild = testOp(inst, { kind: "rebuild" });
    const snapshot = testOp(inst, { kind: "snapshot", imageId: "img-1" });
    const shelve = testOp(inst, { kind: "shelve", imageId: "img-2" });
    for (const op of [rebuild, snapshot, shelve]) assert.equal((await executor.execute(op)).outcome.failure, undefined);
    const stages = (opId: string) => progress.filter((p) => p.opId === opId).map((p) => p.stage);
    assert.deepEqual(stages(rebuild.opId), ["REBUILD_SPAWNING"]);
    assert.deepEqual(stages(snapshot.opId), ["IMAGE_UPLOADING"]);
    assert.deepEqual(stages(shelve.opId), ["SHELVING_IMAGE_UPLOADING", "SHELVING_OFFLOADING"]);
    // A shelve without an image stores nothing: it goes straight to offloading.
    await executor.execute(testOp(inst, { kind: "spawn" }));
    const bare = testOp(inst, { kind: "shelve" });
    await executor.execute(bare);
    assert.deepEqual(stages(bare.opId), ["SHELVING_OFFLOADING"]);
    await executor.close();
  });
});

describe("OpExecutor: port refreshes from the controller", () => {
  test("a refresh updates the ports plugged here and neither plugs back a removed port nor plugs one ahead of its op", async () => {
    const network = new FakeNetworkDriver({ tunnelIp: "192.0.2.1" });
    const executor = await OpExecutor.open({ driver: fake(), network, stateDir });
    const net = testNetwork(7);
    const [kept, removed, coming] = [testPort(net, 10), testPort(net, 11), testPort(net, 12)];
    await network.plug("i1", [kept, removed]);
    await network.unplug("i1", [removed.id]);
    const rule = { direction: "ingress", protocol: "tcp", portMin: 22, portMax: 22, remoteCidr: "0.0.0.0/0", remoteAddresses: null } as const;
    // Computed before the detach (and before an attach): it still names the removed port and already the coming one.
    await executor.refreshPorts("i1", [{ ...kept, securityRules: [rule] }, removed, coming]);
    const ports = (await network.plugged()).get("i1") ?? [];
    assert.deepEqual(ports.map((p) => p.id), [kept.id], "only the port plugged here is refreshed");
    assert.deepEqual(ports[0]!.securityRules, [rule], "with the rules sent");
    // An instance with nothing plugged here is left alone.
    await executor.refreshPorts("i2", [testPort(net, 13)]);
    assert.equal((await network.plugged()).has("i2"), false);
    await executor.close();
  });
});
