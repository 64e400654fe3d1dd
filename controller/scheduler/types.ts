import type { ResourceRequest } from "../domain/types.js";
import type { GroupPolicy, HostState } from "../domain/placement.js";
import { effectiveZone } from "../domain/placement.js";

/** The server group a request belongs to, with where its other members are. */
export interface GroupView {
  readonly id: string;
  readonly policy: GroupPolicy;
  /** anti-affinity: members allowed on one host (Nova's max_server_per_host rule; default 1). */
  readonly maxServerPerHost: number;
  /** Hosts of the other members, with how many members each holds. */
  readonly memberHosts: ReadonlyMap<string, number>;
}

/** What is being placed. */
export interface RequestSpec {
  readonly instanceUuid: string;
  readonly resources: ResourceRequest;
  /** Hosts this request already failed on (reschedules skip them). */
  readonly ignoreHosts: ReadonlySet<string>;
  /** Requested availability zone; "" for any. */
  readonly availabilityZone?: string;
  /** The flavor's extra specs (`aggregate_instance_extra_specs:<key>` must match aggregate metadata). */
  readonly flavorExtraSpecs?: Readonly<Record<string, string>>;
  /** The image's properties (`architecture`, `hypervisor_type` must match the host). */
  readonly imageProperties?: Readonly<Record<string, string>>;
  /** The server group, if the request names one (scheduler hint `group`). */
  readonly group?: GroupView;
  /** Hint `same_host`: hosts of these servers only. */
  readonly sameHost?: ReadonlySet<string>;
  /** Hint `different_host`: none of these servers' hosts. */
  readonly differentHost?: ReadonlySet<string>;
}

export type FilterResult = { readonly pass: true } | { readonly pass: false; readonly reason: string };

/** A filter: one small question about one host. */
export interface HostFilter {
  readonly name: string;
  check(host: HostState, spec: RequestSpec): FilterResult;
}

/**
 * A weigher returns a raw number per host; the pipeline normalises it to
 * 0..1 across the candidates and multiplies it by `multiplier` (positive:
 * prefer high values, i.e. spread; negative: pack).
 */
export interface HostWeigher {
  readonly name: string;
  readonly multiplier: number;
  weigh(host: HostState, spec: RequestSpec): number;
}

export const PASS: FilterResult = { pass: true };

export function freeVcpus(h: HostState): number {
  return (h.vcpus - h.reservedVcpus) * h.cpuAllocationRatio - h.vcpusUsed;
}
export function freeMemoryMb(h: HostState): number {
  return (h.memoryMb - h.reservedMemoryMb) * h.ramAllocationRatio - h.memoryMbUsed;
}
export function freeDiskGb(h: HostState): number {
  return (h.diskGb - h.reservedDiskGb) * h.diskAllocationRatio - h.diskGbUsed;
}

/** `items` in a random order (Fisher–Yates, drawing from `random`, numbers in [0, 1)). */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export function zoneOf(h: HostState): string {
  return effectiveZone(h.aggregates, h.zone);
}
