import type { HostWeigher } from "../types.js";

/** Fewer instances weigh more with a positive multiplier (spread), less with a negative one (pack) (Nova's NumInstancesWeigher). */
export function numInstancesWeigher(multiplier = 1.0): HostWeigher {
  return { name: "num_instances", multiplier, weigh: (host) => -host.runningVms };
}
