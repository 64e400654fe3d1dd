import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/** Skips hosts this request already failed to build on (Nova's RetryFilter). */
export const retryFilter: HostFilter = {
  name: "retry",
  check(host, spec) {
    return spec.ignoreHosts.has(host.host) ? { pass: false, reason: "a previous attempt failed here" } : PASS;
  },
};
