/**
 * The fake volume backend: pools, volumes, snapshots and exports in memory
 * (persisted to `<stateDir>/volumes.json` when given one, so a restarted
 * fake agent finds them), for tests of the agent and controller with many
 * hosts and for fault tests (see `faults.ts`). Capacity is modelled
 * exactly: a pool's total is configured, a volume is charged its virtual
 * size, free is total minus that (the fake is thick: what is provisioned is
 * used). Content is modelled as one byte per 64 KiB block, "the block's
 * first byte" (`write`/`read`; blocks never written read 0), which is
 * enough to tell whose data a volume holds and where: an image's content is
 * its first byte (a raw file's; 0 for a qcow2) in the first block, zeros
 * after it, and a `reimage` records the image it was given (`imageOf`).
 * Exports are records: nothing listens on their ports.
 */
import { mkdir, open, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ExportInfo, PoolCapacity, VolumeBackend, VolumeImage, VolumeInfo, VolumeSource } from "../backend.js";
import { KeyedQueue } from "../../keyed-queue.js";
import { checkClient, checkId, checkImage, checkSize, checkSource, sameSource, volumeError } from "../checks.js";
import { readIfExists, writeAtomic } from "../../network/linux/files.js";
import { VolumeFaultInjector, type VolumeFaults } from "./faults.js";

/** Options of the fake backend. */
export interface FakeVolumeBackendOptions {
  /** The pools and their sizes. */
  readonly pools: readonly { readonly name: string; readonly totalBytes: number }[];
  /** Directory to keep the state in across restarts (none: memory only). */
  readonly stateDir?: string;
  /** The address exports name (default "127.0.0.1"). */
  readonly address?: string;
  /** The first port handed to a client host; each client gets the next (default 10809). */
  readonly basePort?: number;
  /** Injected faults. */
  readonly faults?: VolumeFaults;
  /** Milliseconds every call that changes something waits (default 0). */
  readonly delayMs?: number;
}

/** The size of the blocks content is modelled in. */
export const FAKE_BLOCK_BYTES = 64 * 1024;

/** A volume's content: the byte of each block not all zeros, by the block's offset. */
type FakeContent = Record<string, number>;

/** The content `byte` in the first block, zeros after it. */
const headContent = (byte: number): FakeContent => (byte === 0 ? {} : { "0": byte });

interface FakeSnapshot {
  readonly id: string;
  readonly sizeBytes: number;
  readonly content: FakeContent;
}

interface FakeVolume {
  readonly id: string;
  readonly pool: string;
  readonly requestedBytes: number;
  readonly source: VolumeSource;
  sizeBytes: number;
  content: FakeContent;
  snapshots: FakeSnapshot[];
  /** The image of the last `reimage`. */
  image?: VolumeImage;
}

interface FakeState {
  volumes: FakeVolume[];
  exports: ExportInfo[];
  ports: [string, number][];
}

const STATE_FILE = "volumes.json";

/** What the fake reads of an image file: a raw file's size and first byte, a qcow2's virtual size (and content 0). */
async function readImage(path: string, format: "raw" | "qcow2"): Promise<{ sizeBytes: number; content: FakeContent }> {
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw volumeError("NOT_FOUND", `image ${path} is not there`);
    throw err;
  }
  try {
    const head = Buffer.alloc(32);
    await handle.read(head, 0, 32, 0);
    if (format === "qcow2") return { sizeBytes: Number(head.readBigUInt64BE(24)), content: {} };
    return { sizeBytes: (await stat(path)).size, content: headContent(head[0] ?? 0) };
  } finally {
    await handle.close();
  }
}

export class FakeVolumeBackend implements VolumeBackend {
  readonly kind = "fake";
  private readonly volumes = new Map<string, FakeVolume>();
  private readonly exports = new Map<string, ExportInfo>();
  private readonly ports = new Map<string, number>();
  private readonly faults: VolumeFaultInjector;
  /** Every change runs in this one queue: the fake's state is small and its calls are quick. */
  private readonly queue = new KeyedQueue();
  private loaded: Promise<void> | undefined;

  constructor(private readonly options: FakeVolumeBackendOptions) {
    this.faults = new VolumeFaultInjector(options.faults ?? {}, options.delayMs ?? 0);
  }

