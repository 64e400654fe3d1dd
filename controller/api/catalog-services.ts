import { randomUUID } from "node:crypto";
import type { FlavorServiceServer } from "../../gen/novamesh/compute/v1/flavor.js";
import type { ImageServiceServer } from "../../gen/novamesh/compute/v1/image.js";
import { ImageVisibility } from "../../gen/novamesh/compute/v1/image.js";
import type { Flavor } from "../domain/types.js";
import { alreadyExists, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { deleteFlavor, deleteImage, getFlavor, getImage, insertFlavor, insertImage, listFlavors, listImages } from "../store/catalog.js";
import { isDuplicateKey } from "../store/db.js";
import { flavorToProto, imageToProto } from "./convert.js";
import type { RpcDeps } from "./rpc.js";
import { isAdmin, requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

const DISK_FORMATS = ["qcow2", "raw", "iso", "vmdk", "vdi", "ami"];
const CONTAINER_FORMATS = ["bare", "ovf", "ova", "ami", "aki", "ari"];

export function flavorService(deps: RpcDeps): FlavorServiceServer {
  const { pool } = deps;
  return {
    createFlavor: unary(deps, "CreateFlavor", async (req, ctx) => {
      requireRole(ctx, "admin");
      const f = req.flavor;
      if (!f) throw invalidArgument("flavor", "is required");
      const id = f.id ? f.id : randomUUID();
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(id)) throw invalidArgument("flavor.id", "must be 1-64 letters, digits, '.', '-' or '_'");
      const flavor: Flavor = {
        id,
        name: v.name("flavor.name", f.name),
        vcpus: v.intRange("flavor.vcpus", f.vcpus, 1, 1024),
        ramMb: v.intRange("flavor.ram_mb", f.ramMb, 1, 4194304),
        diskGb: v.intRange("flavor.disk_gb", f.diskGb, 0, 65536),
        description: v.text("flavor.description", f.description, 65535),
        extraSpecs: v.metadata("flavor.extra_specs", f.extraSpecs),
      };
      try {
        await insertFlavor(pool, flavor);
      } catch (err) {
        if (isDuplicateKey(err)) throw alreadyExists("flavor", `${flavor.id} / ${flavor.name}`);
        throw err;
      }
      return { flavor: flavorToProto(flavor) };
    }),
    getFlavor: unary(deps, "GetFlavor", async (req) => {
      if (!req.id) throw invalidArgument("id", "is required");
      const f = await getFlavor(pool, req.id);
      if (!f) throw notFound("flavor", req.id);
      return { flavor: flavorToProto(f) };
    }),
    listFlavors: unary(deps, "ListFlavors", async (req) => {
      const limit = v.pageSize(req.pageSize);
      const after = v.decodePageToken(
        req.pageToken,
        (x): x is { ramMb: number; id: string } => typeof (x as { ramMb?: unknown })?.ramMb === "number" && typeof (x as { id?: unknown }).id === "string",
      );
      const rows = await listFlavors(pool, { after, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        flavors: page.map(flavorToProto),
        nextPageToken: rows.length > limit && last ? v.encodePageToken({ ramMb: last.ramMb, id: last.id }) : "",
      };
    }),
    deleteFlavor: unary(deps, "DeleteFlavor", async (req, ctx) => {
      requireRole(ctx, "admin");
      if (!req.id) throw invalidArgument("id", "is required");
      const f = await getFlavor(pool, req.id);
      if (!f || !(await deleteFlavor(pool, f.id))) throw notFound("flavor", req.id);
      return {};
    }),
  };
}

export function imageService(deps: RpcDeps): ImageServiceServer {
  const { pool } = deps;
  const scope = (ctx: Parameters<typeof isAdmin>[0]) => (isAdmin(ctx) ? undefined : ctx.principal.projectId);
  return {
    registerImage: unary(deps, "RegisterImage", async (req, ctx) => {
      const i = req.image;
      if (!i) throw invalidArgument("image", "is required");
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
      if (i.checksum && !/^[0-9a-f]{64}$/.test(i.checksum)) throw invalidArgument("image.checksum", "must be a SHA-256 in lower-case hex");
      if (i.sizeBytes < 0) throw invalidArgument("image.size_bytes", "must not be negative");
      const image = {
        id,
        name: v.name("image.name", i.name),
        projectId: ctx.principal.projectId,
        status: "active" as const,
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
      await deleteImage(pool, id);
      return {};
    }),
  };
}
