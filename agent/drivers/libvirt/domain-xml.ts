/**
 * Domain XML from a typed description: the only place libvirt XML is
 * written. Every value that comes from a user (names, metadata, paths) goes
 * through {@link xmlEscape}; numbers are checked to be integers.
 *
 * The domain is named `novamesh-<server id>` with the server id as its UUID,
 * so an agent finds its domains again after a restart, and carries a
 * `<metadata>` element in novamesh's namespace with what the driver needs to
 * know about it later (flavor, image, spec hash, project, display name).
 */

/** Namespace of novamesh's domain metadata. */
export const METADATA_NS = "https://novamesh.io/xmlns/libvirt/instance/1";

/** Prefix of every domain name novamesh defines. */
export const DOMAIN_NAME_PREFIX = "novamesh-";

/** libvirt domain name of a server. */
export function domainName(serverId: string): string {
  return `${DOMAIN_NAME_PREFIX}${serverId}`;
}

/** The server id of a domain novamesh named, or undefined for anyone else's domain. */
export function serverIdOfDomain(name: string): string | undefined {
  return name.startsWith(DOMAIN_NAME_PREFIX) ? name.slice(DOMAIN_NAME_PREFIX.length) : undefined;
}

/** Escapes text for XML character data and attribute values (either quote). */
export function xmlEscape(value: string): string {
  // Characters XML 1.0 cannot carry at all are dropped rather than escaped.
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, "");
  return clean.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/** A disk of the domain. */
export interface DomainDisk {
  /** Absolute path of the image file. */
  readonly path: string;
  /** Its format ("qcow2", "raw"). */
  readonly format: "qcow2" | "raw";
  /** Guest device name ("vda", …). */
  readonly target: string;
}

