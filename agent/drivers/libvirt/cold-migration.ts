/**
 * Resize and cold migration on libvirt (Nova's migrate_disk_and_power_off,
 * finish_migration, confirm_migration, finish_revert_migration).
 *
 * The source shuts the instance off and hands its overlay to the target
 * through the image store (`migration-<server id>`), keeping its own copy,
 * marked in the sidecar so it refuses to start. The target rebases the
 * overlay onto its own copy of the base image and grows it to the new
 * flavor. A resize in place sets the old copy aside in `<server id>_resize/`
 * instead. Confirm drops the old copy, revert brings it back.
 *
 * Volumes are never copied: the target defines the new copy with each
 * attached volume at the export made for it, and a server booted from a
 * volume hands no disk over (`bootsFromVolume`): the target boots it from
 * its root volume's export. The old copy keeps its volume disks as they
 * are (their exports live until confirm), so a revert needs nothing new.
 */
import { cp, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CallOptions, FinishMigrationOptions, FinishRevertMigrationOptions, InstanceOptions, MigrateDiskOptions, RootVolume } from "../driver.js";
import { DriverError, throwIfAborted } from "../errors.js";
import type { AttachedVolume } from "../types.js";
import * as C from "./binding/constants.js";
import { refuseVolumeBooted, specHash } from "./domains.js";
import type { DomainVolume } from "./domain-xml.js";
import { bestEffort, fromLibvirt, invalidState } from "./failures.js";
import type { BootImages } from "./image-cache.js";
import { baseFormat } from "./instance-files.js";
import type { Known } from "./inventory.js";
import type { DriverParts } from "./parts.js";
import { growTo, rebaseUnsafe } from "./qemu-img.js";

/** The image store key of a migrating disk. */
function migrationKey(id: string): string {
  return `migration-${id}`;
}

/** The driver's cold migration calls (see the module comment). */
export class ColdMigration {
  /**
   * `initialVolumes` checks the volumes a domain is defined with and gives
   * its disks (the driver's, which knows whether it can attach volumes).
   */
  constructor(
    private readonly p: DriverParts,
    private readonly initialVolumes: (instanceId: string, what: string, rootVolume: RootVolume | undefined, volumes: readonly AttachedVolume[]) => DomainVolume[],
  ) {}

  private get hostname(): string {
    return this.p.options.hostname;
  }

  /**
   * Stops the instance and marks it the old copy of a migration to
   * `targetHost`; its overlay goes to the image store for another host. A
   * volume-booted instance has no local root disk: it moves with
   * `bootsFromVolume` and only then (INVALID_STATE either way otherwise),
   * and nothing is stored (the copy kept here keeps its volume disks).
   */
  async migrateDiskAndPowerOff({ instanceId, targetHost, timeoutSeconds, bootsFromVolume }: MigrateDiskOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.p.inventory.get(instanceId);
    if (!bootsFromVolume) refuseVolumeBooted(k, "migrate");
    else if (k.meta?.rootAttachmentId === undefined) throw invalidState(`cannot migrate ${instanceId} as booted from a volume: its root disk is local`);
    const side = await this.p.files.sidecar(instanceId);
    if (side.migratingTo !== undefined && side.migratingTo !== targetHost) {
      throw invalidState(`${instanceId} is already migrating to ${side.migratingTo}`);
    }
    await this.p.domains.stop(k, timeoutSeconds, call.signal);
    await this.p.files.setSidecar(instanceId, { migratingTo: targetHost });
    // Another host gets the overlay through the image store; its base comes from the store too.
    if (targetHost !== this.hostname && !bootsFromVolume) {
      await this.p.options.imageStore.put(migrationKey(instanceId), this.p.files.disk(instanceId), { signal: call.signal });
    }
  }

