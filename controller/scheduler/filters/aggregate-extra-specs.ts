import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

const SCOPE = "aggregate_instance_extra_specs:";

/**
 * Passes hosts whose aggregates' metadata satisfy the flavor's
 * `aggregate_instance_extra_specs:<key>=<value>` extra specs (Nova's
 * AggregateInstanceExtraSpecsFilter): some aggregate of the host has `key`
 * with that value, or one of the comma-separated values it lists.
 */
export const aggregateExtraSpecsFilter: HostFilter = {
  name: "aggregate_extra_specs",
  check(host, spec) {
    for (const [k, want] of Object.entries(spec.flavorExtraSpecs ?? {})) {
      if (!k.startsWith(SCOPE)) continue;
      const key = k.slice(SCOPE.length);
      const have = host.aggregates.flatMap((a) => (a.metadata[key] ?? "").split(",").map((v) => v.trim()).filter(Boolean));
      if (!have.includes(want.trim())) {
        return { pass: false, reason: have.length ? `aggregate metadata ${key} is ${have.join(",")}, not ${want}` : `no aggregate with ${key}=${want}` };
      }
    }
    return PASS;
  },
};
