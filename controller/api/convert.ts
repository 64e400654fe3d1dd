import { Operation, OperationState as PbOperationState } from "../../gen/novamesh/compute/v1/operation.js";
import { ErrorInfo } from "../../gen/google/rpc/error_details.js";
import {
  Migration as PbMigration,
  MigrationStatus as PbMigrationStatus,
  MigrationType as PbMigrationType,
  Fault as PbFault,
  PowerState as PbPowerState,
  Server,
  ServerAction,
  ServerStatus as PbServerStatus,
  TaskState as PbTaskState,
  VmState as PbVmState,
} from "../../gen/novamesh/compute/v1/server.js";
import { Flavor as PbFlavor } from "../../gen/novamesh/compute/v1/flavor.js";
import { Image as PbImage, ImageStatus, ImageVisibility } from "../../gen/novamesh/compute/v1/image.js";
import { Hypervisor, Service, ServiceState, ServiceStatus } from "../../gen/novamesh/compute/v1/host.js";
import { Role as PbRole, Token, TokenKind } from "../../gen/novamesh/compute/v1/identity.js";
import type { Port } from "../domain/network.js";
import type { PowerState } from "../domain/states.js";
import { POWER_STATES, serverStatus } from "../domain/states.js";
import type { ComputeNode, Flavor, Image, Instance, InstanceAction, Migration, Role } from "../domain/types.js";
import type { VolumeOperation } from "../domain/volume.js";
import { ERROR_DOMAIN } from "./status.js";
import type { TokenRecord } from "../store/tokens.js";
import { isUp } from "../domain/service.js";
import type { Viewer } from "./viewer.js";
import { hostId, maskHosts, maskMap } from "./viewer.js";

/** Proto enum value of a domain literal: `toEnum(PbVmState, "VM_STATE_", "ACTIVE")`. */
export function toEnum<E extends Record<string, string | number>>(e: E, prefix: string, value: string | null): E[keyof E] {
  if (value === null) return 0 as E[keyof E];
  const v = e[`${prefix}${value.toUpperCase()}` as keyof E];
  return (v ?? 0) as E[keyof E];
}

/** Domain literal of a proto enum value, or null for UNSPECIFIED/unknown. */
export function fromEnum<E extends Record<string, string | number>>(e: E, prefix: string, value: number): string | null {
  const name = (e as Record<number, string>)[value];
  if (!name || !name.startsWith(prefix) || name.endsWith("_UNSPECIFIED")) return null;
  return name.slice(prefix.length);
}

export function powerStateFromProto(v: number): PowerState | null {
  const s = fromEnum(PbPowerState, "POWER_STATE_", v);
  return s && (POWER_STATES as readonly string[]).includes(s) ? (s as PowerState) : null;
}

/** A server's interfaces: its ports in order, with the names of their networks. */
export interface ServerNetworks {
  readonly ports: readonly Port[];
  readonly networkNames: ReadonlyMap<string, string>;
}

/** The interfaces and Nova's `addresses` (by network name) of a server. */
function interfacesOf(n: ServerNetworks | undefined, host: string | null): Pick<Server, "interfaces" | "addresses"> {
  if (!n) return { interfaces: [], addresses: {} };
  const addresses: Server["addresses"] = {};
  for (const p of n.ports) {
    const name = n.networkNames.get(p.networkId) ?? p.networkId;
    const list = (addresses[name] ??= { addresses: [] });
    for (const ip of p.fixedIps) list.addresses.push({ addr: ip.ipAddress, version: 4, macAddress: p.macAddress, type: "fixed" });
  }
  return {
    interfaces: n.ports.map((p) => ({
      portId: p.id,
      networkId: p.networkId,
      macAddress: p.macAddress,
      ipAddresses: p.fixedIps.map((ip) => ip.ipAddress),
      // Plugged while the server has a host.
      status: host ? "ACTIVE" : "DOWN",
    })),
    addresses,
  };
}

/**
 * A server as `viewer` may see it: the host's name for admins only, its
 * host id for everyone; its interfaces when `networks` is given.
 */
