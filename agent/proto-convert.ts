/**
 * The one place the agent converts between generated protobuf types and
 * its domain types: ops come in as {@link AgentOp}s (or, if they name
 * nothing runnable, {@link InvalidOp}s); outcomes, progress and reports go
 * out as their proto messages.
 */
import type {
  Capacity,
  InstancePowerState,
  OpError,
  OpProgress,
  OpResult,
  ResourceReport,
  SnapshotInfo as ProtoSnapshotInfo,
  VolumePool,
  VolumeState,
} from "../gen/novamesh/agent/v1/agent.js";
import type { VolumeBackend } from "./volume/backend.js";
import type { Logger } from "pino";
import type { ComputeOp, InstanceImage, Instance, Port as ProtoPort } from "../gen/novamesh/agent/v1/ops.js";
import type { PortSpec, Segmentation } from "./network/types.js";
import { PowerState as ProtoPowerState, TaskState } from "../gen/novamesh/compute/v1/server.js";
import type { HostReport, InstanceSpec, PowerState, Resources, SnapshotInfo } from "./drivers/types.js";
import { kindOfCase, OP_TRAITS, type VolumeExport } from "../controller/domain/ops.js";
import { isVolumeOpCase, type VolumeOpSource } from "../controller/domain/volume-ops.js";
import { CLIENT_NAME_PATTERN, VOLUME_ID_PATTERN } from "./volume/backend.js";
import { exportProblem, hostVolumesOf, migratingVolumesProblem, type WireHostVolumes } from "./proto-volumes.js";
import type { AgentOp, AgentVolumeOp, AgentVolumeOpKind, IncomingOp, InvalidOp, OpArgsByKind, OpEnvelope, OpHeader } from "./ops/agent-op.js";
import type { OpFailure, OpOutcome, VolumeResult } from "./ops/outcome.js";
import type { OpProgressEvent } from "./ops/progress.js";

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

/** The operation part of a ComputeOp (set). */
type ProtoOp = NonNullable<ComputeOp["op"]>;

/** The `kind` and arguments of an op. */
type OpArgs = { [K in keyof OpArgsByKind]: { readonly kind: K } & OpArgsByKind[K] }[keyof OpArgsByKind];

/**
 * A ComputeOp's operation as the kind and arguments of an AgentOp: the
 * kind is the oneof case in snake_case and the arguments are the case's
 * message fields (controller/domain/ops.ts names them so); undefined for a
 * case no kind has.
 */
function argsFromProto(o: ProtoOp): OpArgs | undefined {
  const kind = kindOfCase(o.$case);
  if (kind === undefined) return undefined;
  const fields = (o as unknown as Record<string, object>)[o.$case];
  return { ...fields, kind } as OpArgs;
}

/** Whether a case of the op vocabulary runs on a volume host (export, unexport, grow_volume, reimage_volume). */
function isExportCase(opCase: string): boolean {
  const kind = kindOfCase(opCase);
  return kind !== undefined && OP_TRAITS[kind].onVolumeHost === true;
}

/** What is wrong with the arguments of an attach, detach, hold or extend of a volume's disk, or a live migration's volumes (undefined: nothing, or another kind). */
function attachmentProblem(a: OpArgs): string | undefined {
  if (a.kind === "live_migrate") return migratingVolumesProblem(a.volumes ?? []);
  if (a.kind !== "attach_volume" && a.kind !== "detach_volume" && a.kind !== "extend_volume_disk" && a.kind !== "hold_volume_disk") return undefined;
  if (!VOLUME_ID_PATTERN.test(a.attachmentId)) return `${a.kind}.attachment_id "${a.attachmentId}" is not an attachment id`;
  if (a.kind === "detach_volume" || a.kind === "hold_volume_disk") return undefined;
  if (a.kind === "extend_volume_disk") {
    return isSize(a.sizeBytes) ? undefined : `extend_volume_disk.size_bytes ${a.sizeBytes} is not a positive whole number of bytes`;
  }
  if (!VOLUME_ID_PATTERN.test(a.volumeId)) return `attach_volume.volume_id "${a.volumeId}" is not a volume id`;
  const problem = exportProblem("attach_volume.export", a.export as Partial<VolumeExport> | undefined);
  return problem === "attach_volume.export is not set" ? "attach_volume names no export" : problem;
}

/**
 * An op's arguments as the agent takes them, or what is wrong with them:
 * a spawn's, a rebuild's and a finish_migration's volumes through
 * {@link hostVolumesOf} (none named: none there); a migrate_disk's
 * boots_from_volume only when set.
 */
