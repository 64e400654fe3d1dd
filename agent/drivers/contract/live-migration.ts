/**
 * The contract of live migration: pre, live, post and rollback on two hosts.
 */
import assert from "node:assert/strict";
import { testInstance } from "../test-instance.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function liveMigrationContract(k: ContractKit): void {
  const { testIf, withTwo, listed, options } = k;

  testIf("liveMigration", "a volume follows a live migration: the target opens the export made for it, on the same device; a volume without one is refused before migrating", () =>
    withTwo(async (source, target, targetHost) => {
      if (!source.capabilities.volumeAttach || !options.migratingVolume) return;
      const inst = testInstance();
      const { source: here, target: there } = await options.migratingVolume("att-lm");
      await source.spawn({ instance: inst });
      const { device } = await source.attachVolume({ instanceId: inst.id, attachmentId: "att-lm", connection: here });
      await target.preLiveMigration({ instance: inst, sourceHost: "source" });
      const targetUri = target.migrationUri ?? "";
      await rejectsWith(source.liveMigrate({ instanceId: inst.id, targetHost, targetUri, volumes: [] }), "INVALID_ARGUMENT", false);
      const other = { attachmentId: "att-other", export: { host: there.host, port: there.port, exportName: "att-other" } };
      await rejectsWith(source.liveMigrate({ instanceId: inst.id, targetHost, targetUri, volumes: [other] }), "INVALID_ARGUMENT", false);
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING", "a refused migration leaves the instance where it was");
      const volumes = [{ attachmentId: "att-lm", export: { host: there.host, port: there.port, exportName: there.exportName } }];
      await source.liveMigrate({ instanceId: inst.id, targetHost, targetUri, volumes });
      assert.equal(await listed(source, inst.id), undefined);
      await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
      assert.deepEqual(
        (await target.volumes({ instanceId: inst.id })).map((v) => ({ attachmentId: v.attachmentId, device: v.device, connection: v.connection })),
        [{ attachmentId: "att-lm", device, connection: there }],
      );
      await target.detachVolume({ instanceId: inst.id, attachmentId: "att-lm" });
      await target.destroy({ instanceId: inst.id });
    }));

  testIf("liveMigration", "live migration: incoming PAUSED on the target, progress to 100, gone from the source, RUNNING after post", () =>
    withTwo(async (source, target, targetHost) => {
      const inst = testInstance();
      await source.spawn({ instance: inst });
      await target.preLiveMigration({ instance: inst, sourceHost: "source" });
      assert.equal(await listed(target, inst.id), "PAUSED");
      await target.preLiveMigration({ instance: inst, sourceHost: "source" });
      await rejectsWith(target.powerOn({ instanceId: inst.id }), "INVALID_STATE");
      const percents: number[] = [];
      await source.liveMigrate({
        instanceId: inst.id,
        targetHost,
        targetUri: target.migrationUri ?? "",
        volumes: [],
        onProgress: (percent) => percents.push(percent),
      });
      assert.ok(percents.length >= 2, `progress ${JSON.stringify(percents)}`);
      assert.deepEqual([...percents].sort((a, b) => a - b), percents, "progress does not go back");
      assert.equal(percents.at(-1), 100);
      assert.equal(await listed(source, inst.id), undefined);
      await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
      assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING");
      await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
      await rejectsWith(target.rollbackLiveMigration({ instanceId: inst.id }), "INVALID_STATE");
      assert.equal(await target.powerState({ instanceId: inst.id }), "RUNNING", "rollback does not touch a migrated instance");
      await target.destroy({ instanceId: inst.id });
    }));

  testIf("liveMigration", "a paused instance lands PAUSED", () =>
    withTwo(async (source, target, targetHost) => {
      if (!source.capabilities.pause) return;
      const inst = testInstance();
      await source.spawn({ instance: inst });
      await source.pause({ instanceId: inst.id });
      await target.preLiveMigration({ instance: inst, sourceHost: "source" });
      await source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "", volumes: [] });
      await target.postLiveMigration({ instanceId: inst.id, sourceHost: "source" });
      assert.equal(await target.powerState({ instanceId: inst.id }), "PAUSED");
      await target.destroy({ instanceId: inst.id });
    }));

  testIf("liveMigration", "an aborted live migration is non-retryable ABORTED, the source keeps running, rollback cleans the target", () =>
    withTwo(async (source, target, targetHost) => {
      const inst = testInstance();
      await source.spawn({ instance: inst });
      await target.preLiveMigration({ instance: inst, sourceHost: "source" });
      await rejectsWith(
        source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "", volumes: [] }, { signal: AbortSignal.abort() }),
        "ABORTED",
        false,
      );
      assert.equal(await source.powerState({ instanceId: inst.id }), "RUNNING");
      await target.rollbackLiveMigration({ instanceId: inst.id });
      assert.equal(await listed(target, inst.id), undefined);
      await target.rollbackLiveMigration({ instanceId: inst.id });
      await source.destroy({ instanceId: inst.id });
    }));

  testIf("liveMigration", "live migration of a shut-off instance is INVALID_STATE; a target that is full refuses, retryable", () =>
    withTwo(async (source, target, targetHost) => {
      const inst = testInstance();
      await source.spawn({ instance: inst });
      await source.powerOff({ instanceId: inst.id, timeoutSeconds: 0 });
      await rejectsWith(source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "", volumes: [] }), "INVALID_STATE");
      assert.equal(await source.powerState({ instanceId: inst.id }), "SHUTDOWN");
      const cap = await target.capacity();
      const huge = testInstance({ memoryMb: cap.memoryMb * 100, diskGb: cap.diskGb * 100 });
      await rejectsWith(target.preLiveMigration({ instance: huge, sourceHost: "source" }), "INSUFFICIENT_RESOURCES", true);
      assert.equal(await listed(target, huge.id), undefined);
      await source.destroy({ instanceId: inst.id });
    }));
}
