/** An image store for driver tests: made-up image ids get a blank disk. */
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { DirectoryImageStore, ImageStore, StoredObject } from "./image-store.js";
import { createBlank } from "./qemu-img.js";

/**
 * A directory store that makes a blank 64 MiB qcow2 for an image id (a
 * UUID) it has never seen, so the contract's made-up image ids boot (on
 * qemu the guest sits in the firmware, which is enough to run and migrate).
 * Other keys (migrating disks) behave as in the directory store.
 */
export class BlankingStore implements ImageStore {
  constructor(private readonly inner: DirectoryImageStore) {}
  async get(key: string, dest: string, options?: { signal?: AbortSignal }): Promise<StoredObject> {
    const path = join(this.inner.dir, key);
    if (/^[0-9a-f-]{36}$/.test(key) && !(await access(path).then(() => true, () => false))) {
      await mkdir(this.inner.dir, { recursive: true });
      await createBlank(path, 64 * 1024 * 1024);
    }
    return this.inner.get(key, dest, options);
  }
  put(key: string, source: string, options?: { signal?: AbortSignal }): Promise<StoredObject> {
    return this.inner.put(key, source, options);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}
