/** Hosts and requests for the scheduler's unit tests. */
import type { HostState } from "../domain/placement.js";
import type { RequestSpec } from "./types.js";

/** A 4 vCPU, 8 GiB, 100 GiB host, up and enabled, ratios 1, nothing reserved or used; fields can be overridden. */
export function host(name: string, over: Partial<HostState> = {}): HostState {
  return {
    id: `id-${name}`,
    host: name,
    version: "",
    freeMemoryMbReported: 0,
    freeDiskGbReported: 0,
    disabledReason: "",
    lastSeenAt: new Date(),
    migrationUri: "",
    zone: "nova",
    hypervisorType: "fake",
    enabled: true,
    up: true,
    vcpus: 4,
    memoryMb: 8192,
    diskGb: 100,
    vcpusUsed: 0,
    memoryMbUsed: 0,
    diskGbUsed: 0,
    runningVms: 0,
    cpuAllocationRatio: 1,
    ramAllocationRatio: 1,
    diskAllocationRatio: 1,
    reservedMemoryMb: 0,
    reservedVcpus: 0,
    reservedDiskGb: 0,
    architecture: "x86_64",
    failedBuilds: 0,
    aggregates: [],
    ...over,
  };
}

/** A request for these resources, skipping `ignore`; other fields can be added. */
export const spec = (vcpus: number, memoryMb: number, diskGb: number, ignore: string[] = [], extra: Partial<RequestSpec> = {}): RequestSpec => ({
  instanceUuid: "u",
  resources: { vcpus, memoryMb, diskGb },
  ignoreHosts: new Set(ignore),
  ...extra,
});

