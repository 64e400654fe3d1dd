import type { ComputeNode, ResourceRequest } from "../domain/types.js";

/** A host as the scheduler sees it: the compute node plus liveness, in memory. */
export type HostState = ComputeNode & {
  /** Reported within service_down_time when the view was loaded. */
  readonly up: boolean;
};

/** What is being placed. */
export interface RequestSpec {
  readonly instanceUuid: string;
  readonly resources: ResourceRequest;
  /** Hosts this request already failed on (reschedules skip them). */
  readonly ignoreHosts: ReadonlySet<string>;
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
  return h.vcpus * h.cpuAllocationRatio - h.vcpusUsed;
}
export function freeMemoryMb(h: HostState): number {
  return (h.memoryMb - h.reservedMemoryMb) * h.ramAllocationRatio - h.memoryMbUsed;
}
export function freeDiskGb(h: HostState): number {
  return h.diskGb * h.diskAllocationRatio - h.diskGbUsed;
}
