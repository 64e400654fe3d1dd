import { ComputeOp, type Port } from "../../gen/novamesh/agent/v1/ops.js";
import type { Image, Instance } from "../domain/types.js";
import type { HostPort } from "../domain/network.js";
import type { OpArgs } from "../domain/ops.js";
import { opCase } from "../domain/ops.js";
import type { VolumeOpArgs, VolumeTarget } from "../domain/volume-ops.js";

/**
 * The ComputeOp oneof of `a`: the case is the kind in camelCase and the
 * message's fields are the args' own (domain/ops.ts and
 * domain/volume-ops.ts name them so). An optional field the args leave
 * out takes its proto default (fromPartial): the encoder would otherwise
 * write `undefined` as a string.
 */
function caseOf(a: OpArgs | VolumeOpArgs): ComputeOp["op"] {
  const { kind, ...fields } = a;
  const $case = opCase(kind as OpArgs["kind"]);
  return ComputeOp.fromPartial({ op: { $case, [$case]: fields } as unknown as ComputeOp["op"] }).op;
}

/** Encodes a compute op as the protobuf bytes agents consume. */
export function encodeComputeOp(o: {
  opId: string;
  requestId: string;
  attempt: number;
  instance: Instance;
  image: Image | null;
  /** The ports the host plugs (ops that create or restore the instance there). */
  ports?: readonly HostPort[];
  args: OpArgs;
  deadline: Date | null;
  /** The volume of an op that runs on a volume host. */
  volume?: VolumeTarget | null;
  /** What an op that builds an instance with a config drive carries beside the instance: its user data and zone. */
  guest?: { readonly userData: Uint8Array; readonly availabilityZone: string } | null;
}): Uint8Array {
  const inst = o.instance;
  return ComputeOp.encode({
    opId: o.opId,
    requestId: o.requestId,
    attempt: o.attempt,
    createTime: new Date(),
    deadline: o.deadline ?? undefined,
    volume: o.volume ? { id: o.volume.id, projectId: o.volume.projectId, pool: o.volume.pool, sizeBytes: o.volume.sizeBytes } : undefined,
    instance: {
      id: inst.uuid,
      name: inst.name,
      projectId: inst.projectId,
      vcpus: inst.flavor.vcpus,
      ramMb: inst.flavor.ramMb,
      diskGb: inst.flavor.diskGb,
      image: {
        id: o.image?.id ?? inst.imageId,
        name: o.image?.name ?? "",
        diskFormat: o.image?.diskFormat ?? "",
        checksum: o.image?.checksum ?? "",
        properties: { ...(o.image?.properties ?? {}) },
      },
      extraSpecs: { ...inst.extraSpecs },
      metadata: { ...inst.metadata },
      ports: (o.ports ?? []).map(portToProto),
      guest: o.guest
        ? {
            hostname: inst.hostname,
            availabilityZone: o.guest.availabilityZone,
            keyName: inst.keyName ?? "",
            publicKey: inst.keyData ?? "",
            userData: Buffer.from(o.guest.userData),
            configDrive: true,
          }
        : undefined,
    },
    op: caseOf(o.args),
  }).finish();
}

/** A port as the host plugs it, on the wire. */
export function portToProto(p: HostPort): Port {
  return {
    id: p.id,
    macAddress: p.macAddress,
    fixedIps: p.fixedIps.map((ip) => ({ subnetId: ip.subnetId, ipAddress: ip.ipAddress })),
    network: {
      id: p.network.id,
      segmentation: p.network.segmentation,
      physicalBridge: p.network.physicalBridge,
      vni: p.network.vni,
      mtu: p.network.mtu,
      subnets: p.network.subnets.map((s) => ({ ...s, dnsServers: [...s.dnsServers], hostRoutes: s.hostRoutes.map((r) => ({ ...r })) })),
      dhcpPort: p.network.dhcpPort
        ? { id: p.network.dhcpPort.id, macAddress: p.network.dhcpPort.macAddress, fixedIps: p.network.dhcpPort.fixedIps.map((ip) => ({ ...ip })) }
        : undefined,
    },
    portSecurity: p.portSecurity,
    securityRules: p.securityRules.map((r) => ({ ...r, remoteAddresses: [...r.remoteAddresses] })),
  };
}

/**
 * Encodes a volume op: a ComputeOp with `volume` set and no instance. A
 * create from an image carries the image's record (`image`) so its host can
 * fetch and check the bytes.
 */
export function encodeVolumeOp(o: {
  opId: string;
  requestId: string;
  volume: VolumeTarget;
  image: Image | null;
  args: VolumeOpArgs;
  deadline: Date | null;
}): Uint8Array {
  const a = o.args;
  const op: ComputeOp["op"] =
    a.kind === "create_volume"
      ? {
          $case: "createVolume",
          createVolume: {
            image: o.image
              ? { id: o.image.id, name: o.image.name, diskFormat: o.image.diskFormat, checksum: o.image.checksum, properties: { ...o.image.properties } }
              : undefined,
            sourceVolumeId: a.sourceVolumeId,
            sourceSnapshotId: a.sourceSnapshotId,
          },
        }
      : caseOf(a);
  return ComputeOp.encode({
    opId: o.opId,
    requestId: o.requestId,
    attempt: 1,
    createTime: new Date(),
    deadline: o.deadline ?? undefined,
    instance: undefined,
    volume: { id: o.volume.id, projectId: o.volume.projectId, pool: o.volume.pool, sizeBytes: o.volume.sizeBytes },
    op,
  }).finish();
}
