/**
 * The file volume backend: pools are directories, each volume a thin qcow2
 * file (see `file-pool.ts`), snapshots are qcow2 internal snapshots, and
 * exports are NBD over TLS from one qemu-storage-daemon per exported volume
 * (see `export-daemons.ts`), serving each of the volume's exports to its
 * compute host. While a volume is exported its file is open in that daemon, so snapshots and growth go through the daemon's QMP
 * monitor, and a reimage rewrites the file with qemu-img while the daemon
 * has let go of it; otherwise all go through qemu-img. Calls on one volume run one after
 * another; the capacity check and the commit of a new size run under the
 * pool's turn, so concurrent creates never overfill a pool.
 */
import { mkdir, rename, stat } from "node:fs/promises";
import { pino, type Logger } from "pino";
import { isMissing } from "../../network/linux/files.js";
import type { ExportInfo, PoolCapacity, VolumeBackend, VolumeImage, VolumeInfo, VolumeSource } from "../backend.js";
import { KeyedQueue } from "../../keyed-queue.js";
import { checkClient, checkId, checkImage, checkSize, checkSource, sameSource, volumeError } from "../checks.js";
import { ExportDaemons } from "./export-daemons.js";
import { FilePool } from "./file-pool.js";
import type { FileVolumeBackendOptions } from "./options.js";
import { QemuImg, type QcowInfo } from "./qemu-img.js";

interface Volume {
  id: string;
  pool: string;
  sizeBytes: number;
  snapshotIds: string[];
}

export class FileVolumeBackend implements VolumeBackend {
  readonly kind = "file";
  private readonly log: Logger;
  private readonly qemuImg: QemuImg;
  private readonly poolsByName = new Map<string, FilePool>();
  private readonly daemons: ExportDaemons;
  private readonly volumes = new Map<string, Volume>();
  /** Turns: `volume:<id>` for each volume's calls, `pool:<name>` for a capacity check and its commit. */
  private readonly queue = new KeyedQueue();
  private ready: Promise<void> | undefined;

  constructor(options: FileVolumeBackendOptions) {
    this.log = (options.logger ?? pino({ enabled: false })).child({ backend: "volume-file" });
    const timeoutMs = options.commandTimeoutMs ?? 30_000;
    this.qemuImg = new QemuImg({ binary: options.qemuImg ?? "qemu-img", timeoutMs, copyTimeoutMs: options.copyTimeoutMs ?? 3_600_000 });
    for (const p of options.pools) this.poolsByName.set(p.name, new FilePool(p));
    this.daemons = new ExportDaemons({
      dir: options.stateDir,
      ...options.exports,
      binary: options.qemuStorageDaemon ?? "qemu-storage-daemon",
      timeoutMs,
      log: this.log,
    });
  }

  /** Reads the pools and adopts the export daemons, once (again at the next call if that failed). */
  private load(): Promise<void> {
    this.ready ??= (async () => {
      this.volumes.clear();
      for (const pool of this.poolsByName.values()) {
        await mkdir(pool.config.path, { recursive: true, mode: 0o700 });
        for (const v of await pool.scan(this.qemuImg, this.log)) {
          const other = this.volumes.get(v.id);
          if (other) {
            this.log.error({ volumeId: v.id, pools: [other.pool, v.pool] }, "a volume id is in two pools; the second is ignored");
            continue;
          }
          this.volumes.set(v.id, { ...v, snapshotIds: [...v.snapshotIds] });
        }
      }
      await this.daemons.load();
    })();
    const ready = this.ready;
    ready.then(undefined, (err: unknown) => {
      this.log.error({ err }, "reading the pools or adopting the export daemons failed; the next call tries again");
      if (this.ready === ready) this.ready = undefined;
    });
    return ready;
  }

  /** Runs `fn` in the turn of volume `id`, after loading and forgetting export daemons that died. */
  private async onVolume<T>(id: string, fn: () => Promise<T>): Promise<T> {
    await this.load();
    await this.daemons.prune();
    return this.queue.run(`volume:${id}`, fn);
  }

  private pool(name: string): FilePool {
    const pool = this.poolsByName.get(name);
    if (!pool) throw volumeError("NOT_FOUND", `no pool ${name} on this host`);
    return pool;
  }

  private volume(id: string): Volume {
    const v = this.volumes.get(id);
    if (!v) throw volumeError("NOT_FOUND", `no volume ${id} on this host`);
    return v;
  }

  private provisioned(pool: string): number {
    return [...this.volumes.values()].filter((v) => v.pool === pool).reduce((sum, v) => sum + v.sizeBytes, 0);
  }