function agentArgs(a: OpArgs): OpArgs | string {
  switch (a.kind) {
    case "spawn": {
      const v = hostVolumesOf(a.kind, a as WireHostVolumes);
      return typeof v === "string" ? v : { kind: a.kind, ...v };
    }
    case "rebuild": {
      const v = hostVolumesOf(a.kind, a as WireHostVolumes);
      return typeof v === "string" ? v : { kind: a.kind, recreate: a.recreate, ...v };
    }
    case "finish_migration": {
      const v = hostVolumesOf(a.kind, a as WireHostVolumes);
      return typeof v === "string" ? v : { kind: a.kind, sourceHost: a.sourceHost, powerOn: a.powerOn, ...v };
    }
    case "migrate_disk": {
      const { kind, targetHost, timeoutSeconds, bootsFromVolume } = a;
      return { kind, targetHost, timeoutSeconds, ...(bootsFromVolume ? { bootsFromVolume: true } : {}) };
    }
    default:
      return a;
  }
}

/**
 * A decoded ComputeOp as the op the executor runs (on an instance, or on a
 * volume: {@link volumeOpFromProto}), or, if it names nothing this agent
 * can run, why not.
 */
export function agentOpFromProto(op: ComputeOp): IncomingOp {
  if (op.op !== undefined && (isVolumeOpCase(op.op.$case) || isExportCase(op.op.$case))) return volumeOpFromProto(op, op.op);
  const invalid = (problem: string): InvalidOp => ({ opId: op.opId, serverId: op.instance?.id ?? "", problem });
  if (!op.opId) return invalid("op_id is empty");
  if (op.volume !== undefined) return invalid(`an op on an instance${op.op ? ` (${op.op.$case})` : ""} carries a volume`);
  if (!op.instance?.id) return invalid("instance.id is empty");
  if (op.op === undefined) return invalid("the op names no operation (unknown to this agent version?)");
  if (op.op.$case === "abort" && !op.op.abort.targetOpId) return invalid("abort.target_op_id is empty");
  if (op.op.$case === "abort" && op.op.abort.targetOpId === op.opId) return invalid("an abort op cannot abort itself");
  const decoded = argsFromProto(op.op);
  if (decoded === undefined) return invalid(`the op names an operation this agent does not know (${op.op.$case})`);
  const args = agentArgs(decoded);
  if (typeof args === "string") return invalid(args);
  const problem = attachmentProblem(args);
  if (problem !== undefined) return invalid(problem);
  const header: OpHeader = {
    opId: op.opId,
    requestId: op.requestId,
    attempt: op.attempt,
    deadline: op.deadline ?? null,
    instance: instanceSpecFromProto(op.instance),
  };
  return { ...header, ...args } as AgentOp;
}

/** Whether `n` is a positive whole number of bytes. */
function isSize(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0;
}

/** The source of a create_volume op, or what is wrong with it. */
function volumeSourceFromProto(c: { image?: InstanceImage | undefined; sourceVolumeId: string; sourceSnapshotId: string }): VolumeOpSource | string {
  const snapshot = c.sourceVolumeId !== "" || c.sourceSnapshotId !== "";
  if (c.image && snapshot) return "create_volume names both an image and a snapshot to copy";
  if (c.image) {
    if (!c.image.id) return "create_volume.image.id is empty";
    const { id, name, diskFormat, checksum } = c.image;
    return { kind: "image", image: { id, name, diskFormat, checksum } };
  }
  if (!snapshot) return { kind: "blank" };
  if (!VOLUME_ID_PATTERN.test(c.sourceVolumeId)) return `create_volume.source_volume_id "${c.sourceVolumeId}" is not a volume id`;
  if (!VOLUME_ID_PATTERN.test(c.sourceSnapshotId)) return `create_volume.source_snapshot_id "${c.sourceSnapshotId}" is not a snapshot id`;
  return { kind: "snapshot", volumeId: c.sourceVolumeId, snapshotId: c.sourceSnapshotId };
}

/**
 * A ComputeOp of a volume op case (or export, unexport, grow_volume) as the
 * op the volume backend runs, or what is wrong with it. A delete, an
 * export, an unexport and a snapshot's create or delete need only the
 * volume's id (an op is not refused over fields it does not use); a
 * create, an extend and a grow_volume need its pool and a positive size
 * too. Only an export, an unexport or a grow_volume may name an instance
 * (the one the attachment is for, or the volume is attached to).
 */
