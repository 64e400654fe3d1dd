/**
 * An {@link ImageStore} in a JetStream object store bucket: images by id,
 * snapshots and migrating disks, shared by every host of a cluster through
 * NATS (chunked, replicated as the bucket's stream is). Files are streamed
 * in and out, never held in memory whole; SHA-256 and size are computed on
 * the way.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { NatsConnection, ObjectStore } from "nats";
import { DriverError } from "../errors.js";
import type { ImageStore, StoredObject } from "./image-store.js";

/** Options of {@link JetStreamImageStore}. */
export interface JetStreamImageStoreOptions {
  /** Connection to NATS (owned by the caller). */
  readonly nats: NatsConnection;
  /** Bucket name (created when missing). */
  readonly bucket: string;
}

export class JetStreamImageStore implements ImageStore {
  private store: Promise<ObjectStore> | undefined;

  constructor(private readonly options: JetStreamImageStoreOptions) {}

  private bucket(): Promise<ObjectStore> {
    this.store ??= this.options.nats
      .jetstream()
      .views.os(this.options.bucket)
      .catch((err: unknown) => {
        this.store = undefined;
        throw new DriverError("IMAGE_STORE_ERROR", `object store bucket ${this.options.bucket}: ${(err as Error).message}`, {
          retryable: true,
          cause: err,
        });
      });
    return this.store;
  }

  async get(key: string, dest: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const os = await this.bucket();
    const result = await os.get(key);
    if (!result) throw new DriverError("IMAGE_NOT_FOUND", `object store ${this.options.bucket} has no object ${key}`);
    const tmp = `${dest}.part-${process.pid}`;
    const hash = createHash("sha256");
    let size = 0;
    try {
      await pipeline(
        Readable.fromWeb(result.data as import("node:stream/web").ReadableStream<Uint8Array>),
        async function* (chunks: AsyncIterable<Uint8Array>) {
          for await (const chunk of chunks) {
            hash.update(chunk);
            size += chunk.length;
            yield chunk;
          }
        },
        createWriteStream(tmp),
        { signal: options.signal },
      );
      const failed = await result.error;
      if (failed) throw failed;
      await rename(tmp, dest);
    } catch (err) {
      await rm(tmp, { force: true });
      if (err instanceof Error && err.name === "AbortError") throw new DriverError("ABORTED", `fetching ${key} was aborted`, { retryable: true, cause: err });
      throw new DriverError("IMAGE_STORE_ERROR", `reading ${key} from ${this.options.bucket}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    return { sizeBytes: size, checksum: hash.digest("hex") };
  }

  async put(key: string, source: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const os = await this.bucket();
    const hash = createHash("sha256");
    let size = 0;
    const file = createReadStream(source);
    file.on("data", (chunk) => {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    });
    if (options.signal) {
      const onAbort = () => file.destroy(new DriverError("ABORTED", `storing ${key} was aborted`, { retryable: true }));
      options.signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      await os.put({ name: key }, Readable.toWeb(file) as unknown as ReadableStream<Uint8Array>);
    } catch (err) {
      if (err instanceof DriverError) throw err;
      throw new DriverError("IMAGE_STORE_ERROR", `writing ${key} to ${this.options.bucket}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    return { sizeBytes: size, checksum: hash.digest("hex") };
  }

  async delete(key: string): Promise<void> {
    const os = await this.bucket();
    await os.delete(key).catch((err: unknown) => {
      if (!/not found/i.test((err as Error).message)) throw err;
    });
  }
}
