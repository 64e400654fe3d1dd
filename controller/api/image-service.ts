import { randomUUID } from "node:crypto";
import type { ServerReadableStream } from "@grpc/grpc-js";
import type { ImageServiceServer, UploadImageDataRequest, UploadImageDataResponse } from "../../gen/novamesh/compute/v1/image.js";
import { ImageVisibility } from "../../gen/novamesh/compute/v1/image.js";
import type { Image } from "../domain/types.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { deleteImage, getImage, insertImage, listImages } from "../store/catalog.js";
import { isDuplicateKey } from "../store/db.js";
import type { ImageBytes } from "../store/image-bytes.js";
import { imageToProto } from "./convert.js";
import { SHA256_HEX, storeImageData, uploadChunks, writeChunks } from "./image-data.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { clientStream, isAdmin, serverStream, unary } from "./rpc.js";
import * as v from "./validate.js";
import { decoded } from "./decode.js";

const DISK_FORMATS = ["qcow2", "raw", "iso", "vmdk", "vdi", "vhd", "vhdx", "ami", "aki", "ari"];
const CONTAINER_FORMATS = ["bare", "ovf", "ova", "ami", "aki", "ari"];

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
    const incoming = call[Symbol.asyncIterator]() as AsyncIterator<UploadImageDataRequest>;
    // A message that could not be decoded is INVALID_ARGUMENT naming the request.
    const messages = { next: async () => {
      const n = await incoming.next();
      return n.done ? n : { done: false as const, value: decoded(n.value) };
    } };
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
    const expected = { sizeBytes: h.sizeBytes || image.sizeBytes, checksum: h.checksum || image.checksum };
    const chunkOf = (m: UploadImageDataRequest) => (m.part?.$case === "chunk" ? m.part.chunk : undefined);
    await storeImageData(deps, bytes, id, expected, uploadChunks(messages, chunkOf, expected, call, ctx.signal, `image ${id}`), ctx.signal);
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
      await writeChunks(call, bytes.read(id, image.checksum, ctx.signal), (chunk) => ({ part: { $case: "chunk" as const, chunk } }), ctx.signal);
    }),
  };
}
