import assert from "node:assert/strict";
import { appendFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { FakeDriver, type FakeDriverOptions } from "../drivers/fake/fake-driver.js";
import { testInstance } from "../drivers/test-instance.js";
import type { InstanceSpec } from "../drivers/types.js";
import { OpExecutor } from "./executor.js";
import { testOp } from "./test-ops.js";

let stateDir: string;
const open: OpExecutor[] = [];
beforeEach(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "volume-attach-"));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.close()));
  await rm(stateDir, { recursive: true, force: true });
});

function fake(options: Partial<FakeDriverOptions> = {}): FakeDriver {
  return new FakeDriver({ statePath: join(stateDir, "domains.json"), ...options });
}

async function executor(driver: FakeDriver): Promise<OpExecutor> {
  const ex = await OpExecutor.open({ driver, stateDir, fsync: false });
  open.push(ex);
  return ex;
}

/** A running instance on `driver`. */
async function spawned(ex: OpExecutor): Promise<InstanceSpec> {
  const inst = testInstance();
  assert.equal((await ex.execute(testOp(inst, { kind: "spawn" }))).outcome.failure, undefined);
  return inst;
}

const exportOf = (attachmentId: string) => ({ host: "192.0.2.7", port: 10810, exportName: attachmentId });

describe("Attaching and detaching volumes through the driver", () => {
  test("an attach reports the device the driver gave; the volume is attached with its export; a device asked for is used", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    const { outcome } = await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-1", export: exportOf("att-1") }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.serverId, inst.id);
    assert.deepEqual(outcome.volume, { device: "vdb" });
    assert.equal(outcome.powerState, "RUNNING");
    const asked = await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-2", export: exportOf("att-2"), device: "vdd" }));
    assert.deepEqual(asked.outcome.volume, { device: "vdd" });
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [
      { attachmentId: "att-1", device: "vdb", connection: { ...exportOf("att-1"), tls: true } },
      { attachmentId: "att-2", device: "vdd", connection: { ...exportOf("att-2"), tls: true } },
    ]);
    const taken = await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-3", export: exportOf("att-3"), device: "vdb" }));
    assert.deepEqual([taken.outcome.failure?.code, taken.outcome.failure?.retryable, taken.outcome.volume], ["DEVICE_IN_USE", false, undefined]);
  });

  test("a detach removes the volume; a detach of an attachment the instance does not have succeeds", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-1" }));
    const { outcome } = await ex.execute(testOp(inst, { kind: "detach_volume", attachmentId: "att-1" }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.volume, undefined);
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), []);
    const unknown = await ex.execute(testOp(inst, { kind: "detach_volume", attachmentId: "att-never" }));
    assert.equal(unknown.outcome.failure, undefined);
  });

  test("an extend of a volume's disk gives the instance the new size, which the outcome reports; an attachment the instance does not have is NOT_FOUND", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-1", export: exportOf("att-1") }));
    const { outcome } = await ex.execute(testOp(inst, { kind: "extend_volume_disk", attachmentId: "att-1", sizeBytes: 3 * 1024 ** 3 }));
    assert.equal(outcome.failure, undefined);
    assert.deepEqual([outcome.volume, outcome.powerState], [{ sizeBytes: 3 * 1024 ** 3 }, "RUNNING"]);
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [
      { attachmentId: "att-1", device: "vdb", connection: { ...exportOf("att-1"), tls: true }, sizeBytes: 3 * 1024 ** 3 },
    ]);
    const unknown = await ex.execute(testOp(inst, { kind: "extend_volume_disk", attachmentId: "att-never" }));
    assert.deepEqual([unknown.outcome.failure?.code, unknown.outcome.failure?.retryable], ["NOT_FOUND", false]);
  });

  test("a hold pauses the running instance, which the outcome reports, until the extend that follows it", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-1", export: exportOf("att-1") }));
    const held = await ex.execute(testOp(inst, { kind: "hold_volume_disk", attachmentId: "att-1" }));
    assert.deepEqual([held.outcome.failure, held.outcome.powerState], [undefined, "PAUSED"]);
    const grown = await ex.execute(testOp(inst, { kind: "extend_volume_disk", attachmentId: "att-1", sizeBytes: 2 * 1024 ** 3 }));
    assert.deepEqual([grown.outcome.failure, grown.outcome.powerState], [undefined, "RUNNING"]);
    const unknown = await ex.execute(testOp(inst, { kind: "hold_volume_disk", attachmentId: "att-never" }));
    assert.deepEqual([unknown.outcome.failure?.code, unknown.outcome.failure?.retryable], ["NOT_FOUND", false]);
  });

  test("a redelivered attach is re-reported with its device, without calling the driver again", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    const attach = testOp(inst, { kind: "attach_volume", attachmentId: "att-1" });
    const first = await ex.execute(attach);
    const again = await ex.execute(attach);
    assert.equal(again.replayed, true);
    assert.deepEqual(again.outcome, first.outcome);
    assert.deepEqual(again.outcome.volume, { device: "vdb" });
    assert.equal(driver.calls.filter((c) => c.opId === attach.opId).length, 1);
  });

  test("an attach interrupted by a restart runs again and reports the device the volume already has", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = await spawned(ex);
    const attach = testOp(inst, { kind: "attach_volume", attachmentId: "att-1", device: "vdc" });
    // The driver attached it; the agent died before journaling the outcome.
    await driver.attachVolume({ instanceId: inst.id, attachmentId: "att-1", connection: { ...attach.export, tls: true }, device: "vdc" });
    await ex.close();
    const line = { t: "started", opId: attach.opId, serverId: inst.id, kind: "attach_volume", time: new Date().toISOString() };
    await appendFile(join(stateDir, "ops-journal.jsonl"), `${JSON.stringify(line)}\n`);
    const restarted = await executor(driver);
    const { outcome, reconciled } = await restarted.execute(attach);
    assert.equal(reconciled, true);
    assert.equal(outcome.failure, undefined);
    assert.deepEqual(outcome.volume, { device: "vdc" });
    assert.equal((await driver.volumes({ instanceId: inst.id })).length, 1);
  });

  test("a hypervisor that cannot attach volumes refuses attach, detach, hold and extend with a non-retryable NOT_SUPPORTED", async () => {
    const driver = fake({ capabilities: { volumeAttach: false } });
    const ex = await executor(driver);
    const inst = await spawned(ex);
    for (const body of [{ kind: "attach_volume" as const }, { kind: "detach_volume" as const }, { kind: "extend_volume_disk" as const }, { kind: "hold_volume_disk" as const }]) {
      const { outcome } = await ex.execute(testOp(inst, body));
      assert.deepEqual(outcome.failure, {
        code: "NOT_SUPPORTED",
        message: `${body.kind}: this host's hypervisor cannot attach volumes (its driver lacks volumeAttach)`,
        retryable: false,
      });
    }
  });

  test("an attach to an instance not on this host fails NOT_FOUND", async () => {
    const ex = await executor(fake());
    const { outcome } = await ex.execute(testOp(testInstance(), { kind: "attach_volume" }));
    assert.equal(outcome.failure?.code, "NOT_FOUND");
    assert.equal(outcome.failure?.retryable, false);
  });
});

