/**
 * Moving image bytes through a call, for ImageService (users) and
 * AgentService (hosts) alike: the chunks of an upload after its header,
 * storing them checked against the size and SHA-256 announced, the upload
 * of an image's data (SAVING while it runs, ACTIVE when stored), and
 * streaming stored bytes out with flow control.
 */
import { once } from "node:events";
import { status } from "@grpc/grpc-js";
import { ApiError, invalidArgument, notFound } from "../errors.js";
import { beatImageUpload, beginImageUpload, endImageUpload, UPLOAD_STALE_SECONDS } from "../store/catalog.js";
import type { Pool } from "../store/db.js";
import type { ImageBytes, StoredBytes } from "../store/image-bytes.js";
import type { Logger } from "pino";

/** Largest chunk of an upload (the server accepts messages up to 16 MiB; chunks stay well below). */
export const MAX_UPLOAD_CHUNK_BYTES = 1024 * 1024;

/** A SHA-256 as uploads give it: lower-case hex. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Largest chunk a download sends. */
const DOWNLOAD_CHUNK_BYTES = 1024 * 1024;

/** How often a running upload tells the database it is alive. */
const UPLOAD_HEARTBEAT_MS = (UPLOAD_STALE_SECONDS * 1000) / 4;

/** What an upload announced: 0 and "" when not known in advance. */
export interface Expected {
  readonly sizeBytes: number;
  readonly checksum: string;
}

export function cancelledUpload(what: string): ApiError {
  return new ApiError(status.CANCELLED, `the upload of ${what} was cancelled`, { reason: "UPLOAD_CANCELLED" });
}

/**
 * The data of an upload, from the messages after its header: each must
 * carry a chunk (`chunkOf` gives it, or undefined when the message is not a
 * chunk) of at most {@link MAX_UPLOAD_CHUNK_BYTES}, and no more than
 * `sizeBytes` may arrive. A call cancelled by its client ends with
 * CANCELLED, never as a complete upload.
 */
export async function* uploadChunks<M>(
  messages: AsyncIterator<M>,
  chunkOf: (m: M) => Uint8Array | undefined,
  expected: Expected,
  call: { readonly cancelled: boolean },
  signal: AbortSignal,
  what: string,
): AsyncGenerator<Uint8Array> {
  let received = 0;
  for (;;) {
    const next = await messages.next();
    if (next.done) {
      // grpc-js ends the request stream of a cancelled call just before it
      // marks the call cancelled: look once more before calling it complete.
      await new Promise((resolve) => setImmediate(resolve));
      if (call.cancelled || signal.aborted) throw cancelledUpload(what);
      return;
    }
    const chunk = chunkOf(next.value);
    if (chunk === undefined) throw invalidArgument("chunk", "every message after the header must carry a chunk");
    if (chunk.length > MAX_UPLOAD_CHUNK_BYTES) throw invalidArgument("chunk", `${chunk.length} bytes; at most ${MAX_UPLOAD_CHUNK_BYTES} per message`);
    received += chunk.length;
    if (expected.sizeBytes && received > expected.sizeBytes) throw invalidArgument("header.size_bytes", `more than the announced ${expected.sizeBytes} bytes were sent`);
    if (chunk.length) yield chunk;
  }
}

/**
 * Stores `chunks` as object `key` and checks them: at least one byte, and
 * the size and checksum `expected` announced. Bytes that do not match, or
 * an upload cancelled meanwhile, are deleted again and the call rejects.
 */
export async function storeChecked(bytes: ImageBytes, key: string, chunks: AsyncIterable<Uint8Array>, expected: Expected, signal: AbortSignal, what: string): Promise<StoredBytes> {
  const stored = await bytes.put(key, chunks, signal);
  const wrong =
    stored.sizeBytes === 0
      ? invalidArgument("chunk", "no data was sent")
      : expected.sizeBytes && stored.sizeBytes !== expected.sizeBytes
        ? invalidArgument("header.size_bytes", `${stored.sizeBytes} bytes arrived, ${expected.sizeBytes} were announced`)
        : expected.checksum && stored.checksum !== expected.checksum
          ? invalidArgument("header.checksum", `the data's SHA-256 is ${stored.checksum}, not ${expected.checksum}`)
          : undefined;
  if (wrong || signal.aborted) {
    await bytes.delete(key);
    throw wrong ?? cancelledUpload(what);
  }
  return stored;
}

/**
 * The upload of image `id`'s data: marks it SAVING (one upload at a time;
 * ABORTED UPLOAD_IN_PROGRESS otherwise), keeps the upload's heartbeat while
 * `chunks` are stored and checked, and makes it ACTIVE with them; on any
 * failure the bytes are gone and the image is QUEUED again.
 */
export async function storeImageData(
  deps: { readonly pool: Pool; readonly log: Logger },
  bytes: ImageBytes,
  id: string,
  expected: Expected,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
): Promise<StoredBytes> {
  const { pool, log } = deps;
  if (!(await beginImageUpload(pool, id))) {
    throw new ApiError(status.ABORTED, `another upload of image ${id} is running`, { reason: "UPLOAD_IN_PROGRESS", metadata: { image: id } });
  }
  const heartbeat = setInterval(() => {
    beatImageUpload(pool, id).catch((err: unknown) => log.warn({ err, image: id }, "upload heartbeat failed"));
  }, UPLOAD_HEARTBEAT_MS);
  heartbeat.unref();
  try {
    const stored = await storeChecked(bytes, id, chunks, expected, signal, `image ${id}`);
    if (!(await endImageUpload(pool, id, stored))) {
      await bytes.delete(id);
      throw notFound("image", id);
    }
    return stored;
  } catch (err) {
    await endImageUpload(pool, id, null).catch((e: unknown) => log.warn({ err: e, image: id }, "could not return an image to QUEUED after a failed upload"));
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}

/**
 * Writes `chunks` to a server stream as the messages `wrap` makes, in
 * pieces of at most 1 MiB, waiting while the client is behind; stops when
 * `signal` aborts.
 */
export async function writeChunks<M>(
  call: { write(m: M): boolean; once(event: "drain", listener: () => void): unknown },
  chunks: AsyncIterable<Uint8Array>,
  wrap: (chunk: Buffer) => M,
  signal: AbortSignal,
): Promise<void> {
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.byteLength; at += DOWNLOAD_CHUNK_BYTES) {
      const piece = Buffer.from(chunk.buffer, chunk.byteOffset + at, Math.min(DOWNLOAD_CHUNK_BYTES, chunk.byteLength - at));
      if (!call.write(wrap(piece))) {
        if (signal.aborted) return;
        await Promise.race([once(call as unknown as NodeJS.EventEmitter, "drain"), once(signal, "abort")]);
      }
      if (signal.aborted) return;
    }
  }
}
