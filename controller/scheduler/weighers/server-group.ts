import type { HostWeigher } from "../types.js";

/** Soft affinity (Nova's ServerGroupSoftAffinityWeigher): more members of the group on a host weigh more. */
export function softAffinityWeigher(multiplier = 1.0): HostWeigher {
  return {
    name: "soft_affinity",
    multiplier,
    weigh: (host, spec) => (spec.group?.policy === "soft-affinity" ? (spec.group.memberHosts.get(host.host) ?? 0) : 0),
  };
}

/** Soft anti-affinity (Nova's ServerGroupSoftAntiAffinityWeigher): more members of the group on a host weigh less. */
export function softAntiAffinityWeigher(multiplier = 1.0): HostWeigher {
  return {
    name: "soft_anti_affinity",
    multiplier,
    weigh: (host, spec) => (spec.group?.policy === "soft-anti-affinity" ? -(spec.group.memberHosts.get(host.host) ?? 0) : 0),
  };
}
