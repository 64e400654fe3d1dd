/**
 * The op vocabulary is declared once (controller/domain/ops.ts): every kind
 * the controller sends reaches the agent as the same kind with the same
 * arguments, through the real encoding at both edges. The kinds that run on
 * a volume host come in as volume ops, with the volume the controller adds
 * to them; so do the ops on volumes (controller/domain/volume-ops.ts).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ComputeOp } from "../gen/novamesh/agent/v1/ops.js";
import { agentOpFromProto } from "../agent/proto-convert.js";
import { isInvalidOp, isVolumeOp, type VolumeHostOpKind, type VolumeOpArgsByKind } from "../agent/ops/agent-op.js";
import { encodeComputeOp, encodeVolumeOp } from "../controller/bus/op-codec.js";
import type { OpArgs } from "../controller/domain/ops.js";
import { OP_KINDS, OP_TRAITS, kindOfCase, opCase } from "../controller/domain/ops.js";
import { VOLUME_OP_TRAITS, isVolumeOpCase, type VolumeOpArgs, type VolumeOpKind } from "../controller/domain/volume-ops.js";
import type { Instance } from "../controller/domain/types.js";

/** One op of every kind, with arguments that differ from the defaults. */
const SAMPLES: { [K in OpArgs["kind"]]: Extract<OpArgs, { kind: K }> } = {
  spawn: { kind: "spawn" },
  destroy: { kind: "destroy" },
  power_on: { kind: "power_on" },
  power_off: { kind: "power_off", timeoutSeconds: 17 },
  reboot: { kind: "reboot", hard: true, softTimeoutSeconds: 9 },
  pause: { kind: "pause" },
  unpause: { kind: "unpause" },
  suspend: { kind: "suspend" },
  resume: { kind: "resume" },
  migrate_disk: { kind: "migrate_disk", targetHost: "h2", timeoutSeconds: 3 },
  finish_migration: { kind: "finish_migration", sourceHost: "h1", powerOn: true },
  confirm_migration: { kind: "confirm_migration" },
  revert_migration: { kind: "revert_migration" },
  finish_revert_migration: { kind: "finish_revert_migration", powerOn: true },
  abort: { kind: "abort", targetOpId: "op-7" },
  snapshot: { kind: "snapshot", imageId: "img-1", imageName: "snap" },
  shelve: { kind: "shelve", imageId: "img-2", imageName: "web-shelved", timeoutSeconds: 5 },
  rebuild: { kind: "rebuild", recreate: true },
  pre_live_migration: { kind: "pre_live_migration", sourceHost: "h1", bootsFromVolume: true },
  live_migrate: {
    kind: "live_migrate",
    targetHost: "h2",
    targetUri: "qemu+tcp://h2/system",
    volumes: [{ attachmentId: "exp-1", export: { host: "192.0.2.7", port: 10810, exportName: "exp-1" } }],
  },
  post_live_migration: { kind: "post_live_migration", sourceHost: "h1" },
  rollback_live_migration: { kind: "rollback_live_migration" },
  attach_interface: { kind: "attach_interface", portId: "port-1" },
  detach_interface: { kind: "detach_interface", portId: "port-2", macAddress: "fa:16:3e:00:00:02" },
  attach_volume: {
    kind: "attach_volume",
    attachmentId: "att-1",
    volumeId: "vol-1",
    export: { host: "192.0.2.7", port: 10810, exportName: "att-1" },
    device: "vdc",
  },
  detach_volume: { kind: "detach_volume", attachmentId: "att-2" },
  extend_volume_disk: { kind: "extend_volume_disk", attachmentId: "att-5", sizeBytes: 3 * 1024 ** 3 },
  hold_volume_disk: { kind: "hold_volume_disk", attachmentId: "att-5" },
  export_volume: { kind: "export_volume", attachmentId: "att-3", client: "compute-2" },
  unexport_volume: { kind: "unexport_volume", attachmentId: "att-4" },
  grow_volume: { kind: "grow_volume", sizeBytes: 2 * 1024 ** 3 },
  reimage_volume: { kind: "reimage_volume", image: { id: "img-1", name: "cirros", diskFormat: "qcow2", checksum: "ab".repeat(32) } },
};

/** Further ops of kinds SAMPLES has, with arguments its sample leaves out. */
const VARIANTS: readonly OpArgs[] = [
  { kind: "spawn", rootAttachmentId: "att-root", rootExport: { host: "192.0.2.8", port: 10812, exportName: "att-root" } },
];

const volume = { id: "vol-9", projectId: "alice", pool: "p1", sizeBytes: 1024 ** 3 };

