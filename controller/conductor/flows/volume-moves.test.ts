/** Attached volumes when a move is given up or times out, against a store double (no MySQL). */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Volume, VolumeAttachment } from "../../domain/volume.js";
import { RESULT_RULES, TIMEOUT_RULES } from "./index.js";
import { dispatched, instance, migration, resultOf, timeoutOf } from "./test-store.js";

const now = new Date();
const at = (host: string, name: string) => ({ host: "vol-host", port: 10810, exportName: `${name}-${host}` });

/** A data volume on "vol-host", exported to h1 (the source) and, for the move, to h2. */
function movedVolume(): { attachments: VolumeAttachment[]; volumes: Volume[] } {
  const volume: Volume = {
    id: "vol-1", projectId: "alice", name: "data", description: "", sizeGb: 1, claimedGb: null, status: "IN_USE", typeId: "t", typeName: "default",
    zone: "nova", host: "vol-host", pool: "p1", sourceImageId: null, sourceSnapshotId: null, requestId: "r", fault: null, taskDeadline: null, createdAt: now, updatedAt: now,
  };
  const attachment: VolumeAttachment = {
    id: "att-1", volumeId: "vol-1", instanceUuid: "srv-1", computeHost: "h1", device: "vdb", deleteOnTermination: false, state: "attached",
    export: at("h1", "e1"), exportId: "e1", move: { host: "h2", exportId: "e2", opId: "op-e2", export: at("h2", "e2") }, createdAt: now,
  };
  return { attachments: [attachment], volumes: [volume] };
}

test("a resize that outlives its deadline while the target finishes leaves a server with volumes stopped on its source; the target's copy and exports go", async () => {
  const world = {
    instance: instance({ host: "h2", taskState: "RESIZE_FINISH", taskDeadline: new Date(), flavor: migration().newFlavor }),
    migration: migration(),
    nodes: { h2: { id: "n2" } },
    ...movedVolume(),
  };
  const { t, calls } = timeoutOf(world);
  await TIMEOUT_RULES.RESIZE_FINISH.reap(t);
  assert.deepEqual(dispatched(calls), [
    { host: "vol-host", kind: "unexport_volume" },
    { host: "h2", kind: "revert_migration" },
  ], "no finish_revert_migration: nothing starts the source's copy while the target may run");
  assert.deepEqual([world.instance.host, world.instance.vmState, world.instance.powerState, world.instance.taskState], ["h1", "STOPPED", "SHUTDOWN", null]);
  assert.deepEqual(world.attachments.map((a) => [a.exportId, a.move]), [["e1", null]], "the source's export is the attachment's");
});

test("the same timeout without volumes brings the running copy back on the source", async () => {
  const world = { instance: instance({ host: "h2", taskState: "RESIZE_FINISH", taskDeadline: new Date() }), migration: migration(), nodes: { h2: { id: "n2" } } };
  const { t, calls } = timeoutOf(world);
  await TIMEOUT_RULES.RESIZE_FINISH.reap(t);
  assert.deepEqual(dispatched(calls), [
    { host: "h2", kind: "revert_migration" },
    { host: "h1", kind: "finish_revert_migration" },
  ]);
  assert.equal(world.instance.taskState, "RESIZE_REVERTING");
});

test("a confirm that fails leaves the server on its target with the target's exports: the source's end", async () => {
  const world = {
    instance: instance({ vmState: "RESIZED", host: "h2", taskState: "RESIZE_CONFIRMING", taskDeadline: new Date() }),
    migration: migration({ status: "FINISHED" }),
    ...movedVolume(),
  };
  const { r, calls } = resultOf(world, "confirm_migration", "h1", { error: { code: "CONFIRM_FAILED", message: "disk busy", retryable: false } });
  await RESULT_RULES.confirm_migration.apply!(r);
  assert.deepEqual(dispatched(calls), [{ host: "vol-host", kind: "unexport_volume" }], "the source's export ends");
  assert.deepEqual(world.attachments.map((a) => [a.computeHost, a.exportId, a.export?.exportName, a.move]), [["h2", "e2", "e2-h2", null]]);
  assert.equal(world.instance.vmState, "ERROR");
});
