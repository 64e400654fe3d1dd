/**
 * Builds the scheduler's RequestSpec from what a server asked for: its
 * zone, flavor extra specs, image properties, server group (with where the
 * other members run) and same_host / different_host hints. Pure: the
 * conductor loads the group and the hinted servers' hosts.
 */
import type { GroupPolicy } from "../domain/placement.js";
import type { ResourceRequest } from "../domain/types.js";
import type { RequestSpec } from "./types.js";

/** What a placement is for. */
export interface PlacementRequest {
  readonly instanceUuid: string;
  readonly resources: ResourceRequest;
  readonly ignoreHosts: Iterable<string>;
  readonly availabilityZone: string;
  readonly flavorExtraSpecs: Readonly<Record<string, string>>;
  readonly imageProperties: Readonly<Record<string, string>>;
}

/** Where the request's group members and hinted servers are, as loaded. */
export interface PlacementSurroundings {
  readonly group: { readonly id: string; readonly policy: GroupPolicy; readonly maxServerPerHost: number } | null;
  /** Hosts of the group's other members, with how many each holds. */
  readonly memberHosts: ReadonlyMap<string, number>;
  /** Hint `same_host`: the hosts of those servers (undefined: no hint). */
  readonly sameHost?: ReadonlySet<string>;
  /** Hint `different_host`: the hosts of those servers (undefined: no hint). */
  readonly differentHost?: ReadonlySet<string>;
}

/** The RequestSpec of `r` among `s`. */
export function requestSpecOf(r: PlacementRequest, s: PlacementSurroundings): RequestSpec {
  return {
    instanceUuid: r.instanceUuid,
    resources: r.resources,
    ignoreHosts: new Set(r.ignoreHosts),
    availabilityZone: r.availabilityZone,
    flavorExtraSpecs: r.flavorExtraSpecs,
    imageProperties: r.imageProperties,
    ...(s.group ? { group: { ...s.group, memberHosts: s.memberHosts } } : {}),
    ...(s.sameHost ? { sameHost: s.sameHost } : {}),
    ...(s.differentHost ? { differentHost: s.differentHost } : {}),
  };
}
