/** Volume hosts' pools: what an agent reports, checked, and what ListVolumePools shows. */
import type { VolumePool as PbReportedPool } from "../../gen/novamesh/agent/v1/agent.js";
import { ServiceState, ServiceStatus, type VolumePool as PbVolumePool } from "../../gen/novamesh/compute/v1/host.js";
import { isUp } from "../domain/service.js";
import { MAX_POOLS_PER_HOST, POOL_NAME, type ReportedPool, type VolumePool } from "../domain/volume.js";
import { invalidArgument } from "../errors.js";

/** The pools of a hello or report (`field`: "hello.volume_pools"), or INVALID_ARGUMENT naming the bad one. */
export function reportedPools(field: string, pools: readonly PbReportedPool[]): ReportedPool[] {
  if (pools.length > MAX_POOLS_PER_HOST) throw invalidArgument(field, `at most ${MAX_POOLS_PER_HOST} pools (got ${pools.length})`);
  const seen = new Set<string>();
  return pools.map((p, i) => {
    const at = `${field}[${i}]`;
    if (!POOL_NAME.test(p.name)) throw invalidArgument(`${at}.name`, "must be 1-64 letters, digits, '.', '-' or '_'");
    if (seen.has(p.name)) throw invalidArgument(`${at}.name`, `pool "${p.name}" is named twice`);
    seen.add(p.name);
    if (!/^[a-z0-9-]{1,32}$/.test(p.backend)) throw invalidArgument(`${at}.backend`, "must be 1-32 lowercase letters, digits or '-'");
    for (const [name, value] of [
      ["total_bytes", p.totalBytes],
      ["free_bytes", p.freeBytes],
      ["provisioned_bytes", p.provisionedBytes],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 0) throw invalidArgument(`${at}.${name}`, "must be a whole number of bytes, at least 0");
    }
    if (p.freeBytes > p.totalBytes) throw invalidArgument(`${at}.free_bytes`, "must not exceed total_bytes");
    return { name: p.name, backend: p.backend, totalBytes: p.totalBytes, freeBytes: p.freeBytes, provisionedBytes: p.provisionedBytes };
  });
}

export function volumePoolToProto(p: VolumePool, downTimeSeconds: number, zone: string): PbVolumePool {
  return {
    host: p.host,
    name: p.name,
    backend: p.backend,
    state: isUp(p, downTimeSeconds) ? ServiceState.SERVICE_STATE_UP : ServiceState.SERVICE_STATE_DOWN,
    status: p.enabled ? ServiceStatus.SERVICE_STATUS_ENABLED : ServiceStatus.SERVICE_STATUS_DISABLED,
    availabilityZone: zone,
    totalBytes: p.totalBytes,
    freeBytes: p.freeBytes,
    provisionedBytes: p.provisionedBytes,
    allocatedBytes: p.allocatedBytes,
    updateTime: p.updatedAt,
  };
}
