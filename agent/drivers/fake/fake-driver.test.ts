import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { driverContract } from "../contract.js";
import type { Driver } from "../driver.js";
import { DriverError, NotSupportedError } from "../errors.js";
import { testInstance } from "../test-instance.js";
import { setDomainPowerState } from "./domain-store.js";
import { FakeDriver } from "./fake-driver.js";
import { parseFaults } from "./faults.js";

/** Two exports of one volume, on the two ports a volume host gives two compute hosts. */
const migratingVolume = async (attachmentId: string) => ({
  source: { host: "192.0.2.1", port: 10809, exportName: attachmentId, tls: true as const },
  target: { host: "192.0.2.1", port: 10810, exportName: `${attachmentId}-moved`, tls: true as const },
});

/** The fake's interfaces: the domain's spec. */
const interfaceMacs = async (driver: Driver, id: string) => (driver as FakeDriver).domain(id)?.instance.vifs?.map((v) => v.mac) ?? [];

driverContract("fake (in memory)", async (hostname) => new FakeDriver({ hostname, capacity: { vcpus: 4, memoryMb: 4096, diskGb: 20 } }), {
  interfaceMacs,
  migratingVolume,
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "fake-driver-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
driverContract("fake (persistent)", async (hostname) => new FakeDriver({ hostname, statePath: join(dir, `contract-${++n}.json`) }), {
  interfaceMacs,
  migratingVolume,
});

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
    const started = Date.now();
    let destroyed = false;
    const destroy = driver.destroy({ instanceId: "nope" }).finally(() => (destroyed = true));
    await driver.report();
    assert.equal(destroyed, false, "report is not delayed: it is answered while a destroy waits");
    await destroy;
    assert.ok(Date.now() - started >= 110, "destroy is delayed");
  });

  test("parseFaults rejects unknown methods and bad numbers", () => {
    assert.throws(() => parseFaults({ spwan: { error: "x" } }), /unknown method "spwan"/);
    assert.throws(() => parseFaults({ spawn: { delayMs: -1 } }), /delayMs/);
    assert.throws(() => parseFaults([]), /object/);
    assert.deepEqual(parseFaults({ reboot: { failTimes: 1 } }), { reboot: { failTimes: 1 } });
  });

  test("parseFaults takes lists, server ids, ignoreAcpi and the migrateDisk alias; rejects what it does not know", () => {
    assert.deepEqual(
      parseFaults({ liveMigrate: [{ serverId: "a", delayMs: 500 }, { error: "x" }], migrateDisk: { error: "y" }, ignoreAcpi: ["a"] }),
      { liveMigrate: [{ serverId: "a", delayMs: 500 }, { error: "x" }], migrateDiskAndPowerOff: { error: "y" }, ignoreAcpi: ["a"] },
    );
    assert.deepEqual(parseFaults({ ignoreAcpi: true }), { ignoreAcpi: true });
    assert.throws(() => parseFaults({ ignoreAcpi: "a" }), /ignoreAcpi/);
    assert.throws(() => parseFaults({ spawn: { delay: 5 } }), /unknown key "delay"/);
    assert.throws(() => parseFaults({ spawn: [{ serverId: 5 }] }), /serverId must be a string/);
    assert.throws(() => parseFaults({ migrateDisk: {}, migrateDiskAndPowerOff: {} }), /given twice/);
  });

  test("a fault with a serverId hits only that server; in a list the first matching spec applies", async () => {
    const a = testInstance();
    const b = testInstance();
    const driver = new FakeDriver({
      faults: { spawn: [{ serverId: a.id, error: "a is cursed", code: "CURSED" }, { serverId: b.id, delayMs: 120 }] },
    });
    await assert.rejects(driver.spawn({ instance: a }), { code: "CURSED" });
    const started = Date.now();
    let bDone = false;
    const spawnB = driver.spawn({ instance: b }).finally(() => (bDone = true));
    const c = testInstance();
    await driver.spawn({ instance: c });
    assert.equal(bDone, false, "c matches no spec: it is up while b still waits");
    await spawnB;
    assert.ok(Date.now() - started >= 110, "b got its own delay");
    assert.equal(await driver.powerState({ instanceId: b.id }), "RUNNING");
  });

  test("ignoreAcpi: a soft reboot times out after timeoutSeconds with SOFT_REBOOT_TIMEOUT and changes nothing", async () => {
    const deaf = testInstance();
    const fine = testInstance();
    const driver = new FakeDriver({ faults: { ignoreAcpi: [deaf.id] } });
    await driver.spawn({ instance: deaf });
    await driver.spawn({ instance: fine });
    const started = Date.now();
    await assert.rejects(driver.reboot({ instanceId: deaf.id, hard: false, timeoutSeconds: 0.1 }), (err: unknown) => {
      assert.ok(err instanceof DriverError);
      assert.equal(err.code, "SOFT_REBOOT_TIMEOUT");
      assert.equal((err as DriverError & { timeoutSeconds: number }).timeoutSeconds, 0.1);
      return true;
    });
    assert.ok(Date.now() - started >= 90, "it waited the timeout");
    assert.equal(driver.domain(deaf.id)?.boots, 1, "not rebooted");
    assert.equal(await driver.powerState({ instanceId: deaf.id }), "RUNNING");
    await driver.reboot({ instanceId: fine.id, hard: false, timeoutSeconds: 0.1 });
    assert.equal(driver.domain(fine.id)?.boots, 2);
    await driver.reboot({ instanceId: deaf.id, hard: true });
    assert.equal(driver.domain(deaf.id)?.boots, 2, "a hard reboot needs no ACPI");
  });

  test("ignoreAcpi: a power off waits its timeout and forces the instance off; an abort while waiting keeps it running", async () => {
    const inst = testInstance();
    const driver = new FakeDriver({ faults: { ignoreAcpi: true } });
    await driver.spawn({ instance: inst });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(driver.powerOff({ instanceId: inst.id, timeoutSeconds: 5 }, { signal: ac.signal }), { code: "ABORTED" });
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
    const started = Date.now();
    await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0.1 });
    assert.ok(Date.now() - started >= 90, "it waited for the guest first");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
  });

  test("capabilities can be turned off: the calls then throw NotSupportedError", async () => {
    const driver = new FakeDriver({ capabilities: { liveMigration: false, softReboot: false, snapshot: false } });
    assert.equal(driver.migrationUri, undefined);
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await assert.rejects(driver.reboot({ instanceId: inst.id, hard: false }), NotSupportedError);
    await assert.rejects(driver.snapshot({ instanceId: inst.id, imageId: "i", imageName: "n" }), NotSupportedError);
    await assert.rejects(driver.liveMigrate({ instanceId: inst.id, targetHost: "b", targetUri: "fake://b", volumes: [] }), NotSupportedError);
    assert.equal(new FakeDriver({ hostname: "h1" }).migrationUri, "fake://h1");
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
    assert.ok(lines.every((l) => l.pid === process.pid), "each call names the process that made it");
    assert.equal(driver.calls.length, 3);
  });
});

