/**
 * Builds the scheduler's RequestSpec from what a server asked for: its
 * zone, flavor extra specs, image properties, server group (with where the
 * other members run) and same_host / different_host hints.
 */
import type { ResourceRequest, SchedulerHints } from "../domain/types.js";
import type { Queryable } from "../store/db.js";
import { getServerGroup, groupMemberHosts, hostsOfServers } from "../store/server-groups.js";
import type { RequestSpec } from "./types.js";

/** What a placement is for. */
export interface PlacementRequest {
  readonly instanceUuid: string;
  readonly resources: ResourceRequest;
  readonly ignoreHosts: Iterable<string>;
  readonly availabilityZone: string;
  readonly flavorExtraSpecs: Readonly<Record<string, string>>;
  readonly imageProperties: Readonly<Record<string, string>>;
  readonly serverGroupId: string | null;
  readonly schedulerHints: SchedulerHints;
}

/**
 * The RequestSpec of `r`. The scheduler locks the group rows of a batch
 * before it builds the batch's specs (SchedulerWorker.scheduleBatch), so
 * members are placed one at a time and a hard policy holds across
 * concurrent schedulers. A group deleted meanwhile no longer applies.
 */
export async function buildRequestSpec(q: Queryable, r: PlacementRequest): Promise<RequestSpec> {
  const group = r.serverGroupId ? await getServerGroup(q, r.serverGroupId) : null;
  const [memberHosts, sameHost, differentHost] = await Promise.all([
    group ? groupMemberHosts(q, group.id, r.instanceUuid) : Promise.resolve(new Map<string, number>()),
    r.schedulerHints.sameHost.length ? hostsOfServers(q, r.schedulerHints.sameHost) : Promise.resolve(undefined),
    r.schedulerHints.differentHost.length ? hostsOfServers(q, r.schedulerHints.differentHost) : Promise.resolve(undefined),
  ]);
  return {
    instanceUuid: r.instanceUuid,
    resources: r.resources,
    ignoreHosts: new Set(r.ignoreHosts),
    availabilityZone: r.availabilityZone,
    flavorExtraSpecs: r.flavorExtraSpecs,
    imageProperties: r.imageProperties,
    ...(group ? { group: { id: group.id, policy: group.policy, maxServerPerHost: group.maxServerPerHost, memberHosts } } : {}),
    ...(sameHost ? { sameHost } : {}),
    ...(differentHost ? { differentHost } : {}),
  };
}