function volumeOpFromProto(op: ComputeOp, o: ProtoOp): AgentVolumeOp | InvalidOp {
  const volume = op.volume;
  const kind = o.$case.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) as AgentVolumeOpKind;
  const forAttachment = kind === "export_volume" || kind === "unexport_volume" || kind === "grow_volume" || kind === "reimage_volume";
  const serverId = forAttachment ? (op.instance?.id ?? "") : "";
  const invalid = (problem: string): InvalidOp => ({ opId: op.opId, serverId, volumeId: volume?.id ?? "", problem });
  if (!op.opId) return invalid("op_id is empty");
  if (op.instance !== undefined && !forAttachment) return invalid(`${kind} acts on a volume; the op carries an instance`);
  if (!volume) return invalid(`${kind} names no volume`);
  if (!volume.id) return invalid("volume.id is empty");
  if (!VOLUME_ID_PATTERN.test(volume.id)) return invalid(`volume.id "${volume.id}" is not a volume id`);
  if (kind === "create_volume" || kind === "extend_volume" || kind === "grow_volume") {
    if (!volume.pool) return invalid("volume.pool is empty");
    if (!isSize(volume.sizeBytes)) return invalid(`volume.size_bytes ${volume.sizeBytes} is not a positive whole number of bytes`);
  }
  const header: OpEnvelope & Pick<AgentVolumeOp, "volume" | "serverId"> = {
    opId: op.opId,
    requestId: op.requestId,
    attempt: op.attempt,
    deadline: op.deadline ?? null,
    volume: { id: volume.id, projectId: volume.projectId, pool: volume.pool, sizeBytes: volume.sizeBytes },
    serverId,
  };
  switch (o.$case) {
    case "createVolume": {
      const source = volumeSourceFromProto(o.createVolume);
      return typeof source === "string" ? invalid(source) : { ...header, kind: "create_volume", source };
    }
    case "deleteVolume":
      return { ...header, kind: "delete_volume" };
    case "extendVolume": {
      const { sizeBytes } = o.extendVolume;
      if (!isSize(sizeBytes)) return invalid(`extend_volume.size_bytes ${sizeBytes} is not a positive whole number of bytes`);
      return { ...header, kind: "extend_volume", sizeBytes };
    }
    case "growVolume": {
      const { sizeBytes } = o.growVolume;
      if (!isSize(sizeBytes)) return invalid(`grow_volume.size_bytes ${sizeBytes} is not a positive whole number of bytes`);
      return { ...header, kind: "grow_volume", sizeBytes };
    }
    case "exportVolume": {
      const { attachmentId, client } = o.exportVolume;
      if (!VOLUME_ID_PATTERN.test(attachmentId)) return invalid(`export_volume.attachment_id "${attachmentId}" is not an attachment id`);
      if (!CLIENT_NAME_PATTERN.test(client)) return invalid(`export_volume.client "${client}" is not a host name`);
      return { ...header, kind: "export_volume", attachmentId, client };
    }
    case "unexportVolume": {
      const { attachmentId } = o.unexportVolume;
      if (!VOLUME_ID_PATTERN.test(attachmentId)) return invalid(`unexport_volume.attachment_id "${attachmentId}" is not an attachment id`);
      return { ...header, kind: "unexport_volume", attachmentId };
    }
    case "reimageVolume": {
      const image = o.reimageVolume.image;
      if (!image) return invalid("reimage_volume names no image");
      if (!image.id) return invalid("reimage_volume.image.id is empty");
      const { id, name, diskFormat, checksum } = image;
      return { ...header, kind: "reimage_volume", image: { id, name, diskFormat, checksum } };
    }
    case "createVolumeSnapshot":
    case "deleteVolumeSnapshot": {
      const create = o.$case === "createVolumeSnapshot";
      const { snapshotId } = create ? o.createVolumeSnapshot : o.deleteVolumeSnapshot;
      if (!VOLUME_ID_PATTERN.test(snapshotId)) return invalid(`${kind}.snapshot_id "${snapshotId}" is not a snapshot id`);
      return { ...header, kind: create ? "create_volume_snapshot" : "delete_volume_snapshot", snapshotId };
    }
    default:
      return invalid(`the op names an operation this agent does not know (${o.$case})`);
  }
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
    ...(instance.ports.length ? { ports: instance.ports.map(portSpecFromProto) } : {}),
    ...(instance.guest ? { guest: { ...instance.guest, userData: new Uint8Array(instance.guest.userData) } } : {}),
  };
}

