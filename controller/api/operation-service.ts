import { setTimeout as sleep } from "node:timers/promises";
import type { Operation, OperationServiceServer } from "../../gen/novamesh/compute/v1/operation.js";
import { OperationState as PbOperationState } from "../../gen/novamesh/compute/v1/operation.js";
import { visible } from "../conductor/act.js";
import type { ConductorContext } from "../conductor/context.js";
import { liveMigration } from "../conductor/flows/index.js";
import type { InstanceAction, OperationState, Principal } from "../domain/types.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import type { VolumeOperation } from "../domain/volume.js";
import { getAction, listOperations } from "../store/actions.js";
import { getVolumeAction, listVolumeActions } from "../store/volume-actions.js";
import { getVolume } from "../store/volumes.js";
import { fromEnum, operationToProto, parseOperationName, volumeOperationToProto } from "./convert.js";
import type { Viewer } from "./viewer.js";
import type { RpcDeps } from "./rpc.js";
import { isAdmin, unary } from "./rpc.js";
import * as v from "./validate.js";
import type { ChangeFeed } from "./watch.js";
import { viewerOf } from "./viewer.js";

/**
 * OperationService: Get, List, Wait and Cancel over the instance actions
 * and the volume actions. Wait is woken by the server change log (every
 * step of a server's action changes its server) and re-reads the operation
 * at least every second; a volume's operation is re-read every 200 ms.
 */
export function operationService(deps: RpcDeps, conductor: ConductorContext, feed: ChangeFeed): OperationServiceServer {
  const { pool } = deps;

  /** A server's operation, or a volume's. */
  type Loaded = { kind: "server"; op: InstanceAction } | { kind: "volume"; op: VolumeOperation };

  async function load(who: Principal, name: string): Promise<Loaded> {
    if (!name) throw invalidArgument("name", "is required");
    const parsed = parseOperationName(name);
    if (!parsed) throw invalidArgument("name", "must be servers/{server_id}/operations/{request_id} or volumes/{volume_id}/operations/{request_id}");
    if (parsed.collection === "volumes") {
      const op = await getVolumeAction(pool, parsed.id, parsed.requestId);
      // A deleted volume's operations stay readable by its project.
      if (!op || (who.role !== "admin" && op.projectId !== who.projectId)) throw notFound("operation", name);
      return { kind: "volume", op };
    }
    await visible(pool, who, parsed.id);
    const op = await getAction(pool, parsed.id, parsed.requestId);
    if (!op) throw notFound("operation", name);
    return { kind: "server", op };
  }

  async function reload(l: Loaded): Promise<Loaded> {
    if (l.kind === "volume") return { kind: "volume", op: (await getVolumeAction(pool, l.op.volumeId, l.op.requestId)) ?? l.op };
    return { kind: "server", op: (await getAction(pool, l.op.instanceUuid, l.op.requestId)) ?? l.op };
  }

  const toProto = (l: Loaded, viewer: Viewer) => (l.kind === "volume" ? volumeOperationToProto(l.op, viewer) : operationToProto(l.op, viewer));

  return {
    getOperation: unary(deps, "GetOperation", async (req, ctx) => ({ operation: toProto(await load(ctx.principal, req.name), await viewerOf(pool, ctx)) })),

    listOperations: unary(deps, "ListOperations", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      const cursor = v.decodePageToken(req.pageToken, (x): x is { before: number } => typeof (x as { before?: unknown })?.before === "number");
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const serverId = req.serverId ? v.uuid("server_id", req.serverId) : undefined;
      const volumeId = req.volumeId ? v.uuid("volume_id", req.volumeId) : undefined;
      if (serverId && volumeId) throw invalidArgument("volume_id", "give server_id or volume_id, not both");
      if (serverId) await visible(pool, ctx.principal, serverId);
      const state = fromEnum(PbOperationState, "OPERATION_STATE_", req.state) as OperationState | null;
      if (req.state !== 0 && !state) throw invalidArgument("state", `unknown operation state ${req.state}`);
      const viewer = await viewerOf(pool, ctx);
      /** One page of `rows` (fetched one over the limit), newest first, and the token of the next. */
      const pageOf = <R extends { id: number }>(rows: R[], toOperation: (r: R) => Operation) => {
        const page = rows.slice(0, limit);
        return { operations: page.map(toOperation), nextPageToken: rows.length > limit ? v.encodePageToken({ before: page[page.length - 1]!.id }) : "" };
      };
      if (volumeId) {
        // A deleted volume's operations stay listed for its project.
        const vol = await getVolume(pool, volumeId);
        if (!vol || (!isAdmin(ctx) && vol.projectId !== ctx.principal.projectId)) throw notFound("volume", volumeId);
        const rows = await listVolumeActions(pool, { volumeId, state: state ?? undefined, beforeId: cursor?.before, limit: limit + 1 });
        return pageOf(rows, (o) => volumeOperationToProto(o, viewer));
      }
      const rows = await listOperations(pool, {
        projectId: req.allProjects || (isAdmin(ctx) && serverId) ? undefined : ctx.principal.projectId,
        instanceUuid: serverId,
        state: state ?? undefined,
        beforeId: cursor?.before,
        limit: limit + 1,
      });
      return pageOf(rows, (o) => operationToProto(o, viewer));
    }),

    waitOperation: unary(deps, "WaitOperation", async (req, ctx) => {
      const timeout = req.timeoutSeconds === 0 ? 60 : v.intRange("timeout_seconds", req.timeoutSeconds, 0, 600);
      const deadline = Date.now() + timeout * 1000;
      let op = await load(ctx.principal, req.name);
      while (!isDone(op.op) && Date.now() < deadline && !ctx.signal.aborted) {
        // Server actions change their server (the change feed wakes the wait); volume actions are polled.
        if (op.kind === "server") await feed.changed(Math.min(1000, deadline - Date.now()), ctx.signal);
        else await sleep(Math.min(VOLUME_POLL_MS, deadline - Date.now()), undefined, { signal: ctx.signal }).catch(ignoreAbort);
        op = await reload(op);
      }
      return { operation: toProto(op, await viewerOf(pool, ctx)) };
    }, "public", true),

    cancelOperation: unary(deps, "CancelOperation", async (req, ctx) => {
      const { kind, op } = await load(ctx.principal, req.name);
      if (isDone(op)) throw failedPrecondition(`operation ${req.name} is already ${op.state}`, "OPERATION_DONE", { state: op.state });
      // Only a live migration that is copying can stop half-way; no volume operation can.
      if (kind === "volume" || !op.cancellable) throw failedPrecondition(`a ${op.action} operation cannot be cancelled now`, "NOT_CANCELLABLE", { action: op.action });
      return { operation: operationToProto(await liveMigration.cancel(conductor, ctx.principal, op.instanceUuid, op.requestId), await viewerOf(pool, ctx)) };
    }),
  };
}

/** How often a wait on a volume's operation looks again. */
const VOLUME_POLL_MS = 200;

/** A wait cut short by the call's end is no error. */
function ignoreAbort(err: unknown): void {
  if ((err as { name?: string })?.name !== "AbortError") throw err;
}

function isDone(op: { state: OperationState }): boolean {
  return op.state === "SUCCEEDED" || op.state === "FAILED" || op.state === "CANCELLED";
}
