/**
 * A server's own attributes: its name, description, metadata and tags.
 * Changed at once in one transaction, with no operation (nothing on its
 * host changes; the guest keeps the host name it was given), in any state
 * but deleted; a locked server only by an admin, as its actions are.
 * WatchServers sees the change (the update records it).
 */
import { DEADLOCK_RETRIES, withTx } from "../../store/db.js";
import type { Instance, Principal } from "../../domain/types.js";
import { MAX_SERVER_METADATA_ITEMS } from "../../domain/quota.js";
import { invalidArgument, notFound } from "../../errors.js";
import type { InstancePatch } from "../../store/instances.js";
import { refuseLocked, visible } from "../act.js";
import type { ConductorContext } from "../context.js";
import { Tx } from "../context.js";

/** Tags a server may have (Nova's). */
export const MAX_TAGS = 50;

/** Changes server `uuid` by `change` (given the server, locked): its patch. */
async function changeServer(ctx: ConductorContext, who: Principal, uuid: string, change: (tx: Tx, inst: Instance) => Promise<InstancePatch> | InstancePatch): Promise<Instance> {
  return withTx(
    ctx.pool,
    async (conn) => {
      const tx = new Tx(conn, ctx);
      const inst = await visible(conn, who, uuid, true);
      if (inst.deletedAt) throw notFound("server", uuid);
      refuseLocked(inst, who);
      return tx.update(uuid, await change(tx, inst));
    },
    { deadlockRetries: DEADLOCK_RETRIES },
  );
}

/** Renames a server and/or sets its description. */
export function updateServer(ctx: ConductorContext, who: Principal, uuid: string, patch: { name?: string; description?: string }): Promise<Instance> {
  // The host name stays: a server made before host names were kept has its own written down now, from its old name.
  return changeServer(ctx, who, uuid, (_tx, inst) => ({ ...patch, ...(patch.name !== undefined ? { hostname: inst.hostname } : {}) }));
}

/**
 * Sets metadata items (or, with `replace`, all of them). The items the
 * server ends with are checked against its project's metadata_items quota
 * (the items it keeps count as used, the new keys as requested).
 */
export function updateMetadata(ctx: ConductorContext, who: Principal, uuid: string, items: Record<string, string>, replace: boolean): Promise<Instance> {
  return changeServer(ctx, who, uuid, async (tx, inst) => {
    const kept = replace ? {} : inst.metadata;
    const added = Object.keys(items).filter((k) => !(k in kept)).length;
    const total = Object.keys(kept).length + added;
    if (total > MAX_SERVER_METADATA_ITEMS) throw invalidArgument("metadata", `a server may have at most ${MAX_SERVER_METADATA_ITEMS} items (it would have ${total})`);
    await tx.store.checkQuota(inst.projectId, { metadata_items: added }, { keptMetadataItems: Object.keys(kept).length, fields: { metadata_items: "metadata" } });
    return { metadata: { ...kept, ...items } };
  });
}

/** Deletes metadata items; a key the server does not have deletes nothing (NOT_FOUND). */
export function deleteMetadata(ctx: ConductorContext, who: Principal, uuid: string, keys: readonly string[]): Promise<Instance> {
  return changeServer(ctx, who, uuid, (_tx, inst) => {
    const missing = keys.find((k) => !(k in inst.metadata));
    if (missing !== undefined) throw notFound("metadata_item", missing);
    return { metadata: Object.fromEntries(Object.entries(inst.metadata).filter(([k]) => !keys.includes(k))) };
  });
}

/** Replaces a server's tags. */
export function setTags(ctx: ConductorContext, who: Principal, uuid: string, tags: readonly string[]): Promise<Instance> {
  return changeServer(ctx, who, uuid, () => ({ tags: [...tags] }));
}

/** Adds a tag (once); a server that has MAX_TAGS already takes none more. */
export function addTag(ctx: ConductorContext, who: Principal, uuid: string, tag: string): Promise<Instance> {
  return changeServer(ctx, who, uuid, (_tx, inst) => {
    if (inst.tags.includes(tag)) return {};
    if (inst.tags.length >= MAX_TAGS) throw invalidArgument("tag", `the server has ${MAX_TAGS} tags already, the most it may have`);
    return { tags: [...inst.tags, tag] };
  });
}

/** Removes a tag; one the server does not have is NOT_FOUND. */
export function deleteTag(ctx: ConductorContext, who: Principal, uuid: string, tag: string): Promise<Instance> {
  return changeServer(ctx, who, uuid, (_tx, inst) => {
    if (!inst.tags.includes(tag)) throw notFound("tag", tag);
    return { tags: inst.tags.filter((t) => t !== tag) };
  });
}
