import type { HostFilter } from "../types.js";
import { PASS } from "../types.js";

/**
 * Hard affinity (Nova's ServerGroupAffinityFilter): once members of the
 * group are placed, only their host passes.
 */
export const affinityFilter: HostFilter = {
  name: "affinity",
  check(host, spec) {
    const g = spec.group;
    if (!g || g.policy !== "affinity" || g.memberHosts.size === 0) return PASS;
    return g.memberHosts.has(host.host) ? PASS : { pass: false, reason: `group ${g.id} (affinity) runs on ${[...g.memberHosts.keys()].join(", ")}` };
  },
};

/**
 * Hard anti-affinity (Nova's ServerGroupAntiAffinityFilter): a host that
 * holds `max_server_per_host` members of the group already fails.
 */
export const antiAffinityFilter: HostFilter = {
  name: "anti_affinity",
  check(host, spec) {
    const g = spec.group;
    if (!g || g.policy !== "anti-affinity") return PASS;
    const n = g.memberHosts.get(host.host) ?? 0;
    return n < g.maxServerPerHost ? PASS : { pass: false, reason: `holds ${n} of group ${g.id} (anti-affinity, max ${g.maxServerPerHost} per host)` };
  },
};
