/**
 * What a libvirt host has and holds: its resources (node info, memory
 * stats, the instances file system), its domains (novamesh's, described;
 * everyone else's, by UUID), the old copies of resizes in place and the
 * live migrations prepared here, and from those the host report and the
 * fit check that keeps the driver within its allocation ratios.
 *
 * Free memory counts the flavor memory of running and paused domains, free
 * disk the flavor disk of every domain and set-aside copy (qcow2 overlays
 * are sparse; the scheduler's claims are flavor sizes too).
 */
import { statfs } from "node:fs/promises";
import type { Logger } from "pino";
import { DriverError, InstanceNotFoundError } from "../errors.js";
import type { HostReport, InstanceReport, PowerState, Resources } from "../types.js";
import { isLibvirtError, type LibvirtDomain } from "./binding/index.js";
import * as C from "./binding/constants.js";
import type { ManagedConnection } from "./connection.js";
import { domainName, parseDomainMetadata, serverIdOfDomain, type DomainMetadata } from "./domain-xml.js";
import { bestEffort, invalidState, unless } from "./failures.js";
import type { IncomingMigration, InstanceFiles, InstanceSidecar } from "./instance-files.js";
import type { LibvirtDriverOptions } from "./options.js";
import { powerStateOf } from "./power-state.js";

/** libvirt states of a domain that has a running qemu (and so takes memory). */
export const ACTIVE_STATES = new Set<number>([C.VIR_DOMAIN_RUNNING, C.VIR_DOMAIN_BLOCKED, C.VIR_DOMAIN_PAUSED, C.VIR_DOMAIN_SHUTDOWN]);

/** A novamesh domain as the driver sees it. */
export interface Known {
  readonly dom: LibvirtDomain;
  readonly serverId: string;
  readonly state: number;
  readonly reason: number;
  readonly managedSave: boolean;
  readonly power: PowerState;
  readonly meta: DomainMetadata | undefined;
}

/** What the host holds (see {@link Inventory.list}). */
export interface Holdings {
  readonly ours: Known[];
  readonly others: { uuid: string; power: PowerState }[];
  /** Old copies of resizes in place: their saved domain XML and its metadata. */
  readonly stashes: { id: string; xml: string; meta: DomainMetadata | undefined }[];
  /** Flavor memory of active domains, MiB. */
  readonly memoryMb: number;
  /** Flavor disk of every domain and set-aside copy, GiB. */
  readonly diskGb: number;
  /** Live migrations prepared here whose domain has not arrived yet. */
  readonly incoming: { id: string; incoming: IncomingMigration }[];
}

/**
 * "kvm" when the hypervisor offers KVM domains and the host CPU has hardware
 * virtualisation (vmx or svm): a /dev/kvm without it (a paravirtualised
 * one, as in some nested sandboxes) is listed by libvirt but hangs guests.
 * "qemu" (TCG) otherwise.
 */