export function serverToProto(i: Instance, viewer: Viewer, networks?: ServerNetworks): Server {
  const mask = (t: string) => maskHosts(viewer, i.projectId, t, [i.host, i.fault?.details.host]);
  return {
    id: i.uuid,
    name: i.name,
    projectId: i.projectId,
    flavor: { ...i.flavor },
    imageId: i.imageId,
    host: viewer.admin ? (i.host ?? "") : "",
    hostId: hostId(i.projectId, i.host),
    status: toEnum(PbServerStatus, "SERVER_STATUS_", serverStatus(i.vmState, i.taskState)),
    vmState: toEnum(PbVmState, "VM_STATE_", i.vmState),
    taskState: toEnum(PbTaskState, "TASK_STATE_", i.taskState),
    powerState: toEnum(PbPowerState, "POWER_STATE_", i.powerState),
    fault: i.fault
      ? PbFault.fromPartial({
          code: i.fault.code,
          message: mask(i.fault.message),
          details: maskMap(viewer, i.projectId, i.fault.details, [i.host, i.fault.details.host]),
          createTime: new Date(i.fault.createdAt),
        })
      : undefined,
    metadata: { ...i.metadata },
    createTime: i.createdAt,
    updateTime: i.updatedAt,
    launchTime: i.launchedAt ?? undefined,
    deleteTime: i.deletedAt ?? undefined,
    requestId: i.requestId,
    locked: i.lockedBy !== null,
    lockedReason: i.lockedReason,
    taskDeadline: i.taskDeadline ?? undefined,
    availabilityZone: i.availabilityZone,
    serverGroupId: i.serverGroupId ?? "",
    keyName: i.keyName ?? "",
    configDrive: i.configDrive,
    hostname: i.hostname,
    description: i.description,
    tags: [...i.tags],
    ...interfacesOf(networks, i.host),
  };
}

/** What operations are of: servers' or volumes'. */
export type OperationCollection = "servers" | "volumes";

/** An operation's name: `servers/{server_id}/operations/{request_id}` (the request id URI-escaped), or `volumes/…` for a volume's. */
export function operationName(id: string, requestId: string, collection: OperationCollection = "servers"): string {
  return `${collection}/${id}/operations/${encodeURIComponent(requestId)}`;
}

/** Parses an operation name; null when it is not one. */
export function parseOperationName(name: string): { collection: OperationCollection; id: string; requestId: string } | null {
  const m = /^(servers|volumes)\/([0-9a-fA-F-]{36})\/operations\/([^/]+)$/.exec(name);
  if (!m) return null;
  try {
    return { collection: m[1] as OperationCollection, id: m[2]!.toLowerCase(), requestId: decodeURIComponent(m[3]!) };
  } catch {
    return null;
  }
}

/** What an Operation shows, whichever the collection. */
interface OperationView {
  readonly name: string;
  readonly serverId: string;
  readonly volumeId: string;
  readonly action: string;
  readonly requestId: string;
  readonly projectId: string;
  readonly state: InstanceAction["state"];
  readonly progress: number;
  readonly progressMessage: string;
  readonly error: InstanceAction["error"];
  readonly cancellable: boolean;
  readonly startTime: Date;
  readonly updatedAt: Date;
  readonly finishTime: Date | null;
  readonly deadline: Date | null;
}

/** An operation as `viewer` may see it: host names in its texts replaced by host ids for non-admins. */
export function operationToProto(a: InstanceAction, viewer: Viewer): Operation {
  return toOperation({ ...a, name: operationName(a.instanceUuid, a.requestId), serverId: a.instanceUuid, volumeId: "" }, viewer);
}

/** A volume's operation as `viewer` may see it. */
export function volumeOperationToProto(a: VolumeOperation, viewer: Viewer): Operation {
  return toOperation(
    {
      ...a,
      name: operationName(a.volumeId, a.requestId, "volumes"),
      serverId: "",
      volumeId: a.volumeId,
      progress: a.state === "SUCCEEDED" ? 100 : 0,
      progressMessage: "",
      cancellable: false,
    },
    viewer,
  );
}

function toOperation(a: OperationView, viewer: Viewer): Operation {
  const mask = (t: string) => maskHosts(viewer, a.projectId, t, [a.error?.metadata?.host]);
  const done = a.state === "SUCCEEDED" || a.state === "FAILED" || a.state === "CANCELLED";
  return {
    name: a.name,
    action: a.action,
    serverId: a.serverId,
    volumeId: a.volumeId,
    requestId: a.requestId,
    projectId: a.projectId,
    state: toEnum(PbOperationState, "OPERATION_STATE_", a.state),
    done,
    progressPercent: a.progress,
    progressMessage: mask(a.progressMessage),
    error: a.error
      ? {
          code: a.error.code,
          message: mask(a.error.message),
          details: [
            {
              typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
              value: Buffer.from(
                ErrorInfo.encode({ reason: a.error.reason, domain: ERROR_DOMAIN, metadata: maskMap(viewer, a.projectId, a.error.metadata ?? {}, [a.error.metadata?.host]) }).finish(),
              ),
            },
          ],
        }
      : undefined,
    cancellable: a.cancellable && !done,
    createTime: a.startTime,
    updateTime: a.updatedAt,
    endTime: a.finishTime ?? undefined,
    deadline: done ? undefined : (a.deadline ?? undefined),
  };
}