  /** In the pool's turn: throws "POOL_FULL" unless `extra` more bytes fit, else runs `commit`. */
  private charge<T>(pool: string, extra: number, commit: () => Promise<T>): Promise<T> {
    return this.queue.run(`pool:${pool}`, async () => {
      const total = await this.pool(pool).totalBytes();
      const used = this.provisioned(pool);
      if (used + extra > total) throw volumeError("POOL_FULL", `pool ${pool} has ${total - used} of ${total} bytes left, ${extra} asked for`);
      return commit();
    });
  }

  private static info(v: Volume): VolumeInfo {
    return { id: v.id, pool: v.pool, sizeBytes: v.sizeBytes, snapshotIds: [...v.snapshotIds] };
  }

  async pools(): Promise<PoolCapacity[]> {
    await this.load();
    return Promise.all([...this.poolsByName.values()].map((p) => p.capacity(this.provisioned(p.name))));
  }

  async create(id: string, poolName: string, sizeBytes: number, source: VolumeSource): Promise<VolumeInfo> {
    checkId("volume", id);
    checkSize(sizeBytes);
    checkSource(source);
    return this.onVolume(id, async () => {
      const existing = this.volumes.get(id);
      if (existing) {
        const meta = await this.pool(existing.pool).readMeta(id);
        if (existing.pool !== poolName || (meta && (meta.requestedBytes !== sizeBytes || !sameSource(meta.source, source)))) {
          throw volumeError("VOLUME_EXISTS", `volume ${id} exists in pool ${existing.pool} with other settings`);
        }
        return FileVolumeBackend.info(existing);
      }
      const pool = this.pool(poolName);
      const total = await pool.totalBytes();
      if (this.provisioned(poolName) + sizeBytes > total) throw volumeError("POOL_FULL", `pool ${poolName} cannot take ${sizeBytes} more bytes`);
      const temp = pool.tempPath(id);
      try {
        const size = await this.fill(id, temp, sizeBytes, source);
        return await this.charge(poolName, size, async () => {
          const info = await this.qemuImg.info(temp, "qcow2");
          if (info.virtualSizeBytes < size) await this.qemuImg.resize(temp, size);
          await pool.writeMeta({ id, requestedBytes: sizeBytes, source });
          await rename(temp, pool.volumePath(id));
          const v: Volume = { id, pool: poolName, sizeBytes: size, snapshotIds: [] };
          this.volumes.set(id, v);
          return FileVolumeBackend.info(v);
        });
      } finally {
        await pool.removeTemp(id);
      }
    });
  }

  /** Writes the new volume's content to `temp`; resolves its size: the size asked for, or the source's when larger. */
  private async fill(id: string, temp: string, sizeBytes: number, source: VolumeSource): Promise<number> {
    if (source.kind === "blank") {
      await this.qemuImg.create(temp, sizeBytes);
      return sizeBytes;
    }
    if (source.kind === "image") {
      await this.imageInfo(source);
      await this.qemuImg.convert({ source: source.path, format: source.format, dest: temp });
    } else {
      // A volume that does not exist yet is no source (and waiting for its own turn would never end).
      if (source.volumeId === id) throw volumeError("NOT_FOUND", `volume ${id} does not exist yet`);
      // In the source's turn, so its snapshot is not deleted under the copy (the source never waits for this volume's turn).
      await this.queue.run(`volume:${source.volumeId}`, async () => {
        const from = this.volume(source.volumeId);
        if (!from.snapshotIds.includes(source.snapshotId)) throw volumeError("NOT_FOUND", `volume ${source.volumeId} has no snapshot ${source.snapshotId}`);
        // The source may be open in an export daemon; a snapshot's clusters never change, so reading it shared is safe.
        const path = this.pool(from.pool).volumePath(from.id);
        await this.qemuImg.convert({ source: path, format: "qcow2", dest: temp, snapshot: source.snapshotId, forceShare: true });
      });
    }
    return Math.max(sizeBytes, (await this.qemuImg.info(temp, "qcow2")).virtualSizeBytes);
  }

  /** What qemu-img says of an image file: "NOT_FOUND" when it is not there, "INVALID_ARGUMENT" when it reads other files. */
  private async imageInfo(image: VolumeImage): Promise<QcowInfo> {
    try {
      await stat(image.path);
    } catch (err) {
      if (isMissing(err)) throw volumeError("NOT_FOUND", `image ${image.path} is not there`);
      throw err;
    }
    // An image that names a backing or data file would copy that file's bytes (another
    // volume, a host device) into the volume: refused, as Nova refuses such images.
    const info = await this.qemuImg.info(image.path, image.format);
    if (info.externalFiles.length) throw volumeError("INVALID_ARGUMENT", `image ${image.path} reads other files (${info.externalFiles.join(", ")}); only self-contained images are written to volumes`);
    return info;
  }

  async delete(id: string): Promise<void> {
    checkId("volume", id);
    await this.onVolume(id, async () => {
      const v = this.volumes.get(id);
      if (!v) return;
      for (const e of this.daemons.list().filter((x) => x.volumeId === id)) await this.daemons.remove(e.attachmentId);
      await this.queue.run(`pool:${v.pool}`, async () => {
        await this.pool(v.pool).remove(id);
        this.volumes.delete(id);
      });
    });
  }

