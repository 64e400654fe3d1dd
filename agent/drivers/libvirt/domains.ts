/**
 * novamesh's libvirt domains: defining one from an instance spec, starting,
 * stopping (cleanly or at once) and removing it.
 *
 * Each server is the persistent domain `novamesh-<server id>` whose UUID is
 * the server id; its `<metadata>` records flavor, image and spec hash, so a
 * restarted agent knows every domain again.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { DEFAULT_SHUTDOWN_TIMEOUT_SECONDS, type RootVolume } from "../driver.js";
import { throwIfAborted } from "../errors.js";
import type { InstanceSpec } from "../types.js";
import * as C from "./binding/constants.js";
import type { ManagedConnection } from "./connection.js";
import { makeConfigDrive } from "./config-drive-iso.js";
import { buildDomainXml, type DomainVolume } from "./domain-xml.js";
import { invalidState, unless } from "./failures.js";
import type { BootImages } from "./image-cache.js";
import type { InstanceFiles } from "./instance-files.js";
import { ACTIVE_STATES, type Inventory, type Known } from "./inventory.js";
import type { LibvirtDriverOptions } from "./options.js";

/** What tells an instance's domain from one of another spec under the same id (booted from another volume, or from its image). */
export function specHash(i: InstanceSpec, root?: RootVolume): string {
  const spec = [i.vcpus, i.memoryMb, i.diskGb, i.image.id, ...(root ? [root.attachmentId] : [])];
  return createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 32);
}

/**
 * Rejects with INVALID_STATE for a domain booted from a volume: it has no
 * local root disk to image or to re-create from its image (the controller
 * refuses an image of such a server, and rebuilds it through its volume
 * host: `rebuild` with its root volume).
 */
export function refuseVolumeBooted(k: Known, what: string): void {
  const root = k.meta?.rootAttachmentId;
  if (root !== undefined) throw invalidState(`cannot ${what} ${k.serverId}: it boots from a volume (attachment ${root}), it has no local root disk`);
}

type DomainOptions = Pick<LibvirtDriverOptions, "shutdownTimeoutSeconds" | "shutdownRetrySeconds">;

/** Defines, starts, stops and removes novamesh's domains (see the module comment). */
export class Domains {
  /** The domain type new domains get; set by the driver's init. */
  type: "kvm" | "qemu" = "qemu";

  constructor(
    private readonly libvirt: ManagedConnection,
    private readonly files: InstanceFiles,
    private readonly inventory: Inventory,
    private readonly options: DomainOptions,
  ) {}

  private domainXml(instance: InstanceSpec, boot: Omit<BootImages, "base">, attached: readonly DomainVolume[], root?: RootVolume): string {
    const p = instance.image.properties;
    const rootDisk = root ? { attachmentId: root.attachmentId, target: "vda", host: root.connection.host, port: root.connection.port, exportName: root.connection.exportName } : undefined;
    const volumes = rootDisk ? [rootDisk, ...attached.filter((v) => v.target !== "vda")] : attached;
    return buildDomainXml({
      serverId: instance.id,
      type: this.type,
      arch: p.architecture || p.hw_architecture || undefined,
      machine: p.hw_machine_type || undefined,
      vcpus: instance.vcpus,
      memoryMb: instance.memoryMb,
      disks: rootDisk ? [] : [{ path: this.files.disk(instance.id), format: "qcow2", target: "vda" }],
      ...(boot.kernel ? { kernelBoot: { kernel: boot.kernel, initrd: boot.initrd, cmdline: p.os_command_line || "console=ttyS0" } } : {}),
      consoleLog: this.files.consoleLog(instance.id),
      volumes,
      ...(instance.guest?.configDrive ? { configDrive: this.files.configDrive(instance.id) } : {}),
      interfaces: (instance.vifs ?? []).map((v) => ({ mac: v.mac, bridge: v.bridge, tap: v.tap, mtu: v.mtu })),
      metadata: {
        displayName: instance.name,
        projectId: instance.projectId,
        imageId: instance.image.id,
        vcpus: instance.vcpus,
        memoryMb: instance.memoryMb,
        // A volume-booted domain takes no local disk (the host's free disk counts the flavor disk of each domain).
        diskGb: root ? 0 : instance.diskGb,
        specHash: specHash(instance, root),
        ...(root ? { rootAttachmentId: root.attachmentId } : {}),
      },
    });
  }

  /**
   * Defines the domain from a disk already at `<server id>/disk`, or with
   * `root`'s volume as its root disk vda, with `volumes` attached (a
   * rebuild keeps them); starts it when `start`.
   */
  async define(instance: InstanceSpec, boot: Omit<BootImages, "base">, start: boolean, volumes: readonly DomainVolume[] = [], root?: RootVolume): Promise<void> {
    // Made again wherever the domain is defined (spawn, rebuild, the end of a cold migration): the guest reads what it had.
    await makeConfigDrive(this.files, instance);
    const xml = this.domainXml(instance, boot, volumes, root);
    await this.libvirt.call(`defining ${instance.id}`, async (conn) => {
      const dom = await conn.defineXML(xml);
      if (start) await dom.create();
    });
  }

