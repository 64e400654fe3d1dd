/**
 * An {@link ImageStore} that moves bytes through the controller
 * (AgentService's DownloadHostObject, UploadHostObject and
 * DeleteMigrationDisk) over the agent's own channel, with its token. The
 * agent never opens the image store itself: the controller decides what
 * this host may read and write (the images its work needs, the snapshots
 * and migrating disks its ops make). Keys are those the driver uses: an
 * image id, or `migration-<server id>` for a disk a cold migration hands
 * over. Bytes are streamed in chunks of at most 1 MiB and checked against
 * the size and SHA-256 the controller announces (downloads) or is told
 * (uploads).
 */
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Metadata, status, type ClientWritableStream, type ServiceError } from "@grpc/grpc-js";
import type { AgentServiceClient, DownloadHostObjectResponse, HostObject, HostObjectInfo, UploadHostObjectRequest } from "../../gen/novamesh/agent/v1/agent.js";
import { DriverError } from "../drivers/errors.js";
import { abortedOr, checkKey, hashFile, writeHashed, type ImageStore, type StoredObject } from "../drivers/libvirt/image-store.js";

/** Largest chunk of an upload (the controller's limit). */
const CHUNK_BYTES = 1024 * 1024;

const MIGRATION_KEY = /^migration-(.+)$/;

/** Options of {@link ControllerImageStore}. */
export interface ControllerImageStoreOptions {
  /** The agent's AgentService client: its one channel to the controller (called at each transfer). */
  readonly client: () => AgentServiceClient;
  /** The agent's token. */
  readonly token: string;
  /** The host this agent runs (sent with every call, so an admin token works too). */
  readonly host: string;
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof (err as { code?: unknown } | null)?.code === "number" && typeof (err as { details?: unknown }).details === "string";
}

/** A failed call as a DriverError: NOT_FOUND is IMAGE_NOT_FOUND; bad data and refusals are final; the rest may pass. */
function failure(err: unknown, what: string): DriverError {
  return abortedOr(err, () => {
    if (!isServiceError(err)) return new DriverError("IMAGE_STORE_ERROR", `${what}: ${(err as Error).message}`, { retryable: true, cause: err });
    const message = `${what}: ${err.details || status[err.code]}`;
    switch (err.code) {
      case status.NOT_FOUND:
        return new DriverError("IMAGE_NOT_FOUND", message, { cause: err });
      case status.DATA_LOSS:
        return new DriverError("IMAGE_CHECKSUM_MISMATCH", message, { cause: err });
      case status.INVALID_ARGUMENT:
      case status.FAILED_PRECONDITION:
      case status.PERMISSION_DENIED:
      case status.UNAUTHENTICATED:
        return new DriverError("IMAGE_STORE_ERROR", message, { cause: err });
      case status.CANCELLED:
        return new DriverError("ABORTED", message, { retryable: true, cause: err });
      default:
        return new DriverError("IMAGE_STORE_ERROR", message, { retryable: true, cause: err });
    }
  });
}

/** See the module comment. */
export class ControllerImageStore implements ImageStore {
  constructor(private readonly options: ControllerImageStoreOptions) {}

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.options.token) md.set("authorization", `Bearer ${this.options.token}`);
    return md;
  }

  private objectOf(key: string): HostObject {
    const m = MIGRATION_KEY.exec(checkKey(key));
    return m ? { object: { $case: "migrationServerId", migrationServerId: m[1]! } } : { object: { $case: "imageId", imageId: key } };
  }

  async get(key: string, dest: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const { signal } = options;
    if (signal?.aborted) throw new DriverError("ABORTED", `reading ${key} was aborted`, { retryable: true });
    const call = this.options.client().downloadHostObject({ host: this.options.host, object: this.objectOf(key) }, this.metadata());
    const cancel = () => call.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    let info: HostObjectInfo | undefined;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for await (const m of call as AsyncIterable<DownloadHostObjectResponse>) {
        if (m.part?.$case === "info") info = m.part.info;
        else if (m.part?.$case === "chunk") yield m.part.chunk;
      }
    }
    let stored: StoredObject;
    try {
      stored = await writeHashed(chunks(), dest, signal);
    } catch (err) {
      call.cancel(); // a local failure (a full disk) stops the controller's stream too
      throw failure(err, `reading ${key} through the controller`);
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
    if (!info || stored.sizeBytes !== info.sizeBytes || stored.checksum !== info.checksum) {
      await rm(dest, { force: true });
      throw new DriverError(
        "IMAGE_CHECKSUM_MISMATCH",
        info
          ? `${key}: ${stored.sizeBytes} bytes with SHA-256 ${stored.checksum} arrived; the controller announced ${info.sizeBytes} bytes with ${info.checksum}`
          : `${key}: the controller's stream carried no size and checksum`,
        { retryable: true },
      );
    }
    return stored;
  }

  async put(key: string, source: string, options: { readonly signal?: AbortSignal } = {}): Promise<StoredObject> {
    const { signal } = options;
    const object = this.objectOf(key);
    const what = `storing ${key} through the controller`;
    let digest: StoredObject;
    try {
      digest = await hashFile(source, signal);
    } catch (err) {
      throw abortedOr(err, () => new DriverError("IMAGE_STORE_ERROR", `${what}: ${(err as Error).message}`, { cause: err }));
    }
    let call!: ClientWritableStream<UploadHostObjectRequest>;
    const done = new Promise<HostObjectInfo | undefined>((resolve, reject) => {
      call = this.options.client().uploadHostObject(this.metadata(), (err, res) => (err ? reject(err) : resolve(res?.info)));
    });
    // The call's answer is the upload's result; until it comes, an early
    // answer (a refusal, or the same bytes already stored) stops the writing.
    let answered = false;
    const stop = () => {
      answered = true;
    };
    done.then(stop, stop);
    call.on("error", stop);
    const cancel = () => call.cancel();
    signal?.addEventListener("abort", cancel, { once: true });
    const send = async (msg: UploadHostObjectRequest) => {
      if (answered) return;
      if (!call.write(msg)) await Promise.race([once(call, "drain"), done.then(() => undefined, () => undefined)]);
    };
    try {
      await send({ part: { $case: "header", header: { host: this.options.host, object, sizeBytes: digest.sizeBytes, checksum: digest.checksum } } });
      for await (const chunk of createReadStream(source, { highWaterMark: CHUNK_BYTES, signal })) {
        if (answered) break;
        await send({ part: { $case: "chunk", chunk: chunk as Buffer } });
      }
      call.end();
      const info = await done;
      if (!info || info.sizeBytes !== digest.sizeBytes || info.checksum !== digest.checksum) {
        throw new DriverError("IMAGE_STORE_ERROR", `${what}: the controller stored other bytes than were sent`, { retryable: true });
      }
      return digest;
    } catch (err) {
      call.cancel();
      throw failure(err, what);
    } finally {
      signal?.removeEventListener("abort", cancel);
    }
  }

  async delete(key: string): Promise<void> {
    const m = MIGRATION_KEY.exec(checkKey(key));
    if (!m) throw new DriverError("NOT_SUPPORTED", `a host does not delete images (${key})`);
    await new Promise<void>((resolve, reject) => {
      this.options.client().deleteMigrationDisk({ host: this.options.host, serverId: m[1]! }, this.metadata(), (err) => (err ? reject(failure(err, `deleting ${key} through the controller`)) : resolve()));
    });
  }
}
