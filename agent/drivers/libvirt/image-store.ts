/**
 * Where image bytes live.
 *
 * An {@link ImageStore} holds objects by key: images by their id, and the
 * disks a cold migration hands from one host to another. The
 * {@link DirectoryImageStore} keeps them as files in a directory (a local
 * image repository, or one shared between hosts); the JetStream object
 * store implements the same interface for a cluster. The local copies of
 * base images a host keeps are in image-cache.ts.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { DriverError } from "../errors.js";
import { isMissing } from "./failures.js";

/** Size and SHA-256 of stored bytes. */
export interface StoredObject {
  readonly sizeBytes: number;
  /** Lowercase hex SHA-256. */
  readonly checksum: string;
}

/** Object storage for image data (see the module comment). */
export interface ImageStore {
  /**
   * Writes object `key` to the file `dest` (replacing it). Rejects with a
   * non-retryable "IMAGE_NOT_FOUND" DriverError when there is no such
   * object.
   */
  get(key: string, dest: string, options?: { readonly signal?: AbortSignal }): Promise<StoredObject>;
  /** Stores the file `source` as object `key` (replacing it). */
  put(key: string, source: string, options?: { readonly signal?: AbortSignal }): Promise<StoredObject>;
  /** Deletes object `key`; resolves when there is none. */
  delete(key: string): Promise<void>;
}

/**
 * Writes image `key` from `store` to `dest` and checks its bytes against
 * `checksum` (SHA-256 hex; "" is not checked). A mismatch is a
 * non-retryable "IMAGE_CHECKSUM_MISMATCH" and leaves no `dest`.
 */
export async function getVerified(store: ImageStore, key: string, checksum: string, dest: string, signal?: AbortSignal): Promise<StoredObject> {
  const got = await store.get(key, dest, { signal });
  if (checksum !== "" && got.checksum !== checksum.toLowerCase()) {
    await rm(dest, { force: true });
    throw new DriverError("IMAGE_CHECKSUM_MISMATCH", `image ${key}: the store's data has SHA-256 ${got.checksum}, the image record says ${checksum}`);
  }
  return got;
}

/** Object keys are ids and simple names: no path separators, no dot-files. */
const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

export function checkKey(key: string): string {
  if (!KEY.test(key)) throw new DriverError("INVALID_ARGUMENT", `bad image store key "${key}"`);
  return key;
}

/** SHA-256 and size of the bytes that pass through {@link Digest.tap}. */
export class Digest {
  private readonly hash = createHash("sha256");
  private size = 0;

  /** A pipeline stage that passes chunks on unchanged, counting and hashing them. */
  readonly tap = (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> => this.pass(chunks);

  private async *pass(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const chunk of chunks) {
      this.hash.update(chunk);
      this.size += chunk.length;
      yield chunk;
    }
  }

  /** What passed through (call once, after the last chunk). */
  result(): StoredObject {
    return { sizeBytes: this.size, checksum: this.hash.digest("hex") };
  }
}

/** Writes `chunks` to `dest` through a temporary file, renamed at the end; resolves what was written. */
export async function writeHashed(chunks: AsyncIterable<Uint8Array>, dest: string, signal?: AbortSignal): Promise<StoredObject> {
  const tmp = `${dest}.part-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const digest = new Digest();
  try {
    await pipeline(chunks, digest.tap, createWriteStream(tmp, { flags: "w", mode: 0o644 }), { signal });
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return digest.result();
}

/** SHA-256 and size of a file. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<StoredObject> {
  const digest = new Digest();
  await pipeline(
    createReadStream(path),
    digest.tap,
    async (chunks: AsyncIterable<Uint8Array>) => {
      for await (const _ of chunks);
    },
    { signal },
  );
  return digest.result();
}

/** A failure of a copy as a DriverError: an abort is a retryable ABORTED, anything else `fallback()`. */
export function abortedOr(err: unknown, fallback: () => DriverError): DriverError {
  if (err instanceof DriverError) return err;
  if (err instanceof Error && err.name === "AbortError") {
    return new DriverError("ABORTED", "the copy was aborted", { retryable: true, cause: err });
  }
  return fallback();
}

/** An {@link ImageStore} in a directory: object `key` is the file `<dir>/<key>`. */
export class DirectoryImageStore implements ImageStore {
  constructor(readonly dir: string) {}

  async get(key: string, dest: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const path = join(this.dir, checkKey(key));
    const what = `reading ${key} from ${this.dir}`;
    try {
      await stat(path);
    } catch (err) {
      if (isMissing(err)) throw new DriverError("IMAGE_NOT_FOUND", `image store ${this.dir} has no object ${key}`);
      throw this.failure(what, err);
    }
    try {
      return await writeHashed(createReadStream(path), dest, options.signal);
    } catch (err) {
      throw this.failure(what, err);
    }
  }

  async put(key: string, source: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    await mkdir(this.dir, { recursive: true });
    try {
      return await writeHashed(createReadStream(source), join(this.dir, checkKey(key)), options.signal);
    } catch (err) {
      throw this.failure(`writing ${key} to ${this.dir}`, err);
    }
  }

  private failure(what: string, err: unknown): DriverError {
    return abortedOr(err, () => new DriverError("IMAGE_STORE_ERROR", `${what}: ${(err as Error).message}`, { retryable: true, cause: err }));
  }

  async delete(key: string): Promise<void> {
    await rm(join(this.dir, checkKey(key)), { force: true });
  }
}
