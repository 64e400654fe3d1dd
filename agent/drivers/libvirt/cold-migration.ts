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
 */
import { cp, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CallOptions, FinishMigrationOptions, FinishRevertMigrationOptions, InstanceOptions, MigrateDiskOptions } from "../driver.js";
import { DriverError, throwIfAborted } from "../errors.js";
import * as C from "./binding/constants.js";
import { refuseVolumeBooted, specHash } from "./domains.js";
import { bestEffort, fromLibvirt, invalidState } from "./failures.js";
import { baseFormat } from "./instance-files.js";
import type { DriverParts } from "./parts.js";
import { growTo, rebaseUnsafe } from "./qemu-img.js";

/** The image store key of a migrating disk. */
function migrationKey(id: string): string {
  return `migration-${id}`;
}

/** The driver's cold migration calls (see the module comment). */
export class ColdMigration {
  constructor(private readonly p: DriverParts) {}

  private get hostname(): string {
    return this.p.options.hostname;
  }

  async migrateDiskAndPowerOff({ instanceId, targetHost, timeoutSeconds }: MigrateDiskOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const k = await this.p.inventory.get(instanceId);
    refuseVolumeBooted(k, "migrate");
    const side = await this.p.files.sidecar(instanceId);
    if (side.migratingTo !== undefined && side.migratingTo !== targetHost) {
      throw invalidState(`${instanceId} is already migrating to ${side.migratingTo}`);
    }
    await this.p.domains.stop(k, timeoutSeconds, call.signal);
    await this.p.files.setSidecar(instanceId, { migratingTo: targetHost });
    // Another host gets the overlay through the image store; its base comes from the store too.
    if (targetHost !== this.hostname) {
      await this.p.options.imageStore.put(migrationKey(instanceId), this.p.files.disk(instanceId), { signal: call.signal });
    }
  }

  async finishMigration({ instance, powerOn }: FinishMigrationOptions, call: CallOptions = {}): Promise<void> {
    throwIfAborted(call.signal);
    const { files, domains, inventory } = this.p;
    const id = instance.id;
    const existing = await inventory.find(id);
    // The instance's old copy is here, waiting for the move: a resize in place.
    const inPlace = existing !== undefined && (await files.sidecar(id)).migratingTo !== undefined;
    if (existing && !inPlace) {
      if (existing.meta?.specHash !== specHash(instance)) {
        throw new DriverError("INSTANCE_EXISTS", `instance ${id} already exists on ${this.hostname} with another spec`);
      }
      if (powerOn && existing.power !== "RUNNING") await domains.start(existing, "start");
      return;
    }
    const dir = files.dir(id);
    const boot = await this.p.images.forInstance(instance, call.signal);
    // In place, the old copy's disk stays reserved until confirm; its memory is free (it is off).
    await inventory.placing({ memoryMb: powerOn ? instance.memoryMb : 0, diskGb: instance.diskGb }, "finish the migration of", id, async () => {
      try {
        if (inPlace) {
          // Set the old copy aside (Nova's <uuid>_resize) and build the new one from a copy of its disk.
          await rm(files.stashDir(id), { recursive: true, force: true });
          await writeFile(join(dir, "domain.xml"), await existing.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE));
          await files.dropSidecar(id);
          await domains.remove(id, true);
          await rename(dir, files.stashDir(id));
          await mkdir(dir, { recursive: true });
          await cp(join(files.stashDir(id), "disk"), files.disk(id));
        } else {
          await files.remove(id);
          await mkdir(dir, { recursive: true });
          await this.p.options.imageStore.get(migrationKey(id), files.disk(id), { signal: call.signal });
          await rebaseUnsafe(files.disk(id), boot.base, baseFormat(instance), call.signal);
        }
        await growTo(files.disk(id), instance.diskGb, call.signal);
        await domains.define(instance, boot, powerOn);
      } catch (err) {
        await this.undoFinish(id, inPlace);
        throw fromLibvirt(err, `finishing the migration of ${id}`);
      }
    });
    if (!inPlace) await this.dropMigratingDisk(id);
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
