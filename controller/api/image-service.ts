import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { status, type ServerReadableStream } from "@grpc/grpc-js";
import type { ImageServiceServer, UploadImageDataRequest, UploadImageDataResponse } from "../../gen/novamesh/compute/v1/image.js";
import { ImageVisibility } from "../../gen/novamesh/compute/v1/image.js";
import type { Image } from "../domain/types.js";
import { alreadyExists, ApiError, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import {
  beatImageUpload,
  beginImageUpload,
  deleteImage,
  endImageUpload,
  getImage,
  insertImage,
  listImages,
  UPLOAD_STALE_SECONDS,
} from "../store/catalog.js";
import { isDuplicateKey } from "../store/db.js";
import type { ImageBytes } from "../store/image-bytes.js";
import { imageToProto } from "./convert.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { clientStream, isAdmin, serverStream, unary } from "./rpc.js";
import * as v from "./validate.js";

const DISK_FORMATS = ["qcow2", "raw", "iso", "vmdk", "vdi", "vhd", "vhdx", "ami", "aki", "ari"];
const CONTAINER_FORMATS = ["bare", "ovf", "ova", "ami", "aki", "ari"];
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Largest chunk of an upload (the server accepts messages up to 16 MiB; chunks stay well below). */
export const MAX_UPLOAD_CHUNK_BYTES = 1024 * 1024;

/** How often a running upload tells the database it is alive. */
const UPLOAD_HEARTBEAT_MS = (UPLOAD_STALE_SECONDS * 1000) / 4;

function cancelledUpload(id: string): ApiError {
  return new ApiError(status.CANCELLED, `the upload of image ${id} was cancelled`, { reason: "UPLOAD_CANCELLED" });
}

export function imageService(deps: RpcDeps, bytes: ImageBytes): ImageServiceServer {
  const { pool, log } = deps;
  const scope = (ctx: CallContext) => (isAdmin(ctx) ? undefined : ctx.principal.projectId);

  /** Deletes stored bytes after the image record is gone; a failure is logged, the record stays deleted. */
  const dropBytes = (image: Image) => {
    if (!image.hasData) return;
    bytes.delete(image.id).catch((err: unknown) => log.warn({ err, image: image.id }, "could not delete the bytes of a deleted image"));
  };

  /** The upload's body once the header is checked: streams chunks into the store and verifies them. */
  async function upload(call: ServerReadableStream<UploadImageDataRequest, UploadImageDataResponse>, ctx: CallContext): Promise<UploadImageDataResponse> {
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<UploadImageDataRequest>;
    const first = await messages.next();
    if (first.done || first.value.part?.$case !== "header") throw invalidArgument("header", "the first message must carry the header");
    const h = first.value.part.header;
    const id = v.uuid("header.image_id", h.imageId);
    ctx.audit.target = id;
    if (h.sizeBytes < 0) throw invalidArgument("header.size_bytes", "must not be negative");
    if (h.checksum && !SHA256_HEX.test(h.checksum)) throw invalidArgument("header.checksum", "must be a SHA-256 in lower-case hex");
    const image = await getImage(pool, id, scope(ctx));
    if (!image) throw notFound("image", id);
    if (!isAdmin(ctx) && image.projectId !== ctx.principal.projectId) throw permissionDenied("only the owner or an admin may upload an image's data");
    if (image.status !== "queued" && image.status !== "saving") {
      throw failedPrecondition(`image ${id} is ${image.status}; only a QUEUED image takes an upload`, "IMAGE_NOT_QUEUED", { status: image.status });
    }
    if (h.sizeBytes && image.sizeBytes && h.sizeBytes !== image.sizeBytes) {
      throw invalidArgument("header.size_bytes", `${h.sizeBytes} differs from the registered size ${image.sizeBytes}`);
    }
    if (h.checksum && image.checksum && h.checksum !== image.checksum) {
      throw invalidArgument("header.checksum", `${h.checksum} differs from the registered checksum ${image.checksum}`);
    }
    const size = h.sizeBytes || image.sizeBytes;
    const checksum = h.checksum || image.checksum;
    if (!(await beginImageUpload(pool, id))) {
      throw new ApiError(status.ABORTED, `another upload of image ${id} is running`, { reason: "UPLOAD_IN_PROGRESS", metadata: { image: id } });
    }
    const heartbeat = setInterval(() => {
      beatImageUpload(pool, id).catch((err: unknown) => log.warn({ err, image: id }, "upload heartbeat failed"));
    }, UPLOAD_HEARTBEAT_MS);
    heartbeat.unref();
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let received = 0;
      for (;;) {
        const next = await messages.next();
        if (next.done) {
          // grpc-js ends the request stream of a cancelled call just before it
          // marks the call cancelled: look once more before calling it complete.
          await new Promise((resolve) => setImmediate(resolve));
          if (call.cancelled || ctx.signal.aborted) throw cancelledUpload(id);
          return;
        }
        const part = next.value.part;
        if (part?.$case !== "chunk") throw invalidArgument("chunk", "every message after the header must carry a chunk");
        if (part.chunk.length > MAX_UPLOAD_CHUNK_BYTES) throw invalidArgument("chunk", `${part.chunk.length} bytes; at most ${MAX_UPLOAD_CHUNK_BYTES} per message`);
        received += part.chunk.length;
        if (size && received > size) throw invalidArgument("header.size_bytes", `more than the announced ${size} bytes were sent`);
        if (part.chunk.length) yield part.chunk;
      }
    }
    try {
      const stored = await bytes.put(id, chunks(), ctx.signal);
      const wrong =
        stored.sizeBytes === 0
          ? invalidArgument("chunk", "no data was sent")
          : size && stored.sizeBytes !== size
            ? invalidArgument("header.size_bytes", `${stored.sizeBytes} bytes arrived, ${size} were announced`)
            : checksum && stored.checksum !== checksum
              ? invalidArgument("header.checksum", `the data's SHA-256 is ${stored.checksum}, not ${checksum}`)
              : undefined;
      if (wrong || ctx.signal.aborted) {
        await bytes.delete(id);
        throw wrong ?? cancelledUpload(id);
      }
      if (!(await endImageUpload(pool, id, stored))) {
        await bytes.delete(id);
        throw notFound("image", id);
      }
    } catch (err) {
      await endImageUpload(pool, id, null).catch((e: unknown) => log.warn({ err: e, image: id }, "could not return an image to QUEUED after a failed upload"));
      throw err;
    } finally {
      clearInterval(heartbeat);
    }
    const done = await getImage(pool, id, undefined);
    if (!done) throw notFound("image", id);
    log.info({ image: id, sizeBytes: done.sizeBytes }, "image data stored");
    return { image: imageToProto(done) };
  }

  return {
    registerImage: unary(deps, "RegisterImage", async (req, ctx) => {
      const i = req.image;
      if (!i) throw invalidArgument("image", "is required");
      // Only admins choose ids: a member's chosen id would be ALREADY_EXISTS
      // exactly when another project's private image has it.
      if (i.id && !isAdmin(ctx)) throw permissionDenied("choosing an image id needs the admin role; leave image.id empty and one is assigned");
      const id = i.id ? v.uuid("image.id", i.id) : randomUUID();
      const visibility = i.visibility === ImageVisibility.IMAGE_VISIBILITY_PUBLIC ? "public" : "private";
      if (i.visibility !== 0 && i.visibility !== ImageVisibility.IMAGE_VISIBILITY_PUBLIC && i.visibility !== ImageVisibility.IMAGE_VISIBILITY_PRIVATE) {
        throw invalidArgument("image.visibility", "unknown visibility");
      }
      if (visibility === "public" && !isAdmin(ctx)) throw permissionDenied("registering a public image needs the admin role");
      const diskFormat = i.diskFormat || "qcow2";
      if (!DISK_FORMATS.includes(diskFormat)) throw invalidArgument("image.disk_format", `must be one of ${DISK_FORMATS.join(", ")}`);
      const containerFormat = i.containerFormat || "bare";
      if (!CONTAINER_FORMATS.includes(containerFormat)) throw invalidArgument("image.container_format", `must be one of ${CONTAINER_FORMATS.join(", ")}`);
      if (i.checksum && !SHA256_HEX.test(i.checksum)) throw invalidArgument("image.checksum", "must be a SHA-256 in lower-case hex");
      if (i.sizeBytes < 0) throw invalidArgument("image.size_bytes", "must not be negative");
      const image = {
        id,
        name: v.name("image.name", i.name),
        projectId: ctx.principal.projectId,
        status: req.upload ? ("queued" as const) : ("active" as const),
        visibility: visibility as "public" | "private",
        diskFormat,
        containerFormat,
        sizeBytes: i.sizeBytes,
        checksum: i.checksum,
        minDiskGb: v.intRange("image.min_disk_gb", i.minDiskGb, 0, 65536),
        minRamMb: v.intRange("image.min_ram_mb", i.minRamMb, 0, 4194304),
        properties: v.metadata("image.properties", i.properties),
      };
      try {
        await insertImage(pool, image);
      } catch (err) {
        if (isDuplicateKey(err)) throw alreadyExists("image", id);
        throw err;
      }
      const stored = await getImage(pool, id, undefined);
      return { image: imageToProto(stored!) };
    }),
    getImage: unary(deps, "GetImage", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const image = await getImage(pool, id, scope(ctx));
      if (!image) throw notFound("image", id);
      return { image: imageToProto(image) };
    }),
    listImages: unary(deps, "ListImages", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      const cur = v.decodePageToken(
        req.pageToken,
        (x): x is { t: string; id: string } => typeof (x as { t?: unknown })?.t === "string" && typeof (x as { id?: unknown }).id === "string",
      );
      const rows = await listImages(pool, { projectId: scope(ctx), after: cur ? { createdAt: new Date(cur.t), id: cur.id } : undefined, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        images: page.map(imageToProto),
        nextPageToken: rows.length > limit && last ? v.encodePageToken({ t: last.createdAt.toISOString(), id: last.id }) : "",
      };
    }),
    deleteImage: unary(deps, "DeleteImage", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const image = await getImage(pool, id, scope(ctx));
      if (!image) throw notFound("image", id);
      if (!isAdmin(ctx) && image.projectId !== ctx.principal.projectId) throw permissionDenied("only the owner or an admin may delete an image");
      if (await deleteImage(pool, id)) dropBytes(image);
      return {};
    }),
    uploadImageData: clientStream(deps, "UploadImageData", upload),
    downloadImageData: serverStream(deps, "DownloadImageData", async (req, ctx, call) => {
      const id = v.uuid("id", req.id);
      const image = await getImage(pool, id, scope(ctx));
      if (!image) throw notFound("image", id);
      if (image.status !== "active" || !image.hasData) {
        throw failedPrecondition(
          image.status === "active" ? `image ${id} was registered without data` : `image ${id} is ${image.status}; it has no data yet`,
          "IMAGE_HAS_NO_DATA",
          { image: id, status: image.status },
        );
      }
      call.write({ part: { $case: "image", image: imageToProto(image) } });
      for await (const chunk of bytes.read(id, image.checksum, ctx.signal)) {
        if (!call.write({ part: { $case: "chunk", chunk: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) } })) {
          await Promise.race([once(call, "drain"), once(ctx.signal, "abort")]);
          if (ctx.signal.aborted) return;
        }
      }
    }),
  };
}