  async extend(id: string, sizeBytes: number): Promise<void> {
    checkId("volume", id);
    checkSize(sizeBytes);
    await this.onVolume(id, async () => {
      const v = this.volume(id);
      if (sizeBytes < v.sizeBytes) throw volumeError("SHRINK_REFUSED", `volume ${id} is ${v.sizeBytes} bytes; it is not shrunk to ${sizeBytes}`);
      if (sizeBytes === v.sizeBytes) return;
      await this.charge(v.pool, sizeBytes - v.sizeBytes, async () => {
        const live = await this.daemons.onVolume(id, (qmp, node) => qmp.execute("block_resize", { "node-name": node, size: sizeBytes }), true);
        if (!live) await this.qemuImg.resize(this.pool(v.pool).volumePath(id), sizeBytes);
        v.sizeBytes = sizeBytes;
      });
    });
  }

  async reimage(id: string, image: VolumeImage): Promise<void> {
    checkId("volume", id);
    checkImage(image);
    await this.onVolume(id, async () => {
      const v = this.volume(id);
      const imageBytes = (await this.imageInfo(image)).virtualSizeBytes;
      if (imageBytes > v.sizeBytes) throw volumeError("IMAGE_TOO_LARGE", `image ${image.path} is ${imageBytes} bytes; volume ${id} is ${v.sizeBytes}`);
      const path = this.pool(v.pool).volumePath(id);
      // Into the volume's own file, which keeps its snapshots: the image, then zeros to its end. Done
      // again whole by a retry, whatever a failure or a crash left of it.
      const rewrite = async () => {
        const volumeBytes = (await this.qemuImg.info(path, "qcow2")).virtualSizeBytes;
        await this.qemuImg.overwrite({ source: image.path, format: image.format, sourceBytes: imageBytes, dest: path, destBytes: volumeBytes });
      };
      // An exported volume's file is open (and locked) in its export daemon, which lets go of it meanwhile.
      if (!(await this.daemons.whileReleased(id, rewrite))) await rewrite();
    });
  }

  async createSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("snapshot", snapshotId);
    await this.onVolume(volumeId, async () => {
      const v = this.volume(volumeId);
      if (v.snapshotIds.includes(snapshotId)) return;
      const live = await this.daemons.onVolume(volumeId, (qmp, node) => qmp.execute("blockdev-snapshot-internal-sync", { device: node, name: snapshotId }));
      if (!live) await this.qemuImg.snapshot(this.pool(v.pool).volumePath(volumeId), "-c", snapshotId);
      v.snapshotIds.push(snapshotId);
    });
  }

  async deleteSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("snapshot", snapshotId);
    await this.onVolume(volumeId, async () => {
      const v = this.volumes.get(volumeId);
      if (!v?.snapshotIds.includes(snapshotId)) return;
      const live = await this.daemons.onVolume(volumeId, (qmp, node) => qmp.execute("blockdev-snapshot-delete-internal-sync", { device: node, name: snapshotId }));
      if (!live) await this.qemuImg.snapshot(this.pool(v.pool).volumePath(volumeId), "-d", snapshotId);
      v.snapshotIds = v.snapshotIds.filter((s) => s !== snapshotId);
    });
  }

  async export(volumeId: string, attachmentId: string, client: string): Promise<ExportInfo> {
    checkId("volume", volumeId);
    checkId("attachment", attachmentId);
    checkClient(client);
    return this.onVolume(volumeId, async () => {
      const v = this.volume(volumeId);
      const same = this.daemons.find(attachmentId);
      if (same && (same.volumeId !== volumeId || same.client !== client)) {
        throw volumeError("VOLUME_IN_USE", `export ${attachmentId} is made for volume ${same.volumeId} and ${same.client}`);
      }
      return this.daemons.add({ attachmentId, volumeId, path: this.pool(v.pool).volumePath(volumeId), client });
    });
  }

  async unexport(volumeId: string, attachmentId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("attachment", attachmentId);
    await this.onVolume(volumeId, async () => {
      if (this.daemons.find(attachmentId)?.volumeId === volumeId) await this.daemons.remove(attachmentId);
    });
  }

  async list(): Promise<{ volumes: VolumeInfo[]; exports: ExportInfo[] }> {
    await this.load();
    await this.daemons.prune();
    return {
      volumes: [...this.volumes.values()].sort((a, b) => a.id.localeCompare(b.id)).map(FileVolumeBackend.info),
      exports: this.daemons.list(),
    };
  }

  async close(opts: { stopExports?: boolean } = {}): Promise<void> {
    if (!opts.stopExports) return;
    await this.load();
    await this.daemons.stopAll();
  }
}