describe("Booting from a volume through the driver", () => {
  test("a spawn from a volume runs the instance with the volume's export on vda; another volume then attaches as vdb", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const inst = testInstance();
    const { outcome } = await ex.execute(testOp(inst, { kind: "spawn", rootAttachmentId: "att-root", rootExport: exportOf("att-root") }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.powerState, "RUNNING");
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [{ attachmentId: "att-root", device: "vda", connection: { ...exportOf("att-root"), tls: true } }]);
    const next = await ex.execute(testOp(inst, { kind: "attach_volume", attachmentId: "att-2", export: exportOf("att-2") }));
    assert.deepEqual(next.outcome.volume, { device: "vdb" });
  });

  test("a hypervisor that cannot attach volumes refuses a spawn from a volume with a non-retryable NOT_SUPPORTED and creates nothing", async () => {
    const driver = fake({ capabilities: { volumeAttach: false } });
    const ex = await executor(driver);
    const inst = testInstance();
    const { outcome } = await ex.execute(testOp(inst, { kind: "spawn", rootAttachmentId: "att-root", rootExport: exportOf("att-root") }));
    assert.deepEqual([outcome.failure?.code, outcome.failure?.retryable], ["NOT_SUPPORTED", false]);
    assert.equal((await driver.report()).instances.some((i) => i.serverId === inst.id), false, "no instance made");
  });

  test("a spawn and an evacuation's rebuild create the instance with its root volume and attached volumes at the exports given, over TLS", async () => {
    const driver = fake();
    const ex = await executor(driver);
    const volumes = [{ attachmentId: "att-d", device: "vdd", export: exportOf("att-d") }];
    const inst = testInstance();
    const spawned = await ex.execute(testOp(inst, { kind: "spawn", volumes }));
    assert.equal(spawned.outcome.failure, undefined);
    assert.deepEqual(await driver.volumes({ instanceId: inst.id }), [{ attachmentId: "att-d", device: "vdd", connection: { ...exportOf("att-d"), tls: true } }]);
    const evacuated = testInstance();
    const { outcome } = await ex.execute(testOp(evacuated, { kind: "rebuild", recreate: true, rootAttachmentId: "att-root", rootExport: exportOf("att-root"), volumes }));
    assert.equal(outcome.failure, undefined);
    assert.equal(outcome.powerState, "RUNNING");
    assert.deepEqual(await driver.volumes({ instanceId: evacuated.id }), [
      { attachmentId: "att-root", device: "vda", connection: { ...exportOf("att-root"), tls: true } },
      { attachmentId: "att-d", device: "vdd", connection: { ...exportOf("att-d"), tls: true } },
    ]);
  });

  test("a cold migration of a server booted from a volume: migrate_disk with boots_from_volume, finish_migration opens its root and data volumes at the target's exports", async () => {
    const source = fake({ hostname: "src", statePath: join(stateDir, "src.json") });
    const target = fake({ hostname: "dst", statePath: join(stateDir, "dst.json") });
    const [exSource, exTarget] = [await executor(source), await OpExecutor.open({ driver: target, stateDir: join(stateDir, "dst"), fsync: false })];
    open.push(exTarget);
    const inst = testInstance();
    const data = [{ attachmentId: "att-d", device: "vdb", export: exportOf("att-d") }];
    assert.equal((await exSource.execute(testOp(inst, { kind: "spawn", rootAttachmentId: "att-root", rootExport: exportOf("att-root"), volumes: data }))).outcome.failure, undefined);
    const refused = await exSource.execute(testOp(inst, { kind: "migrate_disk", targetHost: "dst", timeoutSeconds: 0 }));
    assert.deepEqual([refused.outcome.failure?.code, refused.outcome.failure?.retryable], ["INVALID_STATE", false], "a volume-booted server has no local disk to hand over");
    const moved = await exSource.execute(testOp(inst, { kind: "migrate_disk", targetHost: "dst", timeoutSeconds: 0, bootsFromVolume: true }));
    assert.equal(moved.outcome.failure, undefined);
    const there = { host: "192.0.2.8", port: 10811 };
    const finish = testOp(inst, {
      kind: "finish_migration",
      sourceHost: "src",
      powerOn: true,
      rootAttachmentId: "att-root",
      rootExport: { ...there, exportName: "att-root-dst" },
      volumes: [{ attachmentId: "att-d", device: "vdb", export: { ...there, exportName: "att-d-dst" } }],
    });
    const finished = await exTarget.execute(finish);
    assert.equal(finished.outcome.failure, undefined);
    assert.equal(finished.outcome.powerState, "RUNNING");
    assert.deepEqual(await target.volumes({ instanceId: inst.id }), [
      { attachmentId: "att-root", device: "vda", connection: { ...there, exportName: "att-root-dst", tls: true } },
      { attachmentId: "att-d", device: "vdb", connection: { ...there, exportName: "att-d-dst", tls: true } },
    ]);
    assert.equal((await exSource.execute(testOp(inst, { kind: "confirm_migration" }))).outcome.failure, undefined);
    assert.equal((await source.report()).instances.some((i) => i.serverId === inst.id), false, "the source's copy is gone");
  });

  test("a hypervisor that cannot attach volumes refuses a spawn or a finish_migration with volumes with a non-retryable NOT_SUPPORTED", async () => {
    const driver = fake({ capabilities: { volumeAttach: false } });
    const ex = await executor(driver);
    const inst = testInstance();
    const volumes = [{ attachmentId: "att-d", device: "vdb", export: exportOf("att-d") }];
    const spawn = await ex.execute(testOp(inst, { kind: "spawn", volumes }));
    assert.deepEqual([spawn.outcome.failure?.code, spawn.outcome.failure?.retryable], ["NOT_SUPPORTED", false]);
    const finish = await ex.execute(testOp(inst, { kind: "finish_migration", sourceHost: "a", powerOn: true, volumes }));
    assert.deepEqual([finish.outcome.failure?.code, finish.outcome.failure?.retryable], ["NOT_SUPPORTED", false]);
    assert.equal((await driver.report()).instances.some((i) => i.serverId === inst.id), false, "no instance made");
  });
});