  private async load(): Promise<void> {
    this.loaded ??= (async () => {
      if (!this.options.stateDir) return;
      const text = await readIfExists(join(this.options.stateDir, STATE_FILE));
      if (text === undefined) return;
      const state = JSON.parse(text) as FakeState;
      // State of the earlier model held one byte per volume and snapshot: the first block's.
      const content = (c: FakeContent | number): FakeContent => (typeof c === "number" ? headContent(c) : c);
      for (const v of state.volumes) {
        this.volumes.set(v.id, { ...v, content: content(v.content), snapshots: v.snapshots.map((x) => ({ ...x, content: content(x.content) })) });
      }
      for (const e of state.exports) this.exports.set(e.attachmentId, e);
      for (const [client, port] of state.ports) this.ports.set(client, port);
    })();
    await this.loaded;
  }

  private async save(): Promise<void> {
    if (!this.options.stateDir) return;
    const state: FakeState = { volumes: [...this.volumes.values()], exports: [...this.exports.values()], ports: [...this.ports] };
    await mkdir(this.options.stateDir, { recursive: true });
    await writeAtomic(join(this.options.stateDir, STATE_FILE), JSON.stringify(state));
  }

  /** Runs a change under the queue, on loaded state, and saves after it. */
  private change<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.queue.run("state", async () => {
      await this.load();
      const out = await fn();
      await this.save();
      return out;
    });
  }

  private poolOf(name: string): { name: string; totalBytes: number } {
    const pool = this.options.pools.find((p) => p.name === name);
    if (!pool) throw volumeError("NOT_FOUND", `no pool ${name} on this host`);
    return pool;
  }

  private provisioned(pool: string): number {
    return [...this.volumes.values()].filter((v) => v.pool === pool).reduce((sum, v) => sum + v.sizeBytes, 0);
  }

  private charge(pool: string, bytes: number): void {
    const { totalBytes } = this.poolOf(pool);
    const used = this.provisioned(pool);
    if (used + bytes > totalBytes) {
      throw volumeError("POOL_FULL", `pool ${pool} has ${totalBytes - used} of ${totalBytes} bytes left, ${bytes} asked for`);
    }
  }

  private volume(id: string): FakeVolume {
    const v = this.volumes.get(id);
    if (!v) throw volumeError("NOT_FOUND", `no volume ${id} on this host`);
    return v;
  }

  private static info(v: FakeVolume): VolumeInfo {
    return { id: v.id, pool: v.pool, sizeBytes: v.sizeBytes, snapshotIds: v.snapshots.map((s) => s.id) };
  }

  async pools(): Promise<PoolCapacity[]> {
    await this.faults.apply("pools", false);
    await this.load();
    return this.options.pools.map((p) => {
      const provisionedBytes = this.provisioned(p.name);
      return { name: p.name, totalBytes: p.totalBytes, freeBytes: Math.max(0, p.totalBytes - provisionedBytes), provisionedBytes };
    });
  }

  async create(id: string, pool: string, sizeBytes: number, source: VolumeSource): Promise<VolumeInfo> {
    checkId("volume", id);
    checkSize(sizeBytes);
    checkSource(source);
    await this.faults.apply("create", true, id);
    return this.change(async () => {
      const existing = this.volumes.get(id);
      if (existing) {
        if (existing.pool !== pool || existing.requestedBytes !== sizeBytes || !sameSource(existing.source, source)) {
          throw volumeError("VOLUME_EXISTS", `volume ${id} exists in pool ${existing.pool} with other settings`);
        }
        return FakeVolumeBackend.info(existing);
      }
      this.poolOf(pool);
      let from: { sizeBytes: number; content: FakeContent } = { sizeBytes: 0, content: {} };
      if (source.kind === "image") from = await readImage(source.path, source.format);
      if (source.kind === "snapshot") {
        const snap = this.volume(source.volumeId).snapshots.find((s) => s.id === source.snapshotId);
        if (!snap) throw volumeError("NOT_FOUND", `volume ${source.volumeId} has no snapshot ${source.snapshotId}`);
        from = snap;
      }
      const size = Math.max(sizeBytes, from.sizeBytes);
      this.charge(pool, size);
      const v: FakeVolume = { id, pool, requestedBytes: sizeBytes, source, sizeBytes: size, content: { ...from.content }, snapshots: [] };
      this.volumes.set(id, v);
      return FakeVolumeBackend.info(v);
    });
  }

  async delete(id: string): Promise<void> {
    checkId("volume", id);
    await this.faults.apply("delete", true, id);
    await this.change(() => {
      for (const e of this.exports.values()) if (e.volumeId === id) this.exports.delete(e.attachmentId);
      this.volumes.delete(id);
    });
  }

  async extend(id: string, sizeBytes: number): Promise<void> {
    checkId("volume", id);
    checkSize(sizeBytes);
    await this.faults.apply("extend", true, id);
    await this.change(() => {
      const v = this.volume(id);
      if (sizeBytes < v.sizeBytes) throw volumeError("SHRINK_REFUSED", `volume ${id} is ${v.sizeBytes} bytes; it is not shrunk to ${sizeBytes}`);
      this.charge(v.pool, sizeBytes - v.sizeBytes);
      v.sizeBytes = sizeBytes;
    });
  }

  async reimage(id: string, image: VolumeImage): Promise<void> {
    checkId("volume", id);
    checkImage(image);
    await this.faults.apply("reimage", true, id);
    await this.change(async () => {
      const v = this.volume(id);
      const from = await readImage(image.path, image.format);
      if (from.sizeBytes > v.sizeBytes) throw volumeError("IMAGE_TOO_LARGE", `image ${image.path} is ${from.sizeBytes} bytes; volume ${id} is ${v.sizeBytes}`);
      v.content = { ...from.content };
      v.image = { path: image.path, format: image.format };
    });
  }

  async createSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("snapshot", snapshotId);
    await this.faults.apply("createSnapshot", true, volumeId);
    await this.change(() => {
      const v = this.volume(volumeId);
      if (!v.snapshots.some((s) => s.id === snapshotId)) v.snapshots.push({ id: snapshotId, sizeBytes: v.sizeBytes, content: { ...v.content } });
    });
  }

  async deleteSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("snapshot", snapshotId);
    await this.faults.apply("deleteSnapshot", true, volumeId);
    await this.change(() => {
      const v = this.volumes.get(volumeId);
      if (v) v.snapshots = v.snapshots.filter((s) => s.id !== snapshotId);
    });
  }

  async export(volumeId: string, attachmentId: string, client: string): Promise<ExportInfo> {
    checkId("volume", volumeId);
    checkId("attachment", attachmentId);
    checkClient(client);
    await this.faults.apply("export", true, volumeId);
    return this.change(() => {
      this.volume(volumeId);
      const same = this.exports.get(attachmentId);
      if (same) {
        if (same.volumeId === volumeId && same.client === client) return same;
        throw volumeError("VOLUME_IN_USE", `export ${attachmentId} is made for volume ${same.volumeId} and ${same.client}`);
      }
      let port = this.ports.get(client);
      if (port === undefined) {
        port = (this.options.basePort ?? 10809) + this.ports.size;
        this.ports.set(client, port);
      }
      const info: ExportInfo = { volumeId, attachmentId, host: this.options.address ?? "127.0.0.1", port, exportName: attachmentId, client };
      this.exports.set(attachmentId, info);
      return info;
    });
  }

  async unexport(volumeId: string, attachmentId: string): Promise<void> {
    checkId("volume", volumeId);
    checkId("attachment", attachmentId);
    await this.faults.apply("unexport", true, volumeId);
    await this.change(() => {
      if (this.exports.get(attachmentId)?.volumeId === volumeId) this.exports.delete(attachmentId);
    });
  }

  async list(): Promise<{ volumes: VolumeInfo[]; exports: ExportInfo[] }> {
    await this.faults.apply("list", false);
    await this.load();
    return {
      volumes: [...this.volumes.values()].sort((a, b) => a.id.localeCompare(b.id)).map(FakeVolumeBackend.info),
      exports: [...this.exports.values()].sort((a, b) => a.attachmentId.localeCompare(b.attachmentId)),
    };
  }

  async close(opts: { stopExports?: boolean } = {}): Promise<void> {
    if (!opts.stopExports) return;
    await this.change(() => {
      this.exports.clear();
    });
  }

  /** Fills the block at `offset` of a volume with `byte` in the model: what a guest writing to it would do. */
  async write(volumeId: string, byte: number, offset = 0): Promise<void> {
    await this.change(() => {
      const v = this.volume(volumeId);
      const key = FakeVolumeBackend.block(v, offset);
      if (byte === 0) delete v.content[key];
      else v.content[key] = byte;
    });
  }

  /** The byte of the block at `offset` of a volume in the model (its first byte by default). */
  async read(volumeId: string, offset = 0): Promise<number> {
    await this.load();
    const v = this.volume(volumeId);
    return v.content[FakeVolumeBackend.block(v, offset)] ?? 0;
  }

  /** The image the volume was last reimaged with, if it was. */
  async imageOf(volumeId: string): Promise<VolumeImage | undefined> {
    await this.load();
    return this.volume(volumeId).image;
  }

  /** The key of the block `offset` is in; an offset outside the volume is "INVALID_ARGUMENT". */
  private static block(v: FakeVolume, offset: number): string {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= v.sizeBytes) throw volumeError("INVALID_ARGUMENT", `offset ${offset} is outside volume ${v.id}`);
    return String(offset - (offset % FAKE_BLOCK_BYTES));
  }
}
