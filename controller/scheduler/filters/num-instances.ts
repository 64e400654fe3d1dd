import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/** Passes hosts with fewer than `max` instances (Nova's NumInstancesFilter, max_instances_per_host). */
export function numInstancesFilter(max: number): HostFilter {
  return {
    name: "num_instances",
    check(host) {
      return host.runningVms < max ? PASS : { pass: false, reason: `holds ${host.runningVms} instances, the most a host takes is ${max}` };
    },
  };
}
