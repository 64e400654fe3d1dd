/**
 * An {@link ImageStore} in a JetStream object store bucket: images by id,
 * snapshots and migrating disks, shared by every host of a cluster through
 * NATS (chunked, replicated as the bucket's stream is). Files are streamed
 * in and out, never held in memory whole; SHA-256 and size are computed on
 * the way.
 */
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { NatsConnection, ObjectStore } from "nats";
import { DriverError } from "../errors.js";
import { abortedOr, Digest, writeHashed, type ImageStore, type StoredObject } from "./image-store.js";

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
    try {
      const stored = await writeHashed(Readable.fromWeb(result.data as WebReadableStream<Uint8Array>), dest, options.signal);
      const failed = await result.error;
      if (failed) {
        await rm(dest, { force: true });
        throw failed;
      }
      return stored;
    } catch (err) {
      throw abortedOr(err, () => new DriverError("IMAGE_STORE_ERROR", `reading ${key} from ${this.options.bucket}: ${(err as Error).message}`, { retryable: true, cause: err }));
    }
  }

  async put(key: string, source: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const os = await this.bucket();
    if (options.signal?.aborted) throw new DriverError("ABORTED", `storing ${key} was aborted`, { retryable: true, cause: options.signal.reason });
    const digest = new Digest();
    const file = createReadStream(source, { signal: options.signal });
    // The error reaches os.put through the iteration below; this keeps an
    // error raised before reading starts from being an unhandled event.
    file.on("error", () => undefined);
    const chunks = Readable.from(digest.tap(file));
    try {
      await os.put({ name: key }, Readable.toWeb(chunks) as unknown as ReadableStream<Uint8Array>);
    } catch (err) {
      throw abortedOr(err, () => new DriverError("IMAGE_STORE_ERROR", `writing ${key} to ${this.options.bucket}: ${(err as Error).message}`, { retryable: true, cause: err }));
    }
    return digest.result();
  }

  async delete(key: string): Promise<void> {
    const os = await this.bucket();
    await os.delete(key).catch((err: unknown) => {
      if (!/not found/i.test((err as Error).message)) throw err;
    });
  }
}