/** A network interface: a tap on a Linux bridge, virtio. */
export interface DomainInterface {
  /** Unicast MAC, "fa:16:3e:…". */
  readonly mac: string;
  /** The bridge the tap joins. */
  readonly bridge: string;
  /** The tap's name (≤ 15 characters). */
  readonly tap: string;
  /** Interface MTU. */
  readonly mtu: number;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Direct kernel boot (an image with `kernel_id`/`ramdisk_id`, as Nova's AMI-style images). */
export interface DomainKernelBoot {
  /** Absolute path of the kernel. */
  readonly kernel: string;
  /** Absolute path of the initial ramdisk, if any. */
  readonly initrd?: string;
  /** Kernel command line. */
  readonly cmdline?: string;
}

/** What novamesh records inside the domain (read back with {@link parseDomainMetadata}). */
export interface DomainMetadata {
  /** Server display name. */
  readonly displayName: string;
  /** Owning project. */
  readonly projectId: string;
  /** Image the root disk was made from. */
  readonly imageId: string;
  /** Flavor sizes the domain was built with. */
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  /** Hash of the instance spec, to tell "the same instance again" from "another spec". */
  readonly specHash: string;
  /** A domain booted from a volume: the attachment of its root disk (vda); it has no local disk. */
  readonly rootAttachmentId?: string;
}

/** Everything a domain is built from. */
export interface DomainDescription {
  /** Server id (a UUID): the domain's UUID and, prefixed, its name. */
  readonly serverId: string;
  /** "kvm" where /dev/kvm works, "qemu" (TCG) otherwise; "test" for libvirt's test driver is not needed: it accepts both. */
  readonly type: "kvm" | "qemu";
  /** Guest architecture (default "x86_64"). */
  readonly arch?: string;
  /** Machine type (default "pc"). */
  readonly machine?: string;
  readonly vcpus: number;
  readonly memoryMb: number;
  /** Disks, the root disk first (none when the root disk is a volume on vda). */
  readonly disks: readonly DomainDisk[];
  /** Direct kernel boot instead of booting from the root disk. */
  readonly kernelBoot?: DomainKernelBoot;
  /** File the serial console is logged to (appended). */
  readonly consoleLog: string;
  /** Network interfaces, in the order the guest sees them. */
  readonly interfaces?: readonly DomainInterface[];
  /** Volumes attached (kept through a rebuild), after the disks. */
  readonly volumes?: readonly DomainVolume[];
  /** The config drive image (ISO 9660), attached read-only as a CD-ROM. */
  readonly configDrive?: string;
  /** Recorded in `<metadata>`. */
  readonly metadata: DomainMetadata;
}

function int(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`${name} must be an integer ≥ ${min}, got ${value}`);
  return value;
}

function absolute(name: string, path: string): string {
  if (!path.startsWith("/")) throw new RangeError(`${name} must be an absolute path, got "${path}"`);
  return path;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEVICE = /^[a-z]{2,3}[a-z]$/;
const TOKEN = /^[A-Za-z0-9_.-]+$/;

/** The domain XML for `d`. Throws RangeError for values libvirt would misread. */
export function buildDomainXml(d: DomainDescription): string {
  if (!UUID.test(d.serverId)) throw new RangeError(`serverId must be a UUID, got "${d.serverId}"`);
  if (d.disks.length === 0 && !d.volumes?.length && !d.kernelBoot) throw new RangeError("a domain needs a disk or a kernel to boot");
  if (d.metadata.rootAttachmentId !== undefined && !d.volumes?.some((v) => v.attachmentId === d.metadata.rootAttachmentId && v.target === "vda")) {
    throw new RangeError(`the root volume ${d.metadata.rootAttachmentId} must be among the volumes, on vda`);
  }
  const arch = d.arch ?? "x86_64";
  const machine = d.machine ?? "pc";
  if (!TOKEN.test(arch) || !TOKEN.test(machine)) throw new RangeError(`bad arch "${arch}" or machine "${machine}"`);
  const m = d.metadata;
  const lines: string[] = [];
  const push = (depth: number, s: string) => lines.push(`${"  ".repeat(depth)}${s}`);

  push(0, `<domain type='${d.type}'>`);
  push(1, `<name>${xmlEscape(domainName(d.serverId))}</name>`);
  push(1, `<uuid>${d.serverId.toLowerCase()}</uuid>`);
  push(1, `<title>${xmlEscape(m.displayName)}</title>`);
  push(1, "<metadata>");
  push(2, `<nm:instance xmlns:nm='${METADATA_NS}'>`);
  push(3, `<nm:name>${xmlEscape(m.displayName)}</nm:name>`);
  push(3, `<nm:project>${xmlEscape(m.projectId)}</nm:project>`);
  push(3, `<nm:image>${xmlEscape(m.imageId)}</nm:image>`);
  push(
    3,
    `<nm:flavor vcpus='${int("vcpus", m.vcpus, 1)}' memory_mb='${int("memoryMb", m.memoryMb, 1)}' disk_gb='${int("diskGb", m.diskGb, 0)}'/>`,
  );
  push(3, `<nm:spec hash='${xmlEscape(m.specHash)}'/>`);
  if (m.rootAttachmentId !== undefined) push(3, `<nm:root attachment='${xmlEscape(m.rootAttachmentId)}'/>`);
  push(2, "</nm:instance>");
  push(1, "</metadata>");
  push(1, `<memory unit='MiB'>${int("memoryMb", d.memoryMb, 1)}</memory>`);
  push(1, `<currentMemory unit='MiB'>${d.memoryMb}</currentMemory>`);
  push(1, `<vcpu placement='static'>${int("vcpus", d.vcpus, 1)}</vcpu>`);
  push(1, "<os>");
  push(2, `<type arch='${arch}' machine='${machine}'>hvm</type>`);
  if (d.kernelBoot) {
    push(2, `<kernel>${xmlEscape(absolute("kernel", d.kernelBoot.kernel))}</kernel>`);
    if (d.kernelBoot.initrd) push(2, `<initrd>${xmlEscape(absolute("initrd", d.kernelBoot.initrd))}</initrd>`);
    if (d.kernelBoot.cmdline) push(2, `<cmdline>${xmlEscape(d.kernelBoot.cmdline)}</cmdline>`);
  } else {
    push(2, "<boot dev='hd'/>");
  }
  push(1, "</os>");
  push(1, "<features><acpi/><apic/></features>");
  push(1, "<clock offset='utc'/>");
  push(1, "<on_poweroff>destroy</on_poweroff>");
  push(1, "<on_reboot>restart</on_reboot>");
  push(1, "<on_crash>destroy</on_crash>");
  push(1, "<devices>");
  for (const disk of d.disks) {
    if (!DEVICE.test(disk.target)) throw new RangeError(`disk target must look like "vda", got "${disk.target}"`);
    push(2, "<disk type='file' device='disk'>");
    push(3, `<driver name='qemu' type='${disk.format}' cache='none'/>`);
    push(3, `<source file='${xmlEscape(absolute("disk path", disk.path))}'/>`);
    push(3, `<target dev='${disk.target}' bus='virtio'/>`);
    push(2, "</disk>");
  }
  if (d.configDrive) {
    // A CD-ROM as Nova attaches one: IDE on i440fx ("pc"), SATA on q35, which has no IDE; read-only, so a live migration does not copy it.
    const [dev, bus] = /q35/.test(machine) ? ["sda", "sata"] : ["hdd", "ide"];
    push(2, "<disk type='file' device='cdrom'>");
    push(3, "<driver name='qemu' type='raw'/>");
    push(3, `<source file='${xmlEscape(absolute("config drive path", d.configDrive))}'/>`);
    push(3, `<target dev='${dev}' bus='${bus}'/>`);
    push(3, "<readonly/>");
    push(2, "</disk>");
  }
  for (const v of d.volumes ?? []) for (const line of buildVolumeDiskXml(v).trimEnd().split("\n")) push(2, line);
  for (const nic of d.interfaces ?? []) for (const line of interfaceLines(nic)) push(2, line);
  const log = xmlEscape(absolute("consoleLog", d.consoleLog));
  // A file, not a pty with a log: a pty nobody reads stalls the guest's
  // output (qemu blocks on it), so the log would stop filling.
  push(2, "<serial type='file'>");
  push(3, `<source path='${log}' append='on'/>`);
  push(3, "<target port='0'/>");
  push(2, "</serial>");
  push(2, "<memballoon model='none'/>");
  push(1, "</devices>");
  push(0, "</domain>");
  return `${lines.join("\n")}\n`;
}

/**
 * The `<interface>` element of `nic`, one line per element, indented
 * relative to the `<interface>` line. Throws RangeError for values libvirt
 * would misread.
 */
function interfaceLines(nic: DomainInterface): string[] {
  if (!MAC.test(nic.mac)) throw new RangeError(`interface MAC must look like "fa:16:3e:00:00:01", got "${nic.mac}"`);
  if (!IFNAME.test(nic.bridge) || !IFNAME.test(nic.tap)) throw new RangeError(`bad bridge "${nic.bridge}" or tap "${nic.tap}" name`);
  return [
    "<interface type='bridge'>",
    `  <mac address='${nic.mac}'/>`,
    `  <source bridge='${nic.bridge}'/>`,
    `  <target dev='${nic.tap}'/>`,
    "  <model type='virtio'/>",
    `  <mtu size='${int("mtu", nic.mtu, 68)}'/>`,
    "</interface>",
  ];
}

/**
 * The device XML of one interface, for hot-plugging it
 * (`virDomainAttachDeviceFlags`): the same element the domain XML has.
 */
export function buildInterfaceXml(nic: DomainInterface): string {
  return `${interfaceLines(nic).join("\n")}\n`;
}

/** An `<interface>` element of a domain's XML, as libvirt wrote it. */
export interface ParsedInterface {
  /** Its MAC, lower case. */
  readonly mac: string;
  /** The whole element. */
  readonly xml: string;
}

/** The `<interface>` elements of a domain's XML (as libvirt returns it: either quote). */
export function parseInterfaces(domainXml: string): ParsedInterface[] {
  const out: ParsedInterface[] = [];
  for (const m of domainXml.matchAll(/<interface\b[^>]*>[\s\S]*?<\/interface>/g)) {
    const mac = m[0].match(/<mac\s+address=(["'])([^"']*)\1/);
    if (mac) out.push({ mac: mac[2]!.toLowerCase(), xml: m[0] });
  }
  return out;
}

/** A volume: an NBD export opened by qemu over TLS, a virtio disk carrying its attachment id as a user alias. */
export interface DomainVolume {
  /** The attachment (letters, digits, "_", "-"): the disk's alias is `ua-<attachmentId>`. */
  readonly attachmentId: string;
  /** Guest device ("vdb", …). */
  readonly target: string;
  /** The volume host's address or name. */
  readonly host: string;
  readonly port: number;
  /** The NBD export name. */
  readonly exportName: string;
}

/** Prefix of a libvirt user alias; the rest: letters, digits, "_", "-". */
const USER_ALIAS_PREFIX = "ua-";
const ALIAS_BODY = /^[A-Za-z0-9_-]+$/;
/** A volume host as a disk's `<host name=…>` may name it. */
export const VOLUME_HOST_PATTERN = /^[A-Za-z0-9.:_-]{1,253}$/;

/**
 * Seconds qemu's NBD client holds a disk request while it reconnects to a
 * volume host that closed the connection (the volume host does so to serve
 * a grown volume at its new size): the request waits and is sent again
 * instead of failing in the guest. The volume host serves the export again
 * within a second or so; 15 s also covers a slow one, and stays below the
 * 30 s after which a Linux guest gives up on a request itself.
 */
export const NBD_RECONNECT_DELAY_SECONDS = 15;

/**
 * The device XML of a volume's disk, for hot-plugging it
 * (`virDomainAttachDeviceFlags`): raw over NBD, TLS with qemu.conf's
 * `nbd_tls_x509_cert_dir` as the client identity, no host cache, a
 * reconnect delay of {@link NBD_RECONNECT_DELAY_SECONDS} (a libvirt that
 * knows the element passes it to qemu as `reconnect-delay`; libvirt 9.0
 * does not and drops it, so its qemu fails requests made while the
 * connection is down). Throws RangeError for values libvirt would misread.
 */
export function buildVolumeDiskXml(v: DomainVolume): string {
  if (!ALIAS_BODY.test(v.attachmentId)) throw new RangeError(`attachment id must be letters, digits, "_" or "-", got "${v.attachmentId}"`);
  if (!DEVICE.test(v.target)) throw new RangeError(`disk target must look like "vdb", got "${v.target}"`);
  if (!VOLUME_HOST_PATTERN.test(v.host)) throw new RangeError(`bad volume host "${v.host}"`);
  const port = int("port", v.port, 1);
  if (port > 65535) throw new RangeError(`port must be ≤ 65535, got ${port}`);
  return [
    "<disk type='network' device='disk'>",
    "  <driver name='qemu' type='raw' cache='none'/>",
    `  <source protocol='nbd' name='${xmlEscape(v.exportName)}' tls='yes'>`,
    `    <host name='${xmlEscape(v.host)}' port='${port}'/>`,
    `    <reconnect delay='${NBD_RECONNECT_DELAY_SECONDS}'/>`,
    "  </source>",
    `  <target dev='${v.target}' bus='virtio'/>`,
    `  <alias name='${USER_ALIAS_PREFIX}${v.attachmentId}'/>`,
    "</disk>",
    "",
  ].join("\n");
}

/** A `<disk>` element of a domain's XML, as libvirt wrote it. */
export interface ParsedDisk {
  /** Guest device ("vda", …). */
  readonly target: string;
  /** The attachment, for a disk with a user alias `ua-<id>`. */
  readonly attachmentId?: string;
  /** An NBD disk's export: host, port and name. */
  readonly nbd?: { readonly host: string; readonly port: number; readonly exportName: string };
  /** The whole element. */
  readonly xml: string;
}

/** The `<disk>` elements of a domain's XML (either quote) that have a target. */
export function parseDisks(domainXml: string): ParsedDisk[] {
  const out: ParsedDisk[] = [];
  const attr = (el: string | undefined, name: string) => el?.match(new RegExp(`\\b${name}=(["'])([^"']*)\\1`))?.[2];
  for (const m of domainXml.matchAll(/<disk\b[^>]*>[\s\S]*?<\/disk>/g)) {
    const xml = m[0];
    const target = attr(xml.match(/<target\b[^>]*>/)?.[0], "dev");
    if (!target) continue;
    const alias = attr(xml.match(/<alias\b[^>]*>/)?.[0], "name");
    const source = xml.match(/<source\b[^>]*>/)?.[0];
    const host = xml.match(/<host\b[^>]*>/)?.[0];
    const nbd =
      attr(source, "protocol") === "nbd" && host
        ? { host: unescape(attr(host, "name") ?? ""), port: Number(attr(host, "port") ?? 10809), exportName: unescape(attr(source, "name") ?? "") }
        : undefined;
    out.push({
      target,
      ...(alias?.startsWith(USER_ALIAS_PREFIX) ? { attachmentId: alias.slice(USER_ALIAS_PREFIX.length) } : {}),
      ...(nbd ? { nbd } : {}),
      xml,
    });
  }
  return out;
}

function unescape(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) => {
    switch (e) {
      case "amp":
        return "&";
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
      default:
        return String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

/**
 * Reads novamesh's metadata back from a domain's XML (as libvirt returns
 * it: any namespace prefix, either quote). Undefined when the domain has
 * none (not ours, or defined by hand).
 */
export function parseDomainMetadata(xml: string): DomainMetadata | undefined {
  const ns = xml.match(/<([A-Za-z_][\w.-]*):instance\s+xmlns:\1=(["'])([^"']*)\2\s*>([\s\S]*?)<\/\1:instance>/);
  if (!ns || ns[3] !== METADATA_NS) return undefined;
  const prefix = ns[1]!;
  const body = ns[4]!;
  const text = (tag: string) => {
    const r = body.match(new RegExp(`<${prefix}:${tag}>([\\s\\S]*?)</${prefix}:${tag}>`));
    if (r) return unescape(r[1]!);
    // libvirt writes an empty element back as <nm:tag/>.
    return new RegExp(`<${prefix}:${tag}\\s*/>`).test(body) ? "" : undefined;
  };
  const attr = (tag: string, name: string) => {
    const el = body.match(new RegExp(`<${prefix}:${tag}\\b([^>]*)/?>`));
    const a = el?.[1]?.match(new RegExp(`\\b${name}=(["'])([^"']*)\\1`));
    return a ? unescape(a[2]!) : undefined;
  };
  const displayName = text("name");
  const projectId = text("project");
  const imageId = text("image");
  const specHash = attr("spec", "hash");
  const vcpus = Number(attr("flavor", "vcpus"));
  const memoryMb = Number(attr("flavor", "memory_mb"));
  const diskGb = Number(attr("flavor", "disk_gb"));
  if (displayName === undefined || projectId === undefined || imageId === undefined || specHash === undefined) return undefined;
  if (![vcpus, memoryMb, diskGb].every(Number.isFinite)) return undefined;
  const rootAttachmentId = attr("root", "attachment");
  return { displayName, projectId, imageId, specHash, vcpus, memoryMb, diskGb, ...(rootAttachmentId !== undefined ? { rootAttachmentId } : {}) };
}
