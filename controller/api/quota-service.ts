/**
 * QuotaService: the defaults, each project's own limits, and a project's
 * usage (counted as the checks count it, store/quotas.ts).
 */
import { LimitSource, type Limit, type QuotaServiceServer } from "../../gen/novamesh/compute/v1/quota.js";
import { QUOTA_RESOURCES, UNLIMITED, isQuotaResource, type QuotaResource } from "../domain/quota.js";
import { invalidArgument, permissionDenied } from "../errors.js";
import type { Queryable } from "../store/db.js";
import { withTx } from "../store/db.js";
import { defaultLimits, projectLimits, projectUsage, resetProjectLimits, setDefaultLimits, setProjectLimits } from "../store/quotas.js";
import type { RpcDeps } from "./rpc.js";
import { isAdmin, requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

/** A resource's name, one of QUOTA_RESOURCES. */
function resourceName(field: string, r: string): QuotaResource {
  if (!isQuotaResource(r)) throw invalidArgument(field, `no such resource (resources: ${QUOTA_RESOURCES.join(", ")})`);
  return r;
}

/** Limits given by resource name: each known, each -1 or more. */
function limitsOf(field: string, m: Record<string, number>): Partial<Record<QuotaResource, number>> {
  const out: Partial<Record<QuotaResource, number>> = {};
  for (const [r, n] of Object.entries(m)) {
    const f = `${field}[${r}]`;
    const resource = resourceName(f, r);
    if (!Number.isSafeInteger(n) || n < UNLIMITED) throw invalidArgument(f, "must be -1 (no limit) or a limit of 0 or more");
    out[resource] = n;
  }
  if (Object.keys(out).length === 0) throw invalidArgument(field, "names no resource");
  return out;
}

/** A project's limits with its usage, in the API's order. */
async function limitsWithUsage(q: Queryable, projectId: string): Promise<Limit[]> {
  const [{ limits, own }, usage] = await Promise.all([projectLimits(q, projectId), projectUsage(q, projectId)]);
  return QUOTA_RESOURCES.map((resource) => ({
    resource,
    limit: limits[resource],
    inUse: usage[resource]?.inUse ?? 0,
    reserved: usage[resource]?.reserved ?? 0,
    source: own.has(resource) ? LimitSource.LIMIT_SOURCE_PROJECT : LimitSource.LIMIT_SOURCE_DEFAULT,
  }));
}

async function defaults(q: Queryable): Promise<Limit[]> {
  const d = await defaultLimits(q);
  return QUOTA_RESOURCES.map((resource) => ({ resource, limit: d[resource], inUse: 0, reserved: 0, source: LimitSource.LIMIT_SOURCE_DEFAULT }));
}

export function quotaService(deps: RpcDeps): QuotaServiceServer {
  const { pool } = deps;
  return {
    getLimits: unary(deps, "GetLimits", async (req, ctx) => {
      const projectId = req.projectId ? v.projectId("project_id", req.projectId) : ctx.principal.projectId;
      if (!isAdmin(ctx) && projectId !== ctx.principal.projectId) throw permissionDenied("only an admin may read another project's limits");
      return { projectId, limits: await limitsWithUsage(pool, projectId) };
    }),
    setProjectLimits: unary(deps, "SetProjectLimits", async (req, ctx) => {
      requireRole(ctx, "admin");
      const projectId = v.projectId("project_id", req.projectId);
      const limits = limitsOf("limits", req.limits);
      ctx.audit.target = projectId;
      await setProjectLimits(pool, projectId, limits);
      return { projectId, limits: await limitsWithUsage(pool, projectId) };
    }),
    resetProjectLimits: unary(deps, "ResetProjectLimits", async (req, ctx) => {
      requireRole(ctx, "admin");
      const projectId = v.projectId("project_id", req.projectId);
      const resources = req.resources.map((r, i) => resourceName(`resources[${i}]`, r));
      ctx.audit.target = projectId;
      await resetProjectLimits(pool, projectId, resources);
      return { projectId, limits: await limitsWithUsage(pool, projectId) };
    }),
    getDefaultLimits: unary(deps, "GetDefaultLimits", async () => ({ limits: await defaults(pool) })),
    setDefaultLimits: unary(deps, "SetDefaultLimits", async (req, ctx) => {
      requireRole(ctx, "admin");
      const limits = limitsOf("limits", req.limits);
      return withTx(pool, async (conn) => {
        await setDefaultLimits(conn, limits);
        return { limits: await defaults(conn) };
      });
    }),
  };
}
