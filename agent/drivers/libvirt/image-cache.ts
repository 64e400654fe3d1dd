/**
 * The agent's local cache of base images: one verified copy of each image
 * under `<instances>/_base/`, fetched from the {@link ImageStore}, shared by
 * every instance's qcow2 overlay (and the kernel and ramdisk a domain boots
 * from), and removed once no instance uses it any more.
 */
import { mkdir, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { InstanceSpec } from "../types.js";
import * as C from "./binding/constants.js";
import type { DomainMetadata } from "./domain-xml.js";
import { bestEffort, isMissing } from "./failures.js";
import { checkKey, getVerified, type ImageStore } from "./image-store.js";
import type { Inventory } from "./inventory.js";

/** Options of {@link ImageCache}. */
export interface ImageCacheOptions {
  /** Directory of the cached base images. */
  readonly dir: string;
  /** Where images come from. */
  readonly store: ImageStore;
  /**
   * Unused base images younger than this are kept by {@link ImageCache.prune}
   * (Nova's `remove_unused_original_minimum_age_seconds`; default 3600).
   */
  readonly minAgeSeconds?: number;
  /** Where a failure to record an image's last use is logged. */
  readonly log: Logger;
}

/** The local copies of base images (see the module comment). */
export class ImageCache {
  private readonly fetching = new Map<string, Promise<string>>();
  private readonly minAgeMs: number;

  constructor(private readonly options: ImageCacheOptions) {
    this.minAgeMs = (options.minAgeSeconds ?? 3600) * 1000;
  }

  /** Path of the cached copy of image `imageId` (whether or not it is there yet). */
  pathOf(imageId: string): string {
    return join(this.options.dir, checkKey(imageId));
  }

  /**
   * The path of a verified local copy of the image, fetched from the store
   * if it is not cached yet. Concurrent calls for one image fetch it once.
   * `checksum` (SHA-256 hex, may be empty: not checked) must match the
   * bytes: a mismatch is a non-retryable "IMAGE_CHECKSUM_MISMATCH" and
   * nothing is cached.
   */
  async ensure(imageId: string, checksum: string, signal?: AbortSignal): Promise<string> {
    const path = this.pathOf(imageId);
    if (await this.cached(path)) {
      const now = new Date();
      // Last use, for prune: without it the image is only pruned sooner.
      await bestEffort(this.options.log, "recording the last use of a base image", () => utimes(path, now, now), { image: imageId });
      return path;
    }
    let pending = this.fetching.get(imageId);
    if (!pending) {
      pending = this.fetch(imageId, checksum, path, signal).finally(() => this.fetching.delete(imageId));
      this.fetching.set(imageId, pending);
    }
    return pending;
  }

  private async cached(path: string): Promise<boolean> {
    try {
      await stat(path);
      return true;
    } catch (err) {
      if (isMissing(err)) return false;
      throw err;
    }
  }

  private async fetch(imageId: string, checksum: string, path: string, signal?: AbortSignal): Promise<string> {
    await mkdir(this.options.dir, { recursive: true });
    const tmp = `${path}.fetch-${process.pid}`;
    try {
      await getVerified(this.options.store, imageId, checksum, tmp, signal);
      await rename(tmp, path);
      return path;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Removes cached images that are not in `inUse` and were not used for
   * `minAgeSeconds`. Resolves the ids removed.
   */
  async prune(inUse: ReadonlySet<string>): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.options.dir);
    } catch (err) {
      if (isMissing(err)) return []; // nothing cached yet
      throw err;
    }
    const removed: string[] = [];
    const now = Date.now();
    for (const name of names) {
      if (name.includes(".fetch-") || inUse.has(name) || this.fetching.has(name)) continue;
      const path = join(this.options.dir, name);
      let mtimeMs: number;
      try {
        mtimeMs = (await stat(path)).mtimeMs;
      } catch (err) {
        if (isMissing(err)) continue; // removed meanwhile
        throw err;
      }
      if (now - mtimeMs < this.minAgeMs) continue;
      await rm(path, { force: true });
      removed.push(name);
    }
    return removed;
  }
}

/** Local paths of what an instance boots from. */
export interface BootImages {
  /** The base image its overlay is on. */
  readonly base: string;
  readonly kernel?: string;
  readonly initrd?: string;
}

/** The driver's use of the cache: what an instance boots from, and pruning what no domain uses. */
export class BaseImages {
  private readonly cache: ImageCache;

  constructor(
    options: ImageCacheOptions,
    private readonly inventory: Inventory,
    private readonly log: Logger,
  ) {
    this.cache = new ImageCache(options);
  }

  /** Base image, kernel and ramdisk of an instance, fetched into the cache. */
  async forInstance(instance: InstanceSpec, signal?: AbortSignal): Promise<BootImages> {
    const base = await this.cache.ensure(instance.image.id, instance.image.checksum, signal);
    return { base, ...(await this.kernelOf(instance, signal)) };
  }

  /** Only the kernel and ramdisk of an instance's image, if it names them, fetched into the cache (a root disk from a volume needs no base image). */
  async kernelOf(instance: InstanceSpec, signal?: AbortSignal): Promise<Omit<BootImages, "base">> {
    const p = instance.image.properties;
    const kernel = p.kernel_id ? await this.cache.ensure(p.kernel_id, "", signal) : undefined;
    const initrd = p.ramdisk_id ? await this.cache.ensure(p.ramdisk_id, "", signal) : undefined;
    return { kernel, initrd };
  }

  /**
   * Ids of the images some domain or set-aside copy uses: its image (the
   * overlay's backing file) and the kernel and ramdisk its XML names, and
   * those of live migrations prepared here.
   */
  private async inUse(): Promise<Set<string>> {
    const { ours, stashes, incoming } = await this.inventory.list();
    const inUse = new Set<string>();
    const add = (xml: string, meta: DomainMetadata | undefined) => {
      for (const m of xml.matchAll(/_base\/([^<'"/]+)/g)) inUse.add(m[1]!);
      // A domain booted from a volume has no overlay on its image.
      if (meta && meta.rootAttachmentId === undefined) inUse.add(meta.imageId);
    };
    for (const k of ours) add(await k.dom.getXMLDesc(C.VIR_DOMAIN_XML_INACTIVE), k.meta);
    for (const st of stashes) add(st.xml, st.meta);
    for (const m of incoming) for (const id of m.incoming.imageIds) inUse.add(id);
    return inUse;
  }

  /** Removes the base images no one uses (best effort: a failure is logged, the call that pruned goes on). */
  async pruneUnused(): Promise<void> {
    await bestEffort(this.log, "pruning unused base images", async () => this.cache.prune(await this.inUse()));
  }
}