describe("FakeDriver snapshot, suspend, rebuild, resize in place", () => {
  test("a snapshot's checksum depends on the domain and the image id only; size is about a tenth of the disk", async () => {
    const driver = new FakeDriver();
    const inst = testInstance({ diskGb: 10 });
    await driver.spawn({ instance: inst });
    const a = await driver.snapshot({ instanceId: inst.id, imageId: "img-1", imageName: "one" });
    const b = await driver.snapshot({ instanceId: inst.id, imageId: "img-1", imageName: "renamed" });
    const c = await driver.snapshot({ instanceId: inst.id, imageId: "img-2", imageName: "two" });
    assert.deepEqual(a, b);
    assert.notEqual(a.checksum, c.checksum);
    assert.equal(a.diskFormat, "qcow2");
    assert.ok(a.sizeBytes >= 1024 * 2 ** 20 && a.sizeBytes < 1025 * 2 ** 20, `size ${a.sizeBytes}`);
  });

  test("a suspended instance frees its memory; resuming needs it back", async () => {
    const driver = new FakeDriver({ capacity: { vcpus: 4, memoryMb: 1024, diskGb: 10 }, allocationRatio: { vcpus: 1, memoryMb: 1, diskGb: 1 } });
    const a = testInstance({ memoryMb: 1024 });
    await driver.spawn({ instance: a });
    await driver.suspend({ instanceId: a.id });
    assert.equal((await driver.report()).freeMemoryMb, 1024);
    const b = testInstance({ memoryMb: 1024 });
    await driver.spawn({ instance: b });
    await assert.rejects(driver.resume({ instanceId: a.id }), { code: "INSUFFICIENT_RESOURCES", retryable: true });
    assert.equal(await driver.powerState({ instanceId: a.id }), "SUSPENDED");
  });

  test("rebuild boots the new image and counts a boot", async () => {
    const driver = new FakeDriver();
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await driver.rebuild({ instance: { ...inst, image: { ...inst.image, id: "new-image" } } });
    assert.equal(driver.domain(inst.id)?.instance.image.id, "new-image");
    assert.equal(driver.domain(inst.id)?.boots, 2);
  });

  test("the old copy of a migration refuses to start, be rebooted, snapshotted or migrated elsewhere", async () => {
    const driver = new FakeDriver();
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await driver.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: "b", timeoutSeconds: 0 });
    await assert.rejects(driver.powerOn({ instanceId: inst.id }), { code: "INVALID_STATE" });
    await assert.rejects(driver.reboot({ instanceId: inst.id, hard: true }), { code: "INVALID_STATE" });
    await assert.rejects(driver.snapshot({ instanceId: inst.id, imageId: "i", imageName: "n" }), { code: "INVALID_STATE" });
    await assert.rejects(driver.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: "c", timeoutSeconds: 0 }), {
      code: "INVALID_STATE",
    });
    await assert.rejects(driver.spawn({ instance: inst }), { code: "INSTANCE_EXISTS" });
    await driver.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
    assert.equal(driver.domain(inst.id)?.migratedTo, "b");
  });

  test("a resize in place survives a restart half way and can still be reverted", async () => {
    const statePath = join(dir, "resize.json");
    const first = new FakeDriver({ hostname: "h", statePath });
    const inst = testInstance();
    await first.spawn({ instance: inst });
    await first.migrateDiskAndPowerOff({ instanceId: inst.id, targetHost: "h", timeoutSeconds: 0 });
    await first.finishMigration({ instance: { ...inst, memoryMb: 2048 }, sourceHost: "h", powerOn: true });
    await first.close();

    const second = new FakeDriver({ hostname: "h", statePath });
    await second.init();
    assert.equal(second.domain(inst.id)?.instance.memoryMb, 2048);
    assert.equal(second.resizeStash(inst.id)?.instance.memoryMb, 512);
    await second.destroy({ instanceId: inst.id });
    await second.finishRevertMigration({ instanceId: inst.id, powerOn: false });
    assert.equal(second.domain(inst.id)?.instance.memoryMb, 512);
    assert.equal(second.domain(inst.id)?.powerState, "SHUTDOWN");
    assert.equal(second.domain(inst.id)?.migratedTo, undefined);
    assert.equal(second.resizeStash(inst.id), undefined);
    await second.close();
  });
});

