/** AuditService: the audit trail (admins). Records are written by the rpc wrappers (audit-log.ts). */
import type { AuditServiceServer } from "../../gen/novamesh/compute/v1/audit.js";
import { invalidArgument } from "../errors.js";
import { listAuditRecords } from "../store/audit.js";
import type { RpcDeps } from "./rpc.js";
import { requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

export function auditService(deps: RpcDeps): AuditServiceServer {
  const { pool } = deps;
  return {
    listAuditRecords: unary(deps, "ListAuditRecords", async (req, ctx) => {
      requireRole(ctx, "admin");
      const limit = v.pageSize(req.pageSize);
      const cursor = v.decodePageToken(req.pageToken, (x): x is { before: number } => typeof (x as { before?: unknown })?.before === "number");
      const projectId = req.projectId ? v.projectId("project_id", req.projectId) : undefined;
      const tokenId = req.tokenId ? v.uuid("token_id", req.tokenId) : undefined;
      const method = req.method ? v.text("method", req.method, 128) : undefined;
      if (req.startTime && req.endTime && req.endTime <= req.startTime) throw invalidArgument("end_time", "must be after start_time");
      const rows = await listAuditRecords(pool, {
        projectId,
        tokenId,
        method,
        start: req.startTime,
        end: req.endTime,
        beforeId: cursor?.before,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        records: page.map((r) => ({
          id: String(r.id),
          time: r.time,
          tokenId: r.tokenId,
          projectId: r.projectId,
          role: r.role,
          method: r.method,
          target: r.target,
          requestId: r.requestId,
          code: r.code,
          reason: r.reason,
        })),
        nextPageToken: rows.length > limit ? v.encodePageToken({ before: page[page.length - 1]!.id }) : "",
      };
    }),
  };
}
