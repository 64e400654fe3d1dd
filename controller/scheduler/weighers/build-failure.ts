import type { HostWeigher } from "../types.js";

/**
 * Hosts that recently failed builds weigh less (Nova's
 * BuildFailureWeigher; the count resets on the host's next successful
 * build). Nova's default multiplier, 1e6, lets it outweigh everything else.
 */
export function buildFailureWeigher(multiplier = 1_000_000): HostWeigher {
  return { name: "build_failure", multiplier, weigh: (host) => -host.failedBuilds };
}
