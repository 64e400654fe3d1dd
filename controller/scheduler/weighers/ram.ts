import type { HostWeigher } from "../types.js";
import { freeMemoryMb } from "../types.js";

/** Prefers hosts with more free memory (spread); a negative multiplier packs (Nova's RAMWeigher). */
export function ramWeigher(multiplier = 1.0): HostWeigher {
  return { name: "ram", multiplier, weigh: (host) => freeMemoryMb(host) };
}
