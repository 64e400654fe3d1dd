import type { HostWeigher } from "../types.js";
import { freeDiskGb } from "../types.js";

/** Prefers hosts with more free disk (spread); a negative multiplier packs (Nova's DiskWeigher). */
export function diskWeigher(multiplier = 1.0): HostWeigher {
  return { name: "disk", multiplier, weigh: (host) => freeDiskGb(host) };
}
