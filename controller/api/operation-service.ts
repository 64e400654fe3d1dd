import type { OperationServiceServer } from "../../gen/novamesh/compute/v1/operation.js";
import { OperationState as PbOperationState } from "../../gen/novamesh/compute/v1/operation.js";
import { visible } from "../conductor/act.js";
import type { ConductorContext } from "../conductor/context.js";
import { liveMigration } from "../conductor/flows/index.js";
import type { InstanceAction, OperationState, Principal } from "../domain/types.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { getAction, listOperations } from "../store/actions.js";
import { fromEnum, operationToProto, parseOperationName } from "./convert.js";
import type { RpcDeps } from "./rpc.js";
import { isAdmin, unary } from "./rpc.js";
import * as v from "./validate.js";
import type { ChangeFeed } from "./watch.js";
import { viewerOf } from "./viewer.js";

/**
 * OperationService: Get, List, Wait and Cancel over the instance actions.
 * Wait is woken by the server change log (every step of an action changes
 * its server) and re-reads the operation at least every second.
 */
export function operationService(deps: RpcDeps, conductor: ConductorContext, feed: ChangeFeed): OperationServiceServer {
  const { pool } = deps;

  async function load(who: Principal, name: string): Promise<InstanceAction> {
    if (!name) throw invalidArgument("name", "is required");
    const parsed = parseOperationName(name);
    if (!parsed) throw invalidArgument("name", "must be servers/{server_id}/operations/{request_id}");
    await visible(pool, who, parsed.serverId);
    const op = await getAction(pool, parsed.serverId, parsed.requestId);
    if (!op) throw notFound("operation", name);
    return op;
  }

  return {
    getOperation: unary(deps, "GetOperation", async (req, ctx) => ({ operation: operationToProto(await load(ctx.principal, req.name), await viewerOf(pool, ctx)) })),

    listOperations: unary(deps, "ListOperations", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      const cursor = v.decodePageToken(req.pageToken, (x): x is { before: number } => typeof (x as { before?: unknown })?.before === "number");
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const serverId = req.serverId ? v.uuid("server_id", req.serverId) : undefined;
      if (serverId) await visible(pool, ctx.principal, serverId);
      const state = fromEnum(PbOperationState, "OPERATION_STATE_", req.state) as OperationState | null;
      if (req.state !== 0 && !state) throw invalidArgument("state", `unknown operation state ${req.state}`);
      const rows = await listOperations(pool, {
        projectId: req.allProjects || (isAdmin(ctx) && serverId) ? undefined : ctx.principal.projectId,
        instanceUuid: serverId,
        state: state ?? undefined,
        beforeId: cursor?.before,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const viewer = await viewerOf(pool, ctx);
      return {
        operations: page.map((o) => operationToProto(o, viewer)),
        nextPageToken: rows.length > limit ? v.encodePageToken({ before: page[page.length - 1]!.id }) : "",
      };
    }),

    waitOperation: unary(deps, "WaitOperation", async (req, ctx) => {
      const timeout = req.timeoutSeconds === 0 ? 60 : v.intRange("timeout_seconds", req.timeoutSeconds, 0, 600);
      const deadline = Date.now() + timeout * 1000;
      let op = await load(ctx.principal, req.name);
      while (!isDone(op) && Date.now() < deadline && !ctx.signal.aborted) {
        await feed.changed(Math.min(1000, deadline - Date.now()), ctx.signal);
        op = (await getAction(pool, op.instanceUuid, op.requestId)) ?? op;
      }
      return { operation: operationToProto(op, await viewerOf(pool, ctx)) };
    }, "public", true),

    cancelOperation: unary(deps, "CancelOperation", async (req, ctx) => {
      const op = await load(ctx.principal, req.name);
      if (isDone(op)) throw failedPrecondition(`operation ${req.name} is already ${op.state}`, "OPERATION_DONE", { state: op.state });
      // Only a live migration that is copying can stop half-way.
      if (!op.cancellable) throw failedPrecondition(`a ${op.action} operation cannot be cancelled now`, "NOT_CANCELLABLE", { action: op.action });
      return { operation: operationToProto(await liveMigration.cancel(conductor, ctx.principal, op.instanceUuid, op.requestId), await viewerOf(pool, ctx)) };
    }),
  };
}

function isDone(op: InstanceAction): boolean {
  return op.state === "SUCCEEDED" || op.state === "FAILED" || op.state === "CANCELLED";
}
