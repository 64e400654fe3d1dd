import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";
import { matchExtraSpec } from "./extra-specs-ops.js";

const SCOPE = "aggregate_instance_extra_specs:";

/**
 * Passes hosts whose aggregates' metadata satisfy the flavor's
 * `aggregate_instance_extra_specs:<key>` extra specs (Nova's
 * AggregateInstanceExtraSpecsFilter): some aggregate of the host has `key`
 * with a value that matches, by Nova's operators ("<in> ssd", ">= 2", …;
 * see extra-specs-ops.ts), one of its comma-separated values, or the whole
 * value. Extra specs without this scope are not this filter's (unlike
 * Nova's legacy unscoped matching, which trips over other components' keys).
 */
export const aggregateExtraSpecsFilter: HostFilter = {
  name: "aggregate_extra_specs",
  check(host, spec) {
    for (const [k, want] of Object.entries(spec.flavorExtraSpecs ?? {})) {
      if (!k.startsWith(SCOPE)) continue;
      const key = k.slice(SCOPE.length);
      const values = host.aggregates.map((a) => a.metadata[key]).filter((v): v is string => v !== undefined);
      const have = values.flatMap((v) => [v, ...v.split(",").map((x) => x.trim()).filter(Boolean)]);
      if (!have.some((v) => matchExtraSpec(v, want))) {
        return { pass: false, reason: values.length ? `aggregate metadata ${key} is ${values.join(" / ")}, not ${want}` : `no aggregate with ${key}=${want}` };
      }
    }
    return PASS;
  },
};
