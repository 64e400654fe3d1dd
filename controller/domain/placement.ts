/**
 * Placement vocabulary shared by the scheduler, the conductor and the store:
 * hosts as placement sees them, server group policies, zones, and what a
 * flavor asks of a host.
 */
import type { ComputeNode, ResourceRequest } from "./types.js";

/** A host aggregate as placement sees it. */
export interface AggregateView {
  readonly name: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** A host as placement sees it: the compute node plus liveness and grouping, in memory. */
export type HostState = ComputeNode & {
  /** Reported within service_down_time when the view was loaded. */
  readonly up: boolean;
  /** Aggregates the host is in. */
  readonly aggregates: readonly AggregateView[];
};

/** Server group policies (Nova's). */
export const GROUP_POLICIES = ["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"] as const;
export type GroupPolicy = (typeof GROUP_POLICIES)[number];
/** The policies that filter hosts (the soft ones only weigh). */
export const HARD_POLICIES: readonly GroupPolicy[] = ["affinity", "anti-affinity"];

/** A host's availability zone: its aggregates' `availability_zone` metadata, else the zone its agent reports. */
export function effectiveZone(aggregates: readonly AggregateView[] | undefined, reportedZone: string): string {
  return aggregates?.find((a) => a.metadata.availability_zone)?.metadata.availability_zone ?? reportedZone;
}

/** What a flavor asks of a host. */
export function resourcesOf(f: { readonly vcpus: number; readonly ramMb: number; readonly diskGb: number }): ResourceRequest {
  return { vcpus: f.vcpus, memoryMb: f.ramMb, diskGb: f.diskGb };
}

/** What a server with `flavor` asks of a host: one booted from a volume takes no local disk (Nova's volume-backed request spec). */
export function claimOf(f: { readonly vcpus: number; readonly ramMb: number; readonly diskGb: number }, server: { readonly bootsFromVolume: boolean }): ResourceRequest {
  return resourcesOf(server.bootsFromVolume ? { ...f, diskGb: 0 } : f);
}