describe("FakeDriver: power state changed behind the agent's back", () => {
  test("setDomainPowerState from outside is applied at the driver's next call, once, and survives a restart", async () => {
    const statePath = join(dir, "external.json");
    const driver = new FakeDriver({ statePath });
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await setDomainPowerState(statePath, inst.id, "SHUTDOWN");
    await setDomainPowerState(statePath, testInstance().id, "CRASHED"); // unknown: ignored
    const report = await driver.report();
    assert.deepEqual(report.instances, [{ serverId: inst.id, powerState: "SHUTDOWN" }]);
    await driver.powerOn({ instanceId: inst.id });
    await driver.close();

    const restarted = new FakeDriver({ statePath });
    assert.equal(await restarted.powerState({ instanceId: inst.id }), "RUNNING", "the old event is not applied again");
    await setDomainPowerState(statePath, inst.id, "CRASHED");
    assert.equal(await restarted.powerState({ instanceId: inst.id }), "CRASHED");
    await restarted.close();
  });

  test("a line still being written is applied only once complete", async () => {
    const statePath = join(dir, "torn.json");
    const driver = new FakeDriver({ statePath });
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    const line = JSON.stringify({ serverId: inst.id, powerState: "SHUTDOWN", time: new Date().toISOString() });
    await appendFile(`${statePath}.events.jsonl`, line.slice(0, 20));
    assert.equal(await driver.powerState({ instanceId: inst.id }), "RUNNING");
    await appendFile(`${statePath}.events.jsonl`, `${line.slice(20)}\n`);
    assert.equal(await driver.powerState({ instanceId: inst.id }), "SHUTDOWN");
    await driver.close();
  });

  test("setPowerState does it in process, for drivers without a state file", async () => {
    const driver = new FakeDriver();
    const inst = testInstance();
    await driver.spawn({ instance: inst });
    await driver.setPowerState(inst.id, "CRASHED");
    assert.equal(await driver.powerState({ instanceId: inst.id }), "CRASHED");
    await assert.rejects(driver.setPowerState(testInstance().id, "RUNNING"), { code: "NOT_FOUND" });
  });
});
