/** ComputeOps for tests that put ops on the wire, as the controller would. */
import { ComputeOp, Instance } from "../gen/novamesh/agent/v1/ops.js";
import type { AgentOp, AgentVolumeOp } from "./ops/agent-op.js";
import { portSpecToProto } from "./proto-convert.js";

/**
 * `op` as a ComputeOp: the proto case is the kind in camelCase and carries
 * the kind's arguments under the same names (the convention both sides of
 * the wire keep).
 */
export function computeOpOf(op: AgentOp): ComputeOp {
  const { opId, requestId, attempt, deadline, instance, kind, ...args } = op;
  const $case = kind.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return {
    opId,
    requestId,
    attempt,
    createTime: new Date(),
    deadline: deadline ?? undefined,
    volume: undefined,
    instance: {
      id: instance.id,
      name: instance.name,
      projectId: instance.projectId,
      vcpus: instance.vcpus,
      ramMb: instance.memoryMb,
      diskGb: instance.diskGb,
      image: { ...instance.image, properties: { ...instance.image.properties } },
      extraSpecs: { ...instance.extraSpecs },
      metadata: { ...instance.metadata },
      ports: (instance.ports ?? []).map(portSpecToProto),
      guest: instance.guest ? { ...instance.guest, userData: Buffer.from(instance.guest.userData) } : undefined,
    },
    // As the wire gives it: every field of the case's message set (an unset string is "").
    op: ComputeOp.fromPartial({ op: { $case, [$case]: args } as unknown as ComputeOp["op"] }).op,
  };
}

/** The operation of a volume op as the ComputeOp's oneof. */
function volumeCaseOf(op: AgentVolumeOp): ComputeOp["op"] {
  switch (op.kind) {
    case "create_volume": {
      const s = op.source;
      const image = s.kind === "image" ? { ...s.image, properties: {} } : undefined;
      const [sourceVolumeId, sourceSnapshotId] = s.kind === "snapshot" ? [s.volumeId, s.snapshotId] : ["", ""];
      return { $case: "createVolume", createVolume: { image, sourceVolumeId, sourceSnapshotId } };
    }
    case "delete_volume":
      return { $case: "deleteVolume", deleteVolume: {} };
    case "extend_volume":
      return { $case: "extendVolume", extendVolume: { sizeBytes: op.sizeBytes } };
    case "export_volume":
      return { $case: "exportVolume", exportVolume: { attachmentId: op.attachmentId, client: op.client } };
    case "unexport_volume":
      return { $case: "unexportVolume", unexportVolume: { attachmentId: op.attachmentId } };
    case "grow_volume":
      return { $case: "growVolume", growVolume: { sizeBytes: op.sizeBytes } };
    case "reimage_volume":
      return { $case: "reimageVolume", reimageVolume: { image: { ...op.image, properties: {} } } };
    case "create_volume_snapshot":
      return { $case: "createVolumeSnapshot", createVolumeSnapshot: { snapshotId: op.snapshotId } };
    case "delete_volume_snapshot":
      return { $case: "deleteVolumeSnapshot", deleteVolumeSnapshot: { snapshotId: op.snapshotId } };
  }
}

/** A volume op as a ComputeOp: `volume` set, and `instance` only if it names a server (an export's or a growth's, by its id alone). */
export function computeOpOfVolumeOp(op: AgentVolumeOp): ComputeOp {
  const { opId, requestId, attempt, deadline, volume, serverId } = op;
  const instance = serverId ? Instance.fromPartial({ id: serverId }) : undefined;
  return { opId, requestId, attempt, createTime: new Date(), deadline: deadline ?? undefined, volume: { ...volume }, instance, op: volumeCaseOf(op) };
}
