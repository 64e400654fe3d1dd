import { randomUUID } from "node:crypto";
import type { FlavorServiceServer } from "../../gen/novamesh/compute/v1/flavor.js";
import type { Flavor } from "../domain/types.js";
import { alreadyExists, invalidArgument, notFound } from "../errors.js";
import { deleteFlavor, getFlavor, insertFlavor, listFlavors } from "../store/catalog.js";
import { isDuplicateKey } from "../store/db.js";
import { flavorToProto } from "./convert.js";
import type { RpcDeps } from "./rpc.js";
import { requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

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
        description: v.text("flavor.description", f.description, 65535, 65535),
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
