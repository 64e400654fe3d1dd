/**
 * The one place the agent converts between generated protobuf types and
 * the driver's domain types.
 */
import type {
  Capacity,
  InstancePowerState,
  OpError,
  OpProgress,
  ResourceReport,
  SnapshotInfo as ProtoSnapshotInfo,
} from "../gen/novamesh/agent/v1/agent.js";
import type { Instance } from "../gen/novamesh/agent/v1/ops.js";
import { PowerState as ProtoPowerState, TaskState } from "../gen/novamesh/compute/v1/server.js";
import type { HostReport, InstanceSpec, PowerState, Resources, SnapshotInfo } from "./drivers/types.js";
import type { OpProgressEvent } from "./ops/executor.js";
import type { OpFailure } from "./ops/journal.js";

const POWER_STATE_TO_PROTO: Readonly<Record<PowerState, ProtoPowerState>> = {
  RUNNING: ProtoPowerState.POWER_STATE_RUNNING,
  PAUSED: ProtoPowerState.POWER_STATE_PAUSED,
  SHUTDOWN: ProtoPowerState.POWER_STATE_SHUTDOWN,
  CRASHED: ProtoPowerState.POWER_STATE_CRASHED,
  SUSPENDED: ProtoPowerState.POWER_STATE_SUSPENDED,
  NOSTATE: ProtoPowerState.POWER_STATE_NOSTATE,
};

/** A driver power state as the proto enum; undefined (not known) is UNSPECIFIED. */
export function powerStateToProto(state: PowerState | undefined): ProtoPowerState {
  return state === undefined ? ProtoPowerState.POWER_STATE_UNSPECIFIED : POWER_STATE_TO_PROTO[state];
}

/** The instance of a ComputeOp as the driver takes it. */
export function instanceSpecFromProto(instance: Instance): InstanceSpec {
  const image = instance.image;
  return {
    id: instance.id,
    name: instance.name,
    projectId: instance.projectId,
    vcpus: instance.vcpus,
    memoryMb: instance.ramMb,
    diskGb: instance.diskGb,
    image: {
      id: image?.id ?? "",
      name: image?.name ?? "",
      diskFormat: image?.diskFormat ?? "",
      checksum: image?.checksum ?? "",
      properties: { ...image?.properties },
    },
    extraSpecs: { ...instance.extraSpecs },
    metadata: { ...instance.metadata },
  };
}

/** Host resources as the proto Capacity. */
export function capacityToProto(resources: Resources): Capacity {
  return { vcpus: resources.vcpus, memoryMb: resources.memoryMb, diskGb: resources.diskGb };
}

/** A driver report plus the host's capacity as a ResourceReport. */
export function reportToProto(capacity: Resources, report: HostReport, time: Date): ResourceReport {
  const instances: InstancePowerState[] = report.instances.map((i) => ({
    serverId: i.serverId,
    powerState: powerStateToProto(i.powerState),
  }));
  return {
    time,
    capacity: capacityToProto(capacity),
    freeMemoryMb: report.freeMemoryMb,
    freeDiskGb: report.freeDiskGb,
    instances,
  };
}

/** An op failure as the proto OpError. */
export function opErrorToProto(failure: OpFailure): OpError {
  return { code: failure.code, message: failure.message, retryable: failure.retryable };
}

/** What a snapshot stored, as the proto SnapshotInfo. */
export function snapshotInfoToProto(info: SnapshotInfo): ProtoSnapshotInfo {
  return { sizeBytes: info.sizeBytes, checksum: info.checksum, diskFormat: info.diskFormat };
}

/** Progress of an op as the proto OpProgress. */
export function opProgressToProto(progress: OpProgressEvent): OpProgress {
  return {
    opId: progress.opId,
    serverId: progress.serverId,
    percent: progress.percent,
    message: progress.message,
    taskState: progress.stage ? TaskState[`TASK_STATE_${progress.stage}`] : TaskState.TASK_STATE_UNSPECIFIED,
  };
}
