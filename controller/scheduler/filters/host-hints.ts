import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/** Scheduler hint `same_host` (Nova's SameHostFilter): only hosts of the named servers. */
export const sameHostFilter: HostFilter = {
  name: "same_host",
  check(host, spec) {
    if (!spec.sameHost) return PASS;
    return spec.sameHost.has(host.host) ? PASS : { pass: false, reason: "none of the same_host servers runs here" };
  },
};

/** Scheduler hint `different_host` (Nova's DifferentHostFilter): none of the named servers' hosts. */
export const differentHostFilter: HostFilter = {
  name: "different_host",
  check(host, spec) {
    if (!spec.differentHost?.has(host.host)) return PASS;
    return { pass: false, reason: "a different_host server runs here" };
  },
};