export function domainTypeFor(capabilitiesXml: string): "kvm" | "qemu" {
  const offered = /<domain type=['"]kvm['"]/.test(capabilitiesXml);
  const hostCpu = /<host>[\s\S]*?<cpu>([\s\S]*?)<\/cpu>/.exec(capabilitiesXml)?.[1] ?? "";
  const hardware = /<feature name=['"](vmx|svm)['"]/.test(hostCpu);
  return offered && hardware ? "kvm" : "qemu";
}

/** Serialises async sections (the fit check and the define that uses it up). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

type InventoryOptions = Pick<LibvirtDriverOptions, "hostname" | "instancesPath" | "diskGb" | "allocationRatio">;

/** The host's resources and domains (see the module comment). */
export class Inventory {
  private readonly placement = new Mutex();

  constructor(
    private readonly libvirt: ManagedConnection,
    private readonly files: InstanceFiles,
    private readonly options: InventoryOptions,
    private readonly log: Logger,
  ) {}

  /** The domain type the hypervisor's capabilities call for (see {@link domainTypeFor}); "qemu" when they cannot be read. */
  async domainType(): Promise<"kvm" | "qemu"> {
    const caps = await bestEffort(this.log, "reading the hypervisor's capabilities", () => this.libvirt.call("reading capabilities", (conn) => conn.getCapabilities()));
    return domainTypeFor(caps ?? "");
  }

  /** The node's CPU model ("x86_64" for qemu), or undefined when node info cannot be read. */
  async architecture(): Promise<string | undefined> {
    const info = await bestEffort(this.log, "reading node info", () => this.libvirt.call("reading node info", (conn) => conn.getNodeInfo()));
    return info?.model || undefined;
  }

  private async describe(dom: LibvirtDomain, serverId: string): Promise<Known> {
    const [{ state, reason }, managedSave, xml] = await Promise.all([
      dom.getState(),
      dom.hasManagedSaveImage(),
      dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE),
    ]);
    return { dom, serverId, state, reason, managedSave, power: powerStateOf(state, reason, managedSave), meta: parseDomainMetadata(xml) };
  }

  /** The domain of server `id`, or undefined. */
  async find(id: string): Promise<Known | undefined> {
    return this.libvirt.call(`looking up ${id}`, async (conn) => {
      let dom: LibvirtDomain;
      try {
        dom = await conn.lookupDomainByName(domainName(id));
      } catch (err) {
        if (isLibvirtError(err, "VIR_ERR_NO_DOMAIN")) return undefined;
        throw err;
      }
      return this.describe(dom, id);
    });
  }

  /** The domain of server `id` (or undefined) and what its instance directory records. */
  lookup(id: string): Promise<[Known | undefined, InstanceSidecar]> {
    return Promise.all([this.find(id), this.files.sidecar(id)]);
  }

  /**
   * The domain of server `id`, for an operation on it; InstanceNotFoundError
   * if there is none, INVALID_STATE while it is an incoming live migration.
   */
  async get(id: string): Promise<Known> {
    const [k, side] = await this.lookup(id);
    if (side.incoming) throw invalidState(`${id} is an incoming live migration from ${side.incoming.from}, not finished`);
    if (!k) throw new InstanceNotFoundError(id);
    return k;
  }

  /** Every domain libvirt lists: novamesh's described, everyone else's by UUID. */
  private async domains(): Promise<{ ours: Known[]; others: { uuid: string; power: PowerState }[] }> {
    return this.libvirt.call("listing domains", async (conn) => {
      const doms = await conn.listAllDomains(0);
      const ours: Known[] = [];
      const others: { uuid: string; power: PowerState }[] = [];
      await Promise.all(
        doms.map(async (dom) => {
          try {
            const id = serverIdOfDomain(await dom.getName());
            if (id !== undefined) {
              ours.push(await this.describe(dom, id));
            } else {
              const [{ state, reason }, uuid, managedSave] = await Promise.all([dom.getState(), dom.getUUIDString(), dom.hasManagedSaveImage()]);
              others.push({ uuid, power: powerStateOf(state, reason, managedSave) });
            }
          } catch (err) {
            if (!isLibvirtError(err, "VIR_ERR_NO_DOMAIN")) throw err; // undefined meanwhile
          }
        }),
      );
      return { ours, others };
    });
  }

  /**
   * What the hypervisor holds: novamesh's domains (described), everyone
   * else's (by UUID), the old copies set aside by resizes in place, and the
   * memory (active domains) and disk (every domain and set-aside copy)
   * their flavors take.
   */
  async list(): Promise<Holdings> {
    const { ours, others } = await this.domains();
    const listed = await this.files.list();
    const known = new Set(ours.map((k) => k.serverId));
    const incoming = (
      await Promise.all(listed.instances.filter((id) => !known.has(id)).map(async (id) => ({ id, incoming: (await this.files.sidecar(id)).incoming })))
    ).filter((x): x is { id: string; incoming: IncomingMigration } => x.incoming !== undefined);
    const stashes = await Promise.all(
      listed.stashes.map(async (id) => {
        const xml = await this.files.stashXml(id);
        return { id, xml, meta: parseDomainMetadata(xml) };
      }),
    );
    let memoryMb = 0;
    let diskGb = 0;
    for (const k of ours) {
      if (ACTIVE_STATES.has(k.state)) memoryMb += k.meta?.memoryMb ?? (await k.dom.getInfo()).maxMemKiB / 1024;
      diskGb += k.meta?.diskGb ?? 0;
    }
    for (const st of stashes) diskGb += st.meta?.diskGb ?? 0;
    for (const { incoming: m } of incoming) {
      memoryMb += m.memoryMb;
      diskGb += m.diskGb;
    }
    return { ours, others, stashes, memoryMb, diskGb, incoming };
  }

  /**
   * The host's resources, and the disk the file system still has free
   * (undefined when the disk size is configured). One statfs for both.
   */
  private async resources(): Promise<{ capacity: Resources; fsFreeGb: number | undefined }> {
    const info = await this.libvirt.call("reading node info", (conn) => conn.getNodeInfo());
    let memoryKiB = info.memoryKiB;
    // Where the hypervisor has no memory stats (the test driver), node info says how much memory there is.
    const stats = await bestEffort(this.log, "reading node memory stats", () =>
      this.libvirt.call("reading node memory", (conn) => conn.getNodeMemoryStats()).catch(unless("LIBVIRT_NO_SUPPORT")),
    );
    if (stats?.total !== undefined) memoryKiB = stats.total;
    let diskGb = this.options.diskGb;
    let fsFreeGb: number | undefined;
    if (diskGb === undefined) {
      const fs = await statfs(this.options.instancesPath);
      diskGb = Math.floor((fs.blocks * fs.bsize) / 1024 ** 3);
      fsFreeGb = Math.floor((fs.bavail * fs.bsize) / 1024 ** 3);
    }
    return { capacity: { vcpus: info.cpus, memoryMb: Math.floor(memoryKiB / 1024), diskGb }, fsFreeGb };
  }

  async capacity(): Promise<Resources> {
    return (await this.resources()).capacity;
  }

  async report(): Promise<HostReport> {
    const [{ capacity: cap, fsFreeGb }, inv] = await Promise.all([this.resources(), this.list()]);
    const instances: InstanceReport[] = inv.ours.map((k) => ({ serverId: k.serverId, powerState: k.power }));
    // Prepared for a live migration: memory and disk held, the domain not here yet.
    for (const m of inv.incoming) instances.push({ serverId: m.id, powerState: "PAUSED" });
    // Domains defined by someone else are reported (never touched): the controller ignores ids it does not know.
    for (const o of inv.others) instances.push({ serverId: o.uuid, powerState: o.power });
    const freeDiskGb = Math.min(Math.max(0, cap.diskGb - inv.diskGb), fsFreeGb ?? Infinity);
    return { freeMemoryMb: Math.max(0, cap.memoryMb - inv.memoryMb), freeDiskGb, instances };
  }

  /**
   * Runs `place` (which defines or starts what `need` is for) under the
   * placement lock once `need` fits next to what the host holds now; else
   * rejects with a retryable INSUFFICIENT_RESOURCES ("cannot <what> <id>").
   */
  placing<T>(need: { memoryMb: number; diskGb: number }, what: string, id: string, place: () => Promise<T>): Promise<T> {
    return this.placement.run(async () => {
      await this.checkFits(need, what, id);
      return place();
    });
  }

  private async checkFits(need: { memoryMb: number; diskGb: number }, what: string, id: string): Promise<void> {
    const [cap, used] = await Promise.all([this.capacity(), this.list()]);
    const ratio = this.options.allocationRatio ?? { memoryMb: 1.5, diskGb: 1 };
    const short: string[] = [];
    if (used.memoryMb + need.memoryMb > cap.memoryMb * ratio.memoryMb) {
      short.push(`memory: ${need.memoryMb} MiB wanted, ${Math.max(0, cap.memoryMb * ratio.memoryMb - used.memoryMb)} MiB free`);
    }
    if (used.diskGb + need.diskGb > cap.diskGb * ratio.diskGb) {
      short.push(`disk: ${need.diskGb} GiB wanted, ${Math.max(0, cap.diskGb * ratio.diskGb - used.diskGb)} GiB free`);
    }
    if (short.length > 0) {
      throw new DriverError("INSUFFICIENT_RESOURCES", `cannot ${what} ${id} on ${this.options.hostname}: ${short.join("; ")}`, {
        retryable: true,
      });
    }
  }
}
