/**
 * The contract of live migration: pre, live, post and rollback on two hosts.
 */
import assert from "node:assert/strict";
import { testInstance } from "../test-instance.js";
import { type ContractKit, rejectsWith } from "./kit.js";

export function liveMigrationContract(k: ContractKit): void {
  const { testIf, withTwo, listed } = k;

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
      await source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" });
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
        source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" }, { signal: AbortSignal.abort() }),
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
      await rejectsWith(source.liveMigrate({ instanceId: inst.id, targetHost, targetUri: target.migrationUri ?? "" }), "INVALID_STATE");
      assert.equal(await source.powerState({ instanceId: inst.id }), "SHUTDOWN");
      const cap = await target.capacity();
      const huge = testInstance({ memoryMb: cap.memoryMb * 100, diskGb: cap.diskGb * 100 });
      await rejectsWith(target.preLiveMigration({ instance: huge, sourceHost: "source" }), "INSUFFICIENT_RESOURCES", true);
      assert.equal(await listed(target, huge.id), undefined);
      await source.destroy({ instanceId: inst.id });
    }));
}
