import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { driverContract } from "../contract.js";
import { DriverError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import { FakeDriver } from "./fake-driver.js";
import { parseFaults } from "./faults.js";

driverContract("fake (in memory)", async () => new FakeDriver({ capacity: { vcpus: 4, memoryMb: 4096, diskGb: 20 } }));

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "fake-driver-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
driverContract("fake (persistent)", async () => new FakeDriver({ statePath: join(dir, `contract-${++n}.json`) }));

describe("FakeDriver faults", () => {
  test("an injected error fails every call with its code, message and retryable flag", async () => {
    const driver = new FakeDriver({ faults: { spawn: { error: "no bridge", code: "NET_DOWN", retryable: true } } });
    for (let i = 0; i < 3; i++) {
      await assert.rejects(driver.spawn({ instance: testInstance() }), (err: unknown) => {
        assert.ok(err instanceof DriverError);
        assert.equal(err.code, "NET_DOWN");
        assert.equal(err.message, "no bridge");
        assert.equal(err.retryable, true);
        return true;
      });
    }
    assert.equal((await driver.report()).instances.length, 0, "a failed spawn leaves nothing behind");
  });

  test("an injected error defaults to <METHOD>_FAILED and not retryable", async () => {
    const driver = new FakeDriver({ faults: { powerOff: { error: "stuck" } } });
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await assert.rejects(driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 }), {
      code: "POWER_OFF_FAILED",
      retryable: false,
    });
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING", "a failed power off keeps the state");
  });

  test("failTimes fails the first N calls, then the method works", async () => {
    const driver = new FakeDriver({ faults: { spawn: { failTimes: 2, retryable: true } } });
    const inst = testInstance();
    await assert.rejects(driver.spawn({ instance: inst }), { code: "SPAWN_FAILED", retryable: true });
    await assert.rejects(driver.spawn({ instance: inst }), { code: "SPAWN_FAILED" });
    await driver.spawn({ instance: inst });
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
  });

  test("delayMs delays the call, and an abort during the delay rejects with ABORTED", async () => {
    const driver = new FakeDriver({ faults: { spawn: { delayMs: 150 } } });
    const started = Date.now();
    await driver.spawn({ instance: testInstance() });
    assert.ok(Date.now() - started >= 140, "spawn took the configured delay");

    const inst = testInstance();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(driver.spawn({ instance: inst }, { signal: ac.signal }), { code: "ABORTED", retryable: true });
    await assert.rejects(driver.powerState({ instanceId: inst.id }), { code: "NOT_FOUND" });
  });

  test("the driver-wide delayMs applies to mutating calls only", async () => {
    const driver = new FakeDriver({ delayMs: 120 });
    let started = Date.now();
    await driver.report();
    assert.ok(Date.now() - started < 100, "report is not delayed");
    started = Date.now();
    await driver.destroy({ instanceId: "nope" });
    assert.ok(Date.now() - started >= 110, "destroy is delayed");
  });

  test("parseFaults rejects unknown methods and bad numbers", () => {
    assert.throws(() => parseFaults({ spwan: { error: "x" } }), /unknown method "spwan"/);
    assert.throws(() => parseFaults({ spawn: { delayMs: -1 } }), /delayMs/);
    assert.throws(() => parseFaults([]), /object/);
    assert.deepEqual(parseFaults({ reboot: { failTimes: 1 } }), { reboot: { failTimes: 1 } });
  });
});

describe("FakeDriver as a hypervisor", () => {
  test("refuses a spawn once the host is full and accepts it after a destroy", async () => {
    const driver = new FakeDriver({
      capacity: { vcpus: 2, memoryMb: 1024, diskGb: 10 },
      allocationRatio: { vcpus: 1, memoryMb: 1, diskGb: 1 },
    });
    const a = testInstance();
    const b = testInstance();
    await driver.spawn({ instance: a });
    await driver.spawn({ instance: b });
    const c = testInstance();
    await assert.rejects(driver.spawn({ instance: c }), { code: "INSUFFICIENT_RESOURCES", retryable: true });
    await driver.destroy({ instanceId: a.id });
    await driver.spawn({ instance: c });
  });

  test("a shut-off instance frees memory but not disk; powering it on needs the memory back", async () => {
    const driver = new FakeDriver({
      capacity: { vcpus: 4, memoryMb: 1024, diskGb: 10 },
      allocationRatio: { vcpus: 1, memoryMb: 1, diskGb: 1 },
    });
    const a = testInstance({ memoryMb: 1024 });
    await driver.spawn({ instance: a });
    await driver.powerOff({ instanceId: a.id, timeoutSeconds: 0 });
    assert.deepEqual(
      { mem: (await driver.report()).freeMemoryMb, disk: (await driver.report()).freeDiskGb },
      { mem: 1024, disk: 9 },
    );
    const b = testInstance({ memoryMb: 1024 });
    await driver.spawn({ instance: b });
    await assert.rejects(driver.powerOn({ instanceId: a.id }), { code: "INSUFFICIENT_RESOURCES" });
    assert.equal(await driver.powerState({ instanceId: a.id }), "SHUTDOWN");
  });

  test("spawning an existing id with a different spec fails with INSTANCE_EXISTS", async () => {
    const driver = new FakeDriver();
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await assert.rejects(driver.spawn({ instance: { ...inst, memoryMb: 2048 } }), { code: "INSTANCE_EXISTS" });
  });

  test("each reboot boots the instance once more", async () => {
    const driver = new FakeDriver();
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await driver.reboot({ instanceId: inst.id, hard: false });
    await driver.reboot({ instanceId: inst.id, hard: true });
    assert.equal(driver.domain(inst.id)?.boots, 3);
  });
});

describe("FakeDriver persistence", () => {
  test("a new FakeDriver on the same statePath finds the domains and their power states", async () => {
    const statePath = join(dir, "persist.json");
    const first = new FakeDriver({ statePath });
    const a = testInstance();
    const b = testInstance();
    await first.spawn({ instance: a });
    await first.spawn({ instance: b });
    await first.powerOff({ instanceId: b.id, timeoutSeconds: 0 });
    await first.close();

    const second = new FakeDriver({ statePath });
    await second.init();
    assert.equal(await second.powerState({ instanceId: a.id }), "RUNNING");
    assert.equal(await second.powerState({ instanceId: b.id }), "SHUTDOWN");
    assert.equal((await second.report()).instances.length, 2);
    await second.destroy({ instanceId: a.id });
    await second.close();

    const third = new FakeDriver({ statePath });
    assert.deepEqual((await third.report()).instances.map((i) => i.serverId), [b.id]);
  });

  test("mutating calls are appended to <statePath>.calls.jsonl with their opId", async () => {
    const statePath = join(dir, "calls.json");
    const driver = new FakeDriver({ statePath });
    const inst = testInstance();
    await driver.spawn({ instance: inst }, { opId: "op-1" });
    await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 }, { opId: "op-2" });
    await driver.report();
    await driver.powerState({ instanceId: inst.id });
    await driver.destroy({ instanceId: inst.id });
    const lines = (await readFile(`${statePath}.calls.jsonl`, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(
      lines.map((l) => [l.opId, l.method, l.instanceId]),
      [
        ["op-1", "spawn", inst.id],
        ["op-2", "powerOff", inst.id],
        [undefined, "destroy", inst.id],
      ],
    );
    assert.ok(lines.every((l) => !Number.isNaN(Date.parse(l.time))));
    assert.equal(driver.calls.length, 3);
  });
});
