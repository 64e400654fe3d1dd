/**
 * Volumes in a libvirt live migration: the domain XML the target defines
 * has each volume disk (user alias `ua-<attachmentId>`) open the export
 * made for the target instead of the source's, and only the local disks
 * are copied (VIR_MIGRATE_PARAM_MIGRATE_DISKS): a volume is reached by both
 * hosts over the network, never copied. A network disk without an export
 * for the target is refused before anything moves.
 *
 * libvirt's safety check (a disk not copied must be shared storage with
 * cache='none' or 'directsync', unless VIR_MIGRATE_UNSAFE) passes: network
 * disks count as shared, and volume disks have cache='none' anyway (see
 * `buildVolumeDiskXml`), so qemu's page cache on the source holds nothing
 * the target would miss.
 */
import type { MigratingVolume } from "../driver.js";
import { DriverError } from "../errors.js";
import { parseDisks, VOLUME_HOST_PATTERN, xmlEscape } from "./domain-xml.js";

/** Whether a `<disk>` element is a network disk. */
const isNetwork = (diskXml: string) => /^<disk\b[^>]*\btype=(["'])network\1/.test(diskXml);
/** Whether a `<disk>` element is read-only or has no source (an empty CD-ROM): nothing to copy. */
const nothingToCopy = (diskXml: string) => /<readonly\s*\/>/.test(diskXml) || !/<source\b/.test(diskXml);

/** A refusal of the migration: it is not started, and trying again does not help. */
function refuse(instanceId: string, targetHost: string, why: string): DriverError {
  return new DriverError("INVALID_ARGUMENT", `cannot live migrate ${instanceId} to ${targetHost}: ${why}`, { retryable: false });
}

/** Checks the exports given for the target (host and port a disk can name, a name). */
function checkExports(volumes: readonly MigratingVolume[], instanceId: string, targetHost: string): void {
  for (const v of volumes) {
    const { host, port, exportName } = v.export;
    if (!VOLUME_HOST_PATTERN.test(host)) throw refuse(instanceId, targetHost, `the export of volume attachment ${v.attachmentId} names a bad host "${host}"`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw refuse(instanceId, targetHost, `the export of volume attachment ${v.attachmentId} names a bad port ${port}`);
    if (exportName === "") throw refuse(instanceId, targetHost, `the export of volume attachment ${v.attachmentId} has no name`);
  }
}

/**
 * Domain XML (live or persistent) with each volume disk opening its export
 * in `volumes`. A network disk that is not a volume of this driver (no
 * `ua-` alias), or a volume with no export in `volumes`, is refused
 * (non-retryable INVALID_ARGUMENT): the target could not open it, and
 * copying it would fork the volume.
 */
export function retargetVolumeDisks(xml: string, volumes: readonly MigratingVolume[], instanceId: string, targetHost: string): string {
  checkExports(volumes, instanceId, targetHost);
  let out = xml;
  for (const disk of parseDisks(xml)) {
    if (!isNetwork(disk.xml)) continue;
    if (disk.attachmentId === undefined) throw refuse(instanceId, targetHost, `network disk ${disk.target} is not a volume attachment; it is neither copied nor reachable from the target`);
    const to = volumes.find((v) => v.attachmentId === disk.attachmentId);
    if (!to) throw refuse(instanceId, targetHost, `volume attachment ${disk.attachmentId} (${disk.target}) has no export for ${targetHost}`);
    if (!/<host\b/.test(disk.xml)) throw refuse(instanceId, targetHost, `volume disk ${disk.target} names no host to point at the target's export`);
    const { host, port, exportName } = to.export;
    const moved = disk.xml
      .replace(/(<source\b[^>]*?\bname=)(["'])[^"']*\2/, (_m, lead: string, q: string) => `${lead}${q}${xmlEscape(exportName)}${q}`)
      .replace(/<host\b[^>]*?(\/?)>/, (_m, slash: string) => `<host name='${xmlEscape(host)}' port='${port}'${slash}>`);
    out = out.replace(disk.xml, () => moved);
  }
  return out;
}

/** The target names ("vda") of the disks a live migration copies: local disks with a source that are not read-only. */
export function localDisksToCopy(xml: string): string[] {
  return parseDisks(xml)
    .filter((d) => !isNetwork(d.xml) && !nothingToCopy(d.xml))
    .map((d) => d.target);
}
