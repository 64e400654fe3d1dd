/**
 * The ServerService calls that change a server's own attributes — name,
 * description, metadata, tags — at once, without an operation
 * (conductor/flows/attributes.ts), and the validation of tags, which
 * ListServers' tag filters share.
 */
import type { ServerServiceServer } from "../../gen/novamesh/compute/v1/server.js";
import * as attributes from "../conductor/flows/attributes.js";
import type { ConductorContext } from "../conductor/context.js";
import type { Instance } from "../domain/types.js";
import { MAX_SERVER_METADATA_ITEMS } from "../domain/quota.js";
import { invalidArgument } from "../errors.js";
import { serverToProto } from "./convert.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { unary } from "./rpc.js";
import { networksOf } from "./server-networks.js";
import * as v from "./validate.js";
import { viewerOf } from "./viewer.js";

/** A tag as Nova takes one: 1–60 characters, no '/' or ',' (they would split a filter). */
export function tag(field: string, t: string): string {
  if (!t || [...t].length > 60) throw invalidArgument(field, "a tag is 1-60 characters");
  if (/[/,]/.test(t) || /\p{Cc}/u.test(t)) throw invalidArgument(field, "a tag may not hold '/', ',' or control characters");
  return t;
}

/** A list of tags, each once, in the order given; at most MAX_TAGS where `max`. */
export function tags(field: string, ts: readonly string[], max = attributes.MAX_TAGS): string[] {
  const out = [...new Set(ts.map((t, i) => tag(`${field}[${i}]`, t)))];
  if (out.length > max) throw invalidArgument(field, `at most ${max} tags`);
  return out;
}

type Handlers = Pick<ServerServiceServer, "updateServer" | "updateServerMetadata" | "deleteServerMetadata" | "setServerTags" | "addServerTag" | "deleteServerTag">;

export function serverAttributeHandlers(deps: RpcDeps, conductor: ConductorContext): Handlers {
  const { pool } = deps;
  /** The server after a change, as the caller may see it. */
  const answer = async (ctx: CallContext, inst: Instance) => {
    const nets = await networksOf(pool, [inst.uuid]);
    return { server: serverToProto(inst, await viewerOf(pool, ctx), nets.get(inst.uuid)) };
  };
  const who = (ctx: CallContext) => ctx.principal;
  return {
    updateServer: unary(deps, "UpdateServer", async (req, ctx) => {
      const s = req.server;
      if (!s) throw invalidArgument("server", "is required");
      const id = v.uuid("server.id", s.id);
      // ts-proto gives a FieldMask as its paths.
      const paths = req.updateMask ?? [];
      if (paths.length === 0) throw invalidArgument("update_mask", 'names no field (fields: "name", "description")');
      const patch: { name?: string; description?: string } = {};
      for (const [i, p] of paths.entries()) {
        if (p === "name") patch.name = v.name("server.name", s.name);
        else if (p === "description") patch.description = v.text("server.description", s.description);
        else throw invalidArgument(`update_mask.paths[${i}]`, `"${p}" cannot be changed here (fields: "name", "description")`);
      }
      return answer(ctx, await attributes.updateServer(conductor, who(ctx), id, patch));
    }),
    updateServerMetadata: unary(deps, "UpdateServerMetadata", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      // How many items a server may have is its project's metadata_items quota (within a hard cap).
      const items = v.metadata("metadata", req.metadata, MAX_SERVER_METADATA_ITEMS);
      if (Object.keys(items).length === 0 && !req.replace) throw invalidArgument("metadata", "names no item to set");
      return answer(ctx, await attributes.updateMetadata(conductor, who(ctx), id, items, req.replace));
    }),
    deleteServerMetadata: unary(deps, "DeleteServerMetadata", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      if (req.keys.length === 0) throw invalidArgument("keys", "names no key");
      const keys = req.keys.map((k, i) => v.metadataKey(`keys[${i}]`, k));
      return answer(ctx, await attributes.deleteMetadata(conductor, who(ctx), id, keys));
    }),
    setServerTags: unary(deps, "SetServerTags", async (req, ctx) =>
      answer(ctx, await attributes.setTags(conductor, who(ctx), v.uuid("id", req.id), tags("tags", req.tags))),
    ),
    addServerTag: unary(deps, "AddServerTag", async (req, ctx) => answer(ctx, await attributes.addTag(conductor, who(ctx), v.uuid("id", req.id), tag("tag", req.tag)))),
    deleteServerTag: unary(deps, "DeleteServerTag", async (req, ctx) =>
      answer(ctx, await attributes.deleteTag(conductor, who(ctx), v.uuid("id", req.id), tag("tag", req.tag))),
    ),
  };
}
