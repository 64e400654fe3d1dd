/**
 * The libvirt driver's files under `instancesPath` (Nova's
 * `instances_path`), apart from the base image cache in `_base/`:
 *
 *   <server id>/disk          the root disk: a qcow2 overlay on its base
 *   <server id>/console.log   the serial console, appended by libvirt
 *   <server id>/novamesh.json what libvirt does not keep (the sidecar): a
 *                             pending cold migration's target host, or an
 *                             incoming live migration (its source and flavor)
 *   <server id>_resize/       the old copy a resize in place set aside
 *                             (disk, console log, domain.xml)
 */
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { readFileTail } from "../console-tail.js";
import type { InstanceSpec } from "../types.js";
import { isMissing } from "./failures.js";
import { createOverlay, type DiskFormat } from "./qemu-img.js";

/** An incoming live migration, as preLiveMigration recorded it. */
export interface IncomingMigration {
  readonly from: string;
  readonly memoryMb: number;
  readonly diskGb: number;
  /** Image, kernel and ramdisk ids in the cache that the instance uses. */
  readonly imageIds: string[];
}

/** What novamesh.json in an instance directory holds. */
export interface InstanceSidecar {
  /** A cold migration to this host is pending (the copy here is the old one). */
  readonly migratingTo?: string;
  /** A live migration to this host is prepared or under way, not finished. */
  readonly incoming?: IncomingMigration;
  /** Paused by a volume hold (volume-sizes.ts) for this attachment until its extend. */
  readonly volumeHold?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const STASH = "_resize";
const SIDECAR = "novamesh.json";

/** Format of an instance's base image, as its overlay names it. */
export function baseFormat(instance: InstanceSpec): DiskFormat {
  return instance.image.diskFormat === "raw" ? "raw" : "qcow2";
}

/** The instance files under one instances path (see the module comment). */
export class InstanceFiles {
  constructor(readonly root: string) {}

  /** `<server id>/`. */
  dir(id: string): string {
    return join(this.root, id);
  }

  /** `<server id>/disk`. */
  disk(id: string): string {
    return join(this.dir(id), "disk");
  }

  /** `<server id>_resize/`. */
  stashDir(id: string): string {
    return join(this.root, `${id}${STASH}`);
  }

  /** What the instance directory records; nothing when there is no sidecar (or no directory). */
  async sidecar(id: string): Promise<InstanceSidecar> {
    let text: string;
    try {
      text = await readFile(join(this.dir(id), SIDECAR), "utf8");
    } catch (err) {
      if (isMissing(err)) return {};
      throw err;
    }
    return JSON.parse(text) as InstanceSidecar;
  }

  /** Replaces the sidecar (atomically). */
  async setSidecar(id: string, value: InstanceSidecar): Promise<void> {
    const path = join(this.dir(id), SIDECAR);
    await writeFile(`${path}.tmp`, JSON.stringify(value));
    await rename(`${path}.tmp`, path);
  }

  async dropSidecar(id: string): Promise<void> {
    await rm(join(this.dir(id), SIDECAR), { force: true });
  }

  async hasStash(id: string): Promise<boolean> {
    try {
      await access(this.stashDir(id));
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  /** The domain XML a set-aside copy saved; "" when it has none (yet). */
  async stashXml(id: string): Promise<string> {
    try {
      return await readFile(join(this.stashDir(id), "domain.xml"), "utf8");
    } catch (err) {
      if (isMissing(err)) return "";
      throw err;
    }
  }

  /** Ids with an instance directory, and ids with a set-aside copy; none while the instances path does not exist. */
  async list(): Promise<{ instances: string[]; stashes: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch (err) {
      if (isMissing(err)) return { instances: [], stashes: [] };
      throw err;
    }
    return {
      instances: names.filter((n) => UUID.test(n)),
      stashes: names.filter((n) => n.endsWith(STASH)).map((n) => n.slice(0, -STASH.length)),
    };
  }

  /** Removes the instance directory, if any. */
  async remove(id: string): Promise<void> {
    await rm(this.dir(id), { recursive: true, force: true });
  }

  /** A new, empty instance directory (what an earlier attempt left is removed). */
  async fresh(id: string): Promise<void> {
    await this.remove(id);
    await mkdir(this.dir(id), { recursive: true });
  }

  /** A new, empty instance directory whose `disk` is an overlay of the flavor's size on `base`. */
  async freshOverlay(instance: InstanceSpec, base: string, signal?: AbortSignal): Promise<void> {
    await this.fresh(instance.id);
    await this.overlay(instance, base, this.disk(instance.id), signal);
  }

  /** An overlay of the flavor's size on `base` at `path`. */
  async overlay(instance: InstanceSpec, base: string, path: string, signal?: AbortSignal): Promise<void> {
    await createOverlay({ base, baseFormat: baseFormat(instance), path, sizeGb: instance.diskGb }, signal);
  }

  /** The tail of the serial console log libvirt (virtlogd) writes to `<server id>/console.log`. */
  consoleTail(id: string, maxBytes: number): Promise<string> {
    return readFileTail(this.consoleLog(id), maxBytes);
  }

  /** `<server id>/disk.config`: the config drive. */
  configDrive(id: string): string {
    return join(this.dir(id), "disk.config");
  }

  /** `<server id>/console.log`. */
  consoleLog(id: string): string {
    return join(this.dir(id), "console.log");
  }
}