/** A migration as `viewer` may see it: its hosts' names for admins only. */
export function migrationToProto(m: Migration, viewer: Viewer): PbMigration {
  return {
    id: m.id,
    serverId: m.instanceUuid,
    projectId: m.projectId,
    type: toEnum(PbMigrationType, "MIGRATION_TYPE_", m.type),
    status: toEnum(PbMigrationStatus, "MIGRATION_STATUS_", m.status),
    sourceHost: viewer.admin ? m.sourceHost : "",
    targetHost: viewer.admin ? (m.targetHost ?? "") : "",
    oldFlavor: { ...m.oldFlavor },
    newFlavor: { ...m.newFlavor },
    createTime: m.createdAt,
    updateTime: m.updatedAt,
    requestId: m.requestId,
  };
}

/** An action as `viewer` may see it: each event's host by name for admins, by host id for everyone. */
export function actionToProto(a: InstanceAction, viewer: Viewer): ServerAction {
  const hosts = a.events.map((e) => e.host);
  const mask = (t: string) => maskHosts(viewer, a.projectId, t, hosts);
  return {
    action: a.action,
    requestId: a.requestId,
    serverId: a.instanceUuid,
    projectId: a.projectId,
    startTime: a.startTime,
    finishTime: a.finishTime ?? undefined,
    message: mask(a.message),
    events: a.events.map((e) => ({
      name: e.event,
      startTime: e.startTime,
      finishTime: e.finishTime ?? undefined,
      result: e.result ?? "",
      host: viewer.admin ? e.host : "",
      hostId: hostId(a.projectId, e.host),
      fault: mask(e.fault ?? ""),
      details: mask(e.details ?? ""),
    })),
  };
}

export function flavorToProto(f: Flavor): PbFlavor {
  return { ...f, extraSpecs: { ...f.extraSpecs } };
}

export function imageToProto(i: Image): PbImage {
  return {
    id: i.id,
    name: i.name,
    projectId: i.projectId,
    status: toEnum(ImageStatus, "IMAGE_STATUS_", i.status),
    visibility: toEnum(ImageVisibility, "IMAGE_VISIBILITY_", i.visibility),
    diskFormat: i.diskFormat,
    containerFormat: i.containerFormat,
    sizeBytes: i.sizeBytes,
    checksum: i.checksum,
    minDiskGb: i.minDiskGb,
    minRamMb: i.minRamMb,
    properties: { ...i.properties },
    createTime: i.createdAt,
    hasData: i.hasData,
  };
}

export function serviceToProto(n: ComputeNode, downTimeSeconds: number): Service {
  return {
    id: n.id,
    host: n.host,
    binary: "novamesh-agent",
    zone: n.zone,
    status: n.enabled ? ServiceStatus.SERVICE_STATUS_ENABLED : ServiceStatus.SERVICE_STATUS_DISABLED,
    state: isUp(n, downTimeSeconds) ? ServiceState.SERVICE_STATE_UP : ServiceState.SERVICE_STATE_DOWN,
    disabledReason: n.disabledReason,
    lastSeenTime: n.lastSeenAt ?? undefined,
    version: n.version,
  };
}

export function hypervisorToProto(n: ComputeNode, downTimeSeconds: number, zone?: string): Hypervisor {
  const svc = serviceToProto(n, downTimeSeconds);
  return {
    id: n.id,
    hostname: n.host,
    hypervisorType: n.hypervisorType,
    status: svc.status,
    state: svc.state,
    vcpus: n.vcpus,
    vcpusUsed: n.vcpusUsed,
    memoryMb: n.memoryMb,
    memoryMbUsed: n.memoryMbUsed,
    localGb: n.diskGb,
    localGbUsed: n.diskGbUsed,
    runningVms: n.runningVms,
    cpuAllocationRatio: n.cpuAllocationRatio,
    ramAllocationRatio: n.ramAllocationRatio,
    diskAllocationRatio: n.diskAllocationRatio,
    freeRamMbReported: n.freeMemoryMbReported,
    freeDiskGbReported: n.freeDiskGbReported,
    reservedMemoryMb: n.reservedMemoryMb,
    reservedVcpus: n.reservedVcpus,
    reservedDiskGb: n.reservedDiskGb,
    cpuArch: n.architecture,
    availabilityZone: zone ?? n.zone,
    failedBuilds: n.failedBuilds,
  };
}

export function tokenToProto(t: TokenRecord): Token {
  return {
    id: t.id,
    projectId: t.projectId,
    role: toEnum(PbRole, "ROLE_", t.role),
    description: t.description,
    createTime: t.createdAt,
    expireTime: t.expireTime ?? undefined,
    kind: t.kind === "configuration" ? TokenKind.TOKEN_KIND_CONFIGURATION : TokenKind.TOKEN_KIND_API,
    host: t.host ?? "",
  };
}

export function roleFromProto(v: number): Role | null {
  const s = fromEnum(PbRole, "ROLE_", v);
  return s ? (s.toLowerCase() as Role) : null;
}
