import type { HostWeigher } from "../types.js";
import { freeVcpus } from "../types.js";

/** Prefers hosts with more free vCPUs (spread); a negative multiplier packs (Nova's CPUWeigher). */
export function vcpuWeigher(multiplier = 1.0): HostWeigher {
  return { name: "vcpu", multiplier, weigh: (host) => freeVcpus(host) };
}