const instance = {
  uuid: "4f6d2c1e-0000-4000-8000-000000000001",
  name: "web",
  projectId: "alice",
  flavor: { id: "m1.tiny", name: "m1.tiny", vcpus: 1, ramMb: 512, diskGb: 1 },
  imageId: "img-0",
  extraSpecs: {},
  metadata: {},
} as unknown as Instance;

test("every op kind crosses from the controller to the agent as itself, with its arguments", () => {
  assert.deepEqual(Object.keys(SAMPLES).sort(), [...OP_KINDS].sort());
  for (const args of [...Object.values(SAMPLES), ...VARIANTS]) {
    const bytes = encodeComputeOp({ opId: `op-${args.kind}`, requestId: "r", attempt: 1, instance, image: null, args, deadline: null });
    const decoded = ComputeOp.decode(bytes);
    assert.equal(decoded.op?.$case, opCase(args.kind), args.kind);
    const onVolumeHost = OP_TRAITS[args.kind].onVolumeHost === true;
    const op = agentOpFromProto(onVolumeHost ? { ...decoded, volume } : decoded);
    assert.ok(!isInvalidOp(op), `${args.kind}: ${isInvalidOp(op) ? op.problem : ""}`);
    assert.equal(isVolumeOp(op), onVolumeHost, `${args.kind} came in as a volume op: ${isVolumeOp(op)}`);
    if (isVolumeOp(op)) {
      const { opId, requestId, attempt, deadline, volume: target, serverId, ...received } = op;
      assert.deepEqual(received, args, args.kind);
      assert.deepEqual([target, serverId, opId], [volume, instance.uuid, `op-${args.kind}`]);
    } else {
      const { opId, requestId, attempt, deadline, instance: spec, ...received } = op;
      assert.deepEqual(received, args, args.kind);
      assert.equal(spec.id, instance.uuid);
      assert.equal(opId, `op-${args.kind}`);
    }
  }
});

test("case and kind spellings are each other's inverse, and unknown cases have no kind", () => {
  for (const kind of OP_KINDS) assert.equal(kindOfCase(opCase(kind)), kind);
  assert.equal(kindOfCase("launchMissiles"), undefined);
  assert.equal(kindOfCase("toString"), undefined);
});

test("the kinds the agent runs on its volume backend are those that run on a volume host", () => {
  const onBackend: Record<VolumeHostOpKind, true> = { export_volume: true, unexport_volume: true, grow_volume: true, reimage_volume: true };
  assert.deepEqual(Object.keys(onBackend).sort(), OP_KINDS.filter((k) => OP_TRAITS[k].onVolumeHost).sort());
});

/** One volume op of every kind, as the controller sends it and as the agent takes it. */
const VOLUME_SAMPLES: { [K in VolumeOpKind]: readonly [Extract<VolumeOpArgs, { kind: K }>, VolumeOpArgsByKind[K]] } = {
  create_volume: [
    { kind: "create_volume", imageId: "", sourceVolumeId: "vol-1", sourceSnapshotId: "snap-1" },
    { source: { kind: "snapshot", volumeId: "vol-1", snapshotId: "snap-1" } },
  ],
  delete_volume: [{ kind: "delete_volume" }, {}],
  extend_volume: [{ kind: "extend_volume", sizeBytes: 2 * 1024 ** 3 }, { sizeBytes: 2 * 1024 ** 3 }],
  create_volume_snapshot: [{ kind: "create_volume_snapshot", snapshotId: "snap-2" }, { snapshotId: "snap-2" }],
  delete_volume_snapshot: [{ kind: "delete_volume_snapshot", snapshotId: "snap-3" }, { snapshotId: "snap-3" }],
};

test("every volume op kind crosses from the controller to the agent as itself, with its arguments and volume", () => {
  assert.deepEqual(Object.keys(VOLUME_SAMPLES).sort(), Object.keys(VOLUME_OP_TRAITS).sort());
  for (const [args, expected] of Object.values(VOLUME_SAMPLES)) {
    const bytes = encodeVolumeOp({ opId: `op-${args.kind}`, requestId: "r", volume, image: null, args, deadline: null });
    const decoded = ComputeOp.decode(bytes);
    assert.ok(decoded.op && isVolumeOpCase(decoded.op.$case), `${args.kind} went as a volume op case (${decoded.op?.$case})`);
    const op = agentOpFromProto(decoded);
    assert.ok(!isInvalidOp(op), `${args.kind}: ${isInvalidOp(op) ? op.problem : ""}`);
    assert.ok(isVolumeOp(op), `${args.kind} came in as a volume op`);
    const { opId, requestId, attempt, deadline, volume: target, serverId, kind, ...received } = op;
    assert.deepEqual([kind, received], [args.kind, expected], args.kind);
    assert.deepEqual([target, serverId, opId], [volume, "", `op-${args.kind}`]);
  }
});
