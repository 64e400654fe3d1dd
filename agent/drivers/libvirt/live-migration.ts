/**
 * Pieces of the libvirt driver's live migration that need no hypervisor:
 * the migration URI a host announces, the domain XML rewritten for the
 * target's paths, and progress from libvirt's job statistics.
 *
 * A host announces where it receives live migrations as one string (the
 * driver's `migrationUri`, sent in Hello and handed to the source):
 *
 *   qemu+tcp://host-b/system#instances=%2Fvar%2Flib%2Fnovamesh%2Finstances&inbound=10.0.0.2
 *
 * the libvirt URI the source's libvirtd connects to (peer to peer), then,
 * after "#", the target's instances path (disks and console logs are put
 * there, so hosts need not share one layout) and the address qemu receives
 * the memory and disk copy on (Nova's `live_migration_inbound_addr`).
 */
import { DriverError } from "../errors.js";
import { xmlEscape } from "./domain-xml.js";

/** Where and how a host receives live migrations. */
export interface MigrationTarget {
  /** libvirt URI of the target's libvirtd, as the source's libvirtd reaches it. */
  readonly uri: string;
  /** The target's instances path. */
  readonly instancesPath: string;
  /** Address the target's qemu listens on for the migration stream. */
  readonly inboundAddr: string;
}

/** The string a host announces as its `migrationUri`. */
export function formatMigrationUri(t: MigrationTarget): string {
  if (t.uri.includes("#")) throw new RangeError(`a libvirt URI cannot hold "#": ${t.uri}`);
  return `${t.uri}#${new URLSearchParams({ instances: t.instancesPath, inbound: t.inboundAddr }).toString()}`;
}

/** The host part of a libvirt URI ("qemu+tcp://10.0.0.2:16509/system" → "10.0.0.2"), or undefined. */
export function uriHost(uri: string): string | undefined {
  try {
    const host = new URL(uri).hostname;
    return host === "" ? undefined : host.replace(/^\[(.*)\]$/, "$1");
  } catch {
    return undefined;
  }
}

/** Reads a `migrationUri` another host announced; a malformed one is a non-retryable INVALID_ARGUMENT. */
export function parseMigrationUri(value: string): MigrationTarget {
  const hash = value.indexOf("#");
  const bad = (why: string) =>
    new DriverError("INVALID_ARGUMENT", `target migration URI "${value}" ${why} (expected <libvirt uri>#instances=<path>&inbound=<address>)`, {
      retryable: false,
    });
  if (hash <= 0) throw bad("has no target paths");
  const uri = value.slice(0, hash);
  const params = new URLSearchParams(value.slice(hash + 1));
  const instancesPath = params.get("instances") ?? "";
  if (!instancesPath.startsWith("/")) throw bad("has no absolute instances path");
  const inboundAddr = params.get("inbound") || uriHost(uri);
  if (!inboundAddr) throw bad("names no inbound address");
  return { uri, instancesPath, inboundAddr };
}

/**
 * Domain XML with every path under `fromDir` moved under `toDir` (the
 * instance's disk and console log, the kernel and ramdisk in the image
 * cache). Paths are compared as the XML spells them (escaped).
 */
export function rebaseXmlPaths(xml: string, fromDir: string, toDir: string): string {
  const from = xmlEscape(fromDir.replace(/\/+$/, "") + "/");
  const to = xmlEscape(toDir.replace(/\/+$/, "") + "/");
  if (from === to) return xml;
  // Only inside attribute values or element text: a path starts right after a quote or ">".
  return xml.replace(new RegExp(`(['">])${escapeRegExp(from)}`, "g"), (_m, lead: string) => `${lead}${to}`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Percent done of a migration job (`virDomainGetJobStats` fields): the
 * data processed (memory and disks) over the data to move, below 100 until
 * the job is over; undefined while libvirt does not know the total yet.
 */
export function jobPercent(stats: Readonly<Record<string, number | string | boolean>>): number | undefined {
  const total = Number(stats.data_total ?? 0);
  const processed = Number(stats.data_processed ?? 0);
  if (!(total > 0)) return undefined;
  return Math.max(0, Math.min(99, Math.floor((processed * 100) / total)));
}

/** A one-line account of a migration job for progress messages. */
export function jobMessage(stats: Readonly<Record<string, number | string | boolean>>): string {
  const mib = (v: unknown) => Math.round(Number(v ?? 0) / 1024 ** 2);
  const parts = [`${mib(stats.data_processed)} of ${mib(stats.data_total)} MiB copied`];
  if (Number(stats.disk_total ?? 0) > 0) parts.push(`disk ${mib(stats.disk_processed)}/${mib(stats.disk_total)} MiB`);
  if (Number(stats.memory_total ?? 0) > 0) parts.push(`memory ${mib(stats.memory_processed)}/${mib(stats.memory_total)} MiB`);
  if (Number(stats.memory_dirty_rate ?? 0) > 0) parts.push(`${stats.memory_dirty_rate} pages/s dirtied`);
  return parts.join(", ");
}