  /**
   * The new copy: from the overlay handed over (rebased on this host's base
   * image, grown to the new flavor), or with `rootVolume` booted from its
   * volume (only the kernel and ramdisk fetched, no local disk), defined
   * with `volumes` attached. In place, the old copy is set aside first.
   */
  async finishMigration({ instance, powerOn, rootVolume, volumes = [] }: FinishMigrationOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { files, domains, inventory } = this.p;
    const id = instance.id;
    const attached = this.initialVolumes(id, "finish the migration of an instance with volumes", rootVolume, volumes);
    const existing = await inventory.find(id);
    // The instance's old copy is here, waiting for the move: a resize in place.
    const inPlace = existing !== undefined && (await files.sidecar(id)).migratingTo !== undefined;
    if (existing && !inPlace) {
      if (existing.meta?.specHash !== specHash(instance, rootVolume)) {
        throw new DriverError("INSTANCE_EXISTS", `instance ${id} already exists on ${this.hostname} with another spec`);
      }
      if (powerOn && existing.power !== "RUNNING") await domains.start(existing, "start");
      return;
    }
    if (inPlace && !rootVolume && existing.meta?.rootAttachmentId !== undefined) {
      throw invalidState(`cannot finish the migration of ${id} in place without its root volume: it boots from attachment ${existing.meta.rootAttachmentId}`);
    }
    const boot: Partial<BootImages> = rootVolume ? await this.p.images.kernelOf(instance, call.signal) : await this.p.images.forInstance(instance, call.signal);
    // In place, the old copy's disk stays reserved until confirm; its memory is free (it is off).
    await inventory.placing({ memoryMb: powerOn ? instance.memoryMb : 0, diskGb: rootVolume ? 0 : instance.diskGb }, "finish the migration of", id, async () => {
      try {
        if (inPlace) await this.setAside(existing);
        else await files.fresh(id);
        if (boot.base !== undefined) {
          if (inPlace) await cp(join(files.stashDir(id), "disk"), files.disk(id));
          else {
            await this.p.options.imageStore.get(migrationKey(id), files.disk(id), { signal: call.signal });
            await rebaseUnsafe(files.disk(id), boot.base, baseFormat(instance), call.signal);
          }
          await growTo(files.disk(id), instance.diskGb, call.signal);
        }
        await domains.define(instance, boot, powerOn, attached, rootVolume);
      } catch (err) {
        await this.undoFinish(id, inPlace);
        throw fromLibvirt(err, `finishing the migration of ${id}`);
      }
    });
    if (!inPlace && !rootVolume) await this.dropMigratingDisk(id);
  }

  /** Sets the old copy of a resize in place aside (Nova's `<uuid>_resize`), leaving an empty instance directory for the new one. */
  private async setAside(existing: Known): Promise<void> {
    const { files, domains } = this.p;
    const id = existing.serverId;
    await rm(files.stashDir(id), { recursive: true, force: true });
    await writeFile(join(files.dir(id), "domain.xml"), await existing.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE));
    await files.dropSidecar(id);
    await domains.remove(id, true);
    await rename(files.dir(id), files.stashDir(id));
    await mkdir(files.dir(id), { recursive: true });
  }

  /** After a failed finishMigration: in place, the old copy goes back as it was; else what was made here goes. */
  private async undoFinish(id: string, inPlace: boolean): Promise<void> {
    const { log, files, inventory } = this.p;
    if (!inPlace) {
      await bestEffort(log, "removing a half-finished migration", () => this.p.domains.remove(id), { instance: id });
      return;
    }
    if (!(await files.hasStash(id))) return;
    // A lookup that fails counts as no new domain: the old copy is put back.
    const made = await bestEffort(log, "looking up the new copy of a failed resize", () => inventory.find(id), { instance: id });
    if (!made) await this.restoreStash(id);
  }

  /** Deletes the migrating disk from the image store (best effort: an orphan there harms no one here). */
  private async dropMigratingDisk(id: string): Promise<void> {
    await bestEffort(this.p.log, "deleting the migrating disk from the image store", () => this.p.options.imageStore.delete(migrationKey(id)), {
      instance: id,
    });
  }

  /** Puts a set-aside copy back as the domain (replacing whatever directory is there). */
  private async restoreStash(id: string): Promise<void> {
    const { files } = this.p;
    const xml = await readFile(join(files.stashDir(id), "domain.xml"), "utf8");
    const dir = files.dir(id);
    await files.remove(id);
    await rename(files.stashDir(id), dir);
    await rm(join(dir, "domain.xml"), { force: true });
    await this.p.libvirt.call(`restoring ${id}`, (conn) => conn.defineXML(xml));
  }

  async confirmMigration({ instanceId }: InstanceOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { files } = this.p;
    if (await files.hasStash(instanceId)) {
      await rm(files.stashDir(instanceId), { recursive: true, force: true });
    } else if ((await files.sidecar(instanceId)).migratingTo !== undefined) {
      await this.p.domains.remove(instanceId);
    }
    await this.dropMigratingDisk(instanceId);
    await this.p.images.pruneUnused();
  }

  async finishRevertMigration({ instanceId, powerOn }: FinishRevertMigrationOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { files, domains } = this.p;
    if (await files.hasStash(instanceId)) {
      await domains.remove(instanceId, true); // the new copy of a resize in place, if destroy has not taken it
      await this.restoreStash(instanceId);
    } else if ((await files.sidecar(instanceId)).migratingTo !== undefined) {
      await files.dropSidecar(instanceId);
    }
    const k = await this.p.inventory.get(instanceId);
    if (powerOn && k.power !== "RUNNING") await domains.start(k, "start");
  }
}
