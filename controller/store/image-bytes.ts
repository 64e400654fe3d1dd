/**
 * The bytes of images, in a JetStream object store bucket that only
 * controllers open: image `<id>` holds an image's bytes, and
 * `migration-<server id>` the disk a cold migration hands from its source
 * host to its target. Users upload and download through ImageService,
 * hosts through AgentService (which decides what each host may touch). The
 * controller streams bytes in and out; nothing is held in memory whole.
 * SHA-256 and size are computed on the way so that what is stored is what
 * the image record (or the uploader's header) says.
 */
import { createHash } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { NatsConnection, ObjectStore } from "nats";
import { ApiError } from "../errors.js";

/** Size and lower-case hex SHA-256 of stored bytes. */
export interface StoredBytes {
  readonly sizeBytes: number;
  readonly checksum: string;
}

function storeUnavailable(bucket: string, what: string, err: unknown): ApiError {
  return new ApiError(status.UNAVAILABLE, `image store ${bucket}: ${what}: ${(err as Error).message}`, {
    reason: "IMAGE_STORE_UNAVAILABLE",
    cause: err,
  });
}

function dataLoss(id: string, message: string): ApiError {
  return new ApiError(status.DATA_LOSS, `image ${id}: ${message}`, { reason: "IMAGE_DATA_CORRUPT", metadata: { image: id } });
}

/** Rejects with `signal`'s abort as soon as it fires. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new ApiError(status.CANCELLED, "the call was cancelled"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new ApiError(status.CANCELLED, "the call was cancelled"));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export class ImageBytes {
  private store: Promise<ObjectStore> | undefined;

  constructor(
    private readonly nats: NatsConnection,
    /** Bucket name (created when missing). */
    readonly bucket: string,
  ) {}

  private os(): Promise<ObjectStore> {
    this.store ??= this.nats
      .jetstream()
      .views.os(this.bucket)
      .catch((err: unknown) => {
        this.store = undefined;
        throw storeUnavailable(this.bucket, "opening the bucket", err);
      });
    return this.store;
  }

  /**
   * Stores `chunks` as the bytes of image `id` (replacing any). An error
   * thrown by `chunks` (such as a bad message of the upload) rejects with
   * that error and stores nothing.
   */
  async put(id: string, chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StoredBytes> {
    const os = await this.os();
    const hash = createHash("sha256");
    let size = 0;
    let failure: unknown;
    const it = chunks[Symbol.asyncIterator]();
    const source = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const next = await raceAbort(it.next(), signal);
          if (next.done) {
            controller.close();
            return;
          }
          hash.update(next.value);
          size += next.value.length;
          controller.enqueue(next.value);
        } catch (err) {
          failure = err;
          controller.error(err);
        }
      },
      cancel() {
        void it.return?.();
      },
    });
    try {
      // An error of `chunks` errors the stream, so the put rejects and
      // purges what it wrote: nothing is stored.
      await os.put({ name: id }, source);
    } catch (err) {
      throw failure ?? storeUnavailable(this.bucket, `writing image ${id}`, err);
    }
    return { sizeBytes: size, checksum: hash.digest("hex") };
  }

  /**
   * The bytes of image `id`, checked as they pass: the generator throws
   * DATA_LOSS at the end when they are not `checksum` (or not what the store
   * recorded), and DATA_LOSS at once when the store has none.
   */
  async *read(id: string, checksum: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    const os = await this.os();
    const result = await os.get(id).catch((err: unknown) => {
      throw storeUnavailable(this.bucket, `reading image ${id}`, err);
    });
    if (!result) throw dataLoss(id, `the image store ${this.bucket} has no bytes for it`);
    const hash = createHash("sha256");
    const reader = result.data.getReader();
    try {
      for (;;) {
        const { done, value } = await raceAbort(reader.read(), signal);
        if (done) break;
        hash.update(value);
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
    const failed = await result.error;
    if (failed) throw dataLoss(id, `the image store's bytes are damaged: ${failed.message}`);
    const actual = hash.digest("hex");
    if (checksum && actual !== checksum) throw dataLoss(id, `the stored bytes have SHA-256 ${actual}, the image says ${checksum}`);
  }

  /**
   * Size and SHA-256 (lower-case hex) of object `key` as the store recorded
   * them when it was written; null when there is no such object.
   */
  async info(key: string): Promise<StoredBytes | null> {
    const os = await this.os();
    const info = await os.info(key).catch((err: unknown) => {
      throw storeUnavailable(this.bucket, `reading ${key}`, err);
    });
    if (!info || info.deleted) return null;
    const digest = info.digest.startsWith("SHA-256=") ? Buffer.from(info.digest.slice(8), "base64url").toString("hex") : "";
    return { sizeBytes: info.size, checksum: digest };
  }

  /** Deletes the bytes of image `id`; resolves when there are none. */
  async delete(id: string): Promise<void> {
    const os = await this.os();
    await os.delete(id).catch((err: unknown) => {
      if (!/not found/i.test((err as Error).message)) throw storeUnavailable(this.bucket, `deleting image ${id}`, err);
    });
  }
}
