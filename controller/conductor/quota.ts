/**
 * The quota check every request that adds to a project's usage makes, in
 * its own transaction and before it writes: take the project's quota lock,
 * count what the project holds, refuse what would go past a limit. The
 * lock is held to the commit, so requests of one project through any number
 * of controllers are checked one after another and never overshoot.
 */
import { status } from "@grpc/grpc-js";
import type { QuotaExcess, QuotaRequest, QuotaResource, Usage } from "../domain/quota.js";
import { excessMessage, excesses } from "../domain/quota.js";
import { ApiError } from "../errors.js";
import type { Queryable } from "../store/db.js";
import { groupMembers, lockQuota, projectLimits, projectUsage } from "../store/quotas.js";

/** What a per-server or per-group resource holds already, for the check of its own limit. */
export interface QuotaScope {
  /** The group the request adds members to (server_group_members). */
  readonly serverGroupId?: string | null;
  /** Metadata items the server keeps beside those requested (metadata_items). */
  readonly keptMetadataItems?: number;
  /** The request field to name when a resource is exceeded, by resource. */
  readonly fields?: Partial<Record<QuotaResource, string>>;
}

/** Resources whose limit is per server or per group, not per project. */
const SCOPED: readonly QuotaResource[] = ["server_group_members", "metadata_items"];

/**
 * Checks that `request` fits the project's limits, holding its quota lock
 * to the end of the caller's transaction. Refuses with RESOURCE_EXHAUSTED
 * QUOTA_EXCEEDED and a QuotaFailure violation per exceeded resource.
 */
export async function checkQuota(q: Queryable, projectId: string, request: QuotaRequest, scope: QuotaScope = {}): Promise<void> {
  const wanted = (Object.keys(request) as QuotaResource[]).filter((r) => (request[r] ?? 0) > 0);
  if (wanted.length === 0) return;
  await lockQuota(q, projectId);
  const { limits } = await projectLimits(q, projectId);
  const counted = wanted.filter((r) => !SCOPED.includes(r) && limits[r] !== -1);
  const usage: Partial<Record<QuotaResource, Usage>> = counted.length ? await projectUsage(q, projectId, counted) : {};
  const grouped = Boolean(request.server_group_members && scope.serverGroupId);
  usage.server_group_members = { inUse: grouped ? await groupMembers(q, scope.serverGroupId!) : 0, reserved: 0 };
  usage.metadata_items = { inUse: scope.keptMetadataItems ?? 0, reserved: 0 };
  const over = excesses(limits, usage, { ...request, server_group_members: grouped ? request.server_group_members : 0 });
  if (over.length) throw quotaExceeded(projectId, over, scope.fields ?? {});
}

export function quotaExceeded(projectId: string, over: readonly QuotaExcess[], fields: Partial<Record<QuotaResource, string>>): ApiError {
  const first = over[0]!;
  return new ApiError(status.RESOURCE_EXHAUSTED, excessMessage(projectId, over), {
    reason: "QUOTA_EXCEEDED",
    metadata: { resource: first.resource, limit: String(first.limit), in_use: String(first.used), requested: String(first.requested) },
    quotaViolations: over.map((e) => ({
      subject: `project:${projectId}/${e.resource}`,
      description: `${e.resource}: requested ${e.requested}, ${e.used} of ${e.limit} used`,
    })),
    fieldViolations: over.flatMap((e) => (fields[e.resource] ? [{ field: fields[e.resource]!, description: `over the ${e.resource} limit of ${e.limit}` }] : [])),
  });
}
