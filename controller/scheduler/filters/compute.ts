import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/** Passes hosts whose service is up and enabled (Nova's ComputeFilter). */
export const computeFilter: HostFilter = {
  name: "compute",
  check(host) {
    if (!host.enabled) return { pass: false, reason: "service disabled" };
    if (!host.up) return { pass: false, reason: "service down" };
    return PASS;
  },
};