  /** Removes the domain (stopping it) and, unless `keepFiles`, its instance directory. */
  async remove(id: string, keepFiles = false): Promise<void> {
    const k = await this.inventory.find(id);
    if (k) {
      if (ACTIVE_STATES.has(k.state)) await this.forceOff(k);
      await this.libvirt
        .call(`undefining ${id}`, () => k.dom.undefineFlags(C.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | C.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA))
        .catch(unless("LIBVIRT_NO_DOMAIN")); // undefined meanwhile
    }
    if (!keepFiles) await this.files.remove(id);
  }

  /** Starts a shut-off (or saved, or crashed) domain, or lets a paused one run. */
  async start(k: Known, what: string): Promise<void> {
    if (k.power === "RUNNING") return;
    if (k.state === C.VIR_DOMAIN_PAUSED) {
      await this.libvirt.call(`${what} ${k.serverId}`, () => k.dom.resume());
      return;
    }
    if (ACTIVE_STATES.has(k.state)) throw invalidState(`cannot ${what} ${k.serverId}: it is ${k.power}`);
    await this.inventory.placing({ memoryMb: k.meta?.memoryMb ?? 0, diskGb: 0 }, what, k.serverId, () =>
      this.libvirt.call(`${what} ${k.serverId}`, () => k.dom.create()),
    );
  }

  /** Rejects with INVALID_STATE while server `id` here is the old copy of a cold migration. */
  async refuseOldCopy(id: string, what: string): Promise<void> {
    const side = await this.files.sidecar(id);
    if (side.migratingTo !== undefined) {
      throw invalidState(`cannot ${what} ${id}: it is the old copy of a migration to ${side.migratingTo}, waiting for confirm or revert`);
    }
  }

  /**
   * Shuts a running guest down: ACPI shutdown, repeated every
   * `shutdownRetrySeconds` (a guest may miss the first event), forced off
   * after `timeoutSeconds`. Resolves whether the guest shut down by itself.
   */
  async shutdownGuest(k: Known, timeoutSeconds: number, signal?: AbortSignal): Promise<boolean> {
    const timeoutMs = (timeoutSeconds > 0 ? timeoutSeconds : (this.options.shutdownTimeoutSeconds ?? DEFAULT_SHUTDOWN_TIMEOUT_SECONDS)) * 1000;
    const retryMs = (this.options.shutdownRetrySeconds ?? 10) * 1000;
    const started = Date.now();
    let lastRequest = -Infinity;
    while (Date.now() - started < timeoutMs) {
      throwIfAborted(signal);
      const { state } = await this.libvirt.call(`state of ${k.serverId}`, () => k.dom.getState());
      if (!ACTIVE_STATES.has(state)) return true;
      if (Date.now() - lastRequest >= retryMs) {
        lastRequest = Date.now();
        await this.libvirt.call(`shutting down ${k.serverId}`, () => k.dom.shutdown()).catch(unless("LIBVIRT_OPERATION_INVALID")); // off meanwhile
        continue;
      }
      await sleep(Math.min(250, timeoutMs - (Date.now() - started)));
    }
    return false;
  }

  private async forceOff(k: Known): Promise<void> {
    await this.libvirt.call(`powering off ${k.serverId}`, () => k.dom.destroy()).catch(unless("LIBVIRT_OPERATION_INVALID")); // off meanwhile
  }

  private async dropSavedState(k: Known): Promise<void> {
    await this.libvirt.call(`discarding the saved state of ${k.serverId}`, () => k.dom.managedSaveRemove());
  }

  /**
   * Shuts a domain off the way `powerOff` does: a running guest cleanly
   * (forced after `timeoutSeconds`), a paused one forced, a suspended one by
   * dropping its saved memory (as Nova's power_off does).
   */
  async stop(k: Known, timeoutSeconds: number, signal?: AbortSignal): Promise<void> {
    if (k.managedSave) await this.dropSavedState(k);
    if (!ACTIVE_STATES.has(k.state)) return;
    if (k.state === C.VIR_DOMAIN_PAUSED || !(await this.shutdownGuest(k, timeoutSeconds, signal))) await this.forceOff(k);
  }

  /** Off at once from any state, any saved state dropped (hard reboot, rebuild). */
  async stopHard(k: Known): Promise<void> {
    if (ACTIVE_STATES.has(k.state)) await this.forceOff(k);
    if (k.managedSave) await this.dropSavedState(k);
  }
}
