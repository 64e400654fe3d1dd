/** The fake driver's live migration: steps and progress, abort, an injected failure, a target in another process. */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { testInstance } from "../test-instance.js";
import { FakeDriver, LIVE_MIGRATION_STEPS } from "./fake-driver.js";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "fake-live-migration-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("FakeDriver live migration", () => {
  async function pair(sourceOptions = {}) {
    const source = new FakeDriver({ hostname: "lm-source", ...sourceOptions });
    const target = new FakeDriver({ hostname: "lm-target" });
    await Promise.all([source.init(), target.init()]);
    const inst = testInstance();
    await source.spawn({ instance: inst });
    await target.preLiveMigration({ instance: inst, sourceHost: "lm-source" });
    return { source, target, inst };
  }

  test("takes LIVE_MIGRATION_STEPS delay steps and reports progress 0…100 along them", async () => {
    const { source, target, inst } = await pair({ faults: { liveMigrate: { delayMs: 30 } } });
    const progress: Array<[number, string]> = [];
    const started = Date.now();
    await source.liveMigrate({
      instanceId: inst.id,
      targetHost: "lm-target",
      targetUri: target.migrationUri!,
      volumes: [],
      onProgress: (p, m) => progress.push([p, m]),
    });
    assert.ok(Date.now() - started >= LIVE_MIGRATION_STEPS * 30 - 5);
    assert.deepEqual(progress.map(([p]) => p), [0, 25, 50, 75, 100]);
    assert.match(progress[2]![1], /256 MiB of 512 MiB/);
    assert.equal(source.domain(inst.id), undefined);
    await source.close();
    await target.close();
  });

  test("an abort between steps rejects non-retryable ABORTED and leaves the source running", async () => {
    const { source, target, inst } = await pair({ faults: { liveMigrate: { delayMs: 50 } } });
    const progress: number[] = [];
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 70);
    await assert.rejects(
      source.liveMigrate(
        { instanceId: inst.id, targetHost: "lm-target", targetUri: target.migrationUri!, volumes: [], onProgress: (p) => progress.push(p) },
        { signal: ac.signal },
      ),
      { code: "ABORTED", retryable: false },
    );
    assert.deepEqual(progress, [0, 25], "stopped in the second step");
    assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
    assert.equal(target.domain(inst.id)?.incoming?.sourceHost, "lm-source", "the target is still prepared");
  });

  test("an injected failure strikes half way; the source keeps the instance", async () => {
    const { source, target, inst } = await pair({
      faults: { liveMigrate: { error: "connection reset", code: "MIGRATION_FAILED", retryable: true } },
    });
    const progress: number[] = [];
    await assert.rejects(
      source.liveMigrate({ instanceId: inst.id, targetHost: "lm-target", targetUri: target.migrationUri!, volumes: [], onProgress: (p) => progress.push(p) }),
      { code: "MIGRATION_FAILED", message: "connection reset", retryable: true },
    );
    assert.deepEqual(progress, [0, 25]);
    assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
  });

  test("a paused instance lands paused, with its volume on the target's export, on a target in another process (through the target's event file)", async () => {
    const targetPath = join(dir, "lm-target.json");
    const target = new FakeDriver({ hostname: "lm-remote", statePath: targetPath });
    const source = new FakeDriver({ hostname: "lm-src2" });
    const inst = testInstance();
    await source.spawn({ instance: inst });
    const here = { host: "192.0.2.1", port: 10809, exportName: "att-1", tls: true } as const;
    await source.attachVolume({ instanceId: inst.id, attachmentId: "att-1", connection: here });
    await source.extendVolume({ instanceId: inst.id, attachmentId: "att-1", sizeBytes: 2 ** 30 });
    await source.pause({ instanceId: inst.id });
    await target.preLiveMigration({ instance: inst, sourceHost: "lm-src2" });
    const uri = target.migrationUri!;
    assert.equal(uri, `fake://lm-remote${targetPath}`);
    await target.close(); // not in this process any more

    const volumes = [{ attachmentId: "att-1", export: { host: "192.0.2.1", port: 10810, exportName: "move-1" } }];
    await source.liveMigrate({ instanceId: inst.id, targetHost: "lm-remote", targetUri: uri, volumes });
    const restarted = new FakeDriver({ hostname: "lm-remote", statePath: targetPath });
    await restarted.postLiveMigration({ instanceId: inst.id, sourceHost: "lm-src2" });
    assert.equal(await restarted.powerState({ instanceId: inst.id }), "PAUSED");
    const there = { host: "192.0.2.1", port: 10810, exportName: "move-1", tls: true };
    assert.deepEqual(await restarted.volumes({ instanceId: inst.id }), [{ attachmentId: "att-1", device: "vdb", connection: there, sizeBytes: 2 ** 30 }]);
    await restarted.close();
  });
});
