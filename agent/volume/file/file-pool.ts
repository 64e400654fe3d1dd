/**
 * A file pool: a directory of qcow2 volume files with a capacity. Each
 * volume is `<dir>/<id>.qcow2` with `<dir>/<id>.json` beside it (what it
 * was created from and at what requested size, for an idempotent create).
 * A volume is made under a temporary name (`.<id>.qcow2.tmp`) and renamed
 * into place once complete, its `.json` written first: a volume exists
 * exactly when its `.qcow2` does. `scan` reads every volume's size and
 * snapshots from its file (qemu-img info), so what a restarted agent lists
 * is what is on disk; it removes what a crash left half made.
 */
import { readdir, rm, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { isMissing, readIfExists, writeAtomic } from "../../network/linux/files.js";
import type { PoolCapacity, VolumeInfo, VolumeSource } from "../backend.js";
import type { QemuImg } from "./qemu-img.js";

/** A pool as configured. */
export interface FilePoolConfig {
  /** The pool's name, unique on the host. */
  readonly name: string;
  /** Its directory (made if missing). */
  readonly path: string;
  /** The most bytes its volumes' virtual sizes may add up to (default: the size of the file system it is on). */
  readonly limitBytes?: number;
}

/** What `<id>.json` holds. */
export interface VolumeMeta {
  readonly id: string;
  readonly requestedBytes: number;
  readonly source: VolumeSource;
}

export class FilePool {
  constructor(readonly config: FilePoolConfig) {}

  get name(): string {
    return this.config.name;
  }

  volumePath(id: string): string {
    return join(this.config.path, `${id}.qcow2`);
  }

  tempPath(id: string): string {
    return join(this.config.path, `.${id}.qcow2.tmp`);
  }

  private metaPath(id: string): string {
    return join(this.config.path, `${id}.json`);
  }

  async readMeta(id: string): Promise<VolumeMeta | undefined> {
    const text = await readIfExists(this.metaPath(id));
    return text === undefined ? undefined : (JSON.parse(text) as VolumeMeta);
  }

  async writeMeta(meta: VolumeMeta): Promise<void> {
    await writeAtomic(this.metaPath(meta.id), JSON.stringify(meta));
  }

  /** Removes what a create left under the temporary name (nothing once it renamed it into place). */
  async removeTemp(id: string): Promise<void> {
    await rm(this.tempPath(id), { force: true });
  }

  /** Removes a volume's file, then its metadata. */
  async remove(id: string): Promise<void> {
    await rm(this.volumePath(id), { force: true });
    await rm(this.metaPath(id), { force: true });
  }

  /** The volumes on disk; removes temporary files and metadata without a volume left by a crash. */
  async scan(qemuImg: QemuImg, log: Logger): Promise<VolumeInfo[]> {
    const names = await readdir(this.config.path);
    const volumes: VolumeInfo[] = [];
    for (const name of names) {
      if (name.endsWith(".qcow2.tmp") || name.includes(".tmp-")) {
        log.warn({ pool: this.name, file: name }, "removing a volume file a crash left half made");
        await rm(join(this.config.path, name), { force: true });
        continue;
      }
      if (name.endsWith(".json") && !names.includes(name.replace(/\.json$/, ".qcow2"))) {
        log.warn({ pool: this.name, file: name }, "removing the metadata of a volume that is not there");
        await rm(join(this.config.path, name), { force: true });
        continue;
      }
      if (!name.endsWith(".qcow2") || name.startsWith(".")) continue;
      const id = name.slice(0, -".qcow2".length);
      try {
        const info = await qemuImg.info(join(this.config.path, name), "qcow2");
        volumes.push({ id, pool: this.name, sizeBytes: info.virtualSizeBytes, snapshotIds: info.snapshots });
      } catch (err) {
        // One foreign or damaged file must not take the whole volume host away: it is left alone and said.
        log.error({ err, pool: this.name, file: name }, "a file in the pool is not a volume qemu-img can read; it is left out");
      }
    }
    return volumes;
  }

  /** The most bytes the pool's virtual sizes may add up to: its limit, else its file system's size. */
  async totalBytes(): Promise<number> {
    if (this.config.limitBytes !== undefined) return this.config.limitBytes;
    const fs = await statfs(this.config.path);
    return fs.blocks * fs.bsize;
  }

  /** The pool's capacity, given the virtual sizes of its volumes (free: the limit less what the files take, at most the file system's free space). */
  async capacity(provisionedBytes: number): Promise<PoolCapacity> {
    let usedBytes = 0;
    for (const name of await readdir(this.config.path)) {
      if (!name.endsWith(".qcow2") && !name.endsWith(".qcow2.tmp")) continue;
      try {
        usedBytes += (await stat(join(this.config.path, name))).blocks * 512;
      } catch (err) {
        if (!isMissing(err)) throw err; // deleted since the listing
      }
    }
    const fs = await statfs(this.config.path);
    const fsFree = fs.bavail * fs.bsize;
    const totalBytes = await this.totalBytes();
    const freeBytes = Math.max(0, Math.min(fsFree, totalBytes - usedBytes));
    return { name: this.name, totalBytes, freeBytes, provisionedBytes };
  }
}