/** A port of a ComputeOp's instance as the network driver takes it. */
export function portSpecFromProto(p: ProtoPort): PortSpec {
  const n = p.network;
  const segmentation: Segmentation = n?.segmentation === "flat" ? "flat" : "vxlan";
  return {
    id: p.id,
    mac: p.macAddress,
    fixedIps: p.fixedIps.map((ip) => ({ subnetId: ip.subnetId, address: ip.ipAddress })),
    network: {
      id: n?.id ?? "",
      segmentation,
      physicalBridge: n?.physicalBridge ?? "",
      vni: n?.vni ?? 0,
      mtu: n?.mtu || 1500,
      subnets: (n?.subnets ?? []).map((s) => ({
        id: s.id,
        cidr: s.cidr,
        gatewayIp: s.gatewayIp || null,
        dnsServers: [...s.dnsServers],
        hostRoutes: s.hostRoutes.map((r) => ({ destination: r.destination, nexthop: r.nexthop })),
        dhcp: s.dhcp,
      })),
      dhcpPort: n?.dhcpPort
        ? { id: n.dhcpPort.id, mac: n.dhcpPort.macAddress, fixedIps: n.dhcpPort.fixedIps.map((ip) => ({ subnetId: ip.subnetId, address: ip.ipAddress })) }
        : null,
    },
    portSecurity: p.portSecurity,
    securityRules: p.securityRules.map((r) => ({
      direction: r.direction === "egress" ? "egress" : "ingress",
      protocol: r.protocol,
      portMin: r.portMin,
      portMax: r.portMax,
      remoteCidr: r.remoteCidr,
      remoteAddresses: r.remoteGroup ? [...r.remoteAddresses] : null,
    })),
  };
}

/** A port spec as the wire's Port (for tests that put ops on the wire). */
export function portSpecToProto(p: PortSpec): ProtoPort {
  const n = p.network;
  return {
    id: p.id,
    macAddress: p.mac,
    fixedIps: p.fixedIps.map((ip) => ({ subnetId: ip.subnetId, ipAddress: ip.address })),
    network: {
      id: n.id,
      segmentation: n.segmentation,
      physicalBridge: n.physicalBridge,
      vni: n.vni,
      mtu: n.mtu,
      subnets: n.subnets.map((s) => ({
        id: s.id,
        cidr: s.cidr,
        gatewayIp: s.gatewayIp ?? "",
        dnsServers: [...s.dnsServers],
        hostRoutes: s.hostRoutes.map((r) => ({ ...r })),
        dhcp: s.dhcp,
      })),
      dhcpPort: n.dhcpPort ? { id: n.dhcpPort.id, macAddress: n.dhcpPort.mac, fixedIps: n.dhcpPort.fixedIps.map((ip) => ({ subnetId: ip.subnetId, ipAddress: ip.address })) } : undefined,
    },
    portSecurity: p.portSecurity,
    securityRules: p.securityRules.map((r) => ({
      direction: r.direction,
      protocol: r.protocol,
      portMin: r.portMin,
      portMax: r.portMax,
      remoteCidr: r.remoteCidr,
      remoteGroup: r.remoteAddresses !== null,
      remoteAddresses: [...(r.remoteAddresses ?? [])],
    })),
  };
}

/** Host resources as the proto Capacity. */
export function capacityToProto(resources: Resources): Capacity {
  return { vcpus: resources.vcpus, memoryMb: resources.memoryMb, diskGb: resources.diskGb };
}

/**
 * A volume backend's pools as the proto VolumePools of a hello or report;
 * none, logged, when the backend cannot tell them (the host then offers no
 * pools until it can, but stays a compute host).
 */
export async function volumePoolsOf(volumes: VolumeBackend, log: Logger): Promise<VolumePool[]> {
  try {
    return (await volumes.pools()).map((p) => ({ name: p.name, backend: volumes.kind, totalBytes: p.totalBytes, freeBytes: p.freeBytes, provisionedBytes: p.provisionedBytes }));
  } catch (err) {
    log.error({ err, backend: volumes.kind }, "the volume backend could not tell its pools; none are reported this time");
    return [];
  }
}

/** A driver report plus the host's capacity (and its volume pools) as a ResourceReport. */
export function reportToProto(capacity: Resources, report: HostReport, time: Date, volumePools: VolumePool[] = []): ResourceReport {
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
    volumePools,
  };
}

/** An op's outcome as the proto OpResult. */
export function opResultToProto(outcome: OpOutcome): OpResult {
  return {
    opId: outcome.opId,
    serverId: outcome.serverId,
    error: outcome.failure ? opErrorToProto(outcome.failure) : undefined,
    powerState: powerStateToProto(outcome.powerState),
    startTime: outcome.startTime,
    finishTime: outcome.finishTime,
    snapshot: outcome.snapshot ? snapshotInfoToProto(outcome.snapshot) : undefined,
    note: outcome.note ?? "",
    volumeId: outcome.volumeId ?? "",
    volume: outcome.volume ? volumeStateToProto(outcome.volume) : undefined,
  };
}

/** What an op reports of a volume as the proto VolumeState (what it does not say: zero, unset, empty). */
function volumeStateToProto(v: VolumeResult): VolumeState {
  return { sizeBytes: v.sizeBytes ?? 0, export: v.export ? { host: v.export.host, port: v.export.port, exportName: v.export.exportName } : undefined, device: v.device ?? "" };
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
