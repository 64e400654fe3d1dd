/**
 * The volumes an op on an instance carries, checked and converted as they
 * come off the wire (for `proto-convert.ts`): the exports a compute host
 * opens, a live migration's volumes, and the root and attached volumes of
 * an op that creates the instance on a host. A problem names its field.
 */
import type { AttachedVolume, HostVolumes, MigratingVolume, VolumeExport } from "../controller/domain/ops.js";
import { VOLUME_DEVICE_PATTERN } from "./drivers/volume-devices.js";
import { VOLUME_ID_PATTERN } from "./volume/backend.js";

/** What is wrong with an export a compute host is to open (undefined: nothing); `field` names it in the message. */
export function exportProblem(field: string, e: Partial<VolumeExport> | undefined): string | undefined {
  // Unset on the wire, the export message decodes as undefined.
  if (!e) return `${field} is not set`;
  if (!e.host) return `${field}.host is empty`;
  const port = e.port ?? 0;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `${field}.port ${port} is not a port (1-65535)`;
  if (!e.exportName) return `${field}.export_name is empty`;
  return undefined;
}

/** What is wrong with the volumes of a live migration (undefined: nothing). */
export function migratingVolumesProblem(volumes: readonly Partial<MigratingVolume>[]): string | undefined {
  const seen = new Set<string>();
  for (const [i, v] of volumes.entries()) {
    const id = v.attachmentId ?? "";
    if (!VOLUME_ID_PATTERN.test(id)) return `live_migrate.volumes[${i}].attachment_id "${id}" is not an attachment id`;
    if (seen.has(id)) return `live_migrate.volumes names attachment ${id} twice`;
    seen.add(id);
    const problem = exportProblem(`live_migrate.volumes[${i}].export`, v.export);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/** The kinds whose op creates the instance on this host with its volumes (see `HostVolumes`). */
export type HostVolumesKind = "spawn" | "rebuild" | "finish_migration";

/** The root volume and attached volumes of a spawn, a rebuild or a finish_migration as they come off the wire. */
export interface WireHostVolumes {
  readonly rootAttachmentId?: string;
  readonly rootExport?: Partial<VolumeExport>;
  readonly volumes?: readonly Partial<{ attachmentId: string; device: string; export: Partial<VolumeExport> }>[];
}

/** An export as the agent keeps it: its three fields, nothing else the wire may carry. */
function exportOf(e: Partial<VolumeExport>): VolumeExport {
  return { host: e.host ?? "", port: e.port ?? 0, exportName: e.exportName ?? "" };
}

/**
 * The volumes an op that creates the instance here carries, as the agent
 * takes them: a root volume (attachment and export) only when the op names
 * one, which takes both; attached volumes only when there are any, each
 * with a valid attachment id, a device vdb…vdz (vda is the root disk's)
 * and a usable export, no attachment or device twice. Or what is wrong,
 * naming the field (`finish_migration.volumes[1].export.port …`).
 */
export function hostVolumesOf(kind: HostVolumesKind, a: WireHostVolumes): HostVolumes | string {
  const { rootAttachmentId, rootExport } = a;
  let root: HostVolumes = {};
  if (rootAttachmentId || rootExport) {
    if (!rootAttachmentId) return `${kind} names a root_export but no root_attachment_id`;
    if (!VOLUME_ID_PATTERN.test(rootAttachmentId)) return `${kind}.root_attachment_id "${rootAttachmentId}" is not an attachment id`;
    if (!rootExport) return `${kind} names a root_attachment_id but no root_export`;
    const problem = exportProblem(`${kind}.root_export`, rootExport);
    if (problem !== undefined) return problem;
    root = { rootAttachmentId, rootExport: exportOf(rootExport) };
  }
  const volumes: AttachedVolume[] = [];
  const ids = new Set<string>(rootAttachmentId ? [rootAttachmentId] : []);
  const devices = new Set<string>();
  for (const [i, v] of (a.volumes ?? []).entries()) {
    const field = `${kind}.volumes[${i}]`;
    const id = v.attachmentId ?? "";
    if (!VOLUME_ID_PATTERN.test(id)) return `${field}.attachment_id "${id}" is not an attachment id`;
    if (ids.has(id)) return `${kind} names attachment ${id} twice`;
    ids.add(id);
    const device = v.device ?? "";
    if (device === "") return `${field}.device is empty`;
    if (!VOLUME_DEVICE_PATTERN.test(device)) return `${field}.device "${device}" is not a virtio disk (vdb…vdz)`;
    if (device === "vda") return `${field}.device is vda, the root disk's`;
    if (devices.has(device)) return `${kind} names device ${device} twice`;
    devices.add(device);
    const problem = exportProblem(`${field}.export`, v.export);
    if (problem !== undefined) return problem;
    volumes.push({ attachmentId: id, device, export: exportOf(v.export!) });
  }
  return volumes.length > 0 ? { ...root, volumes } : root;
}
