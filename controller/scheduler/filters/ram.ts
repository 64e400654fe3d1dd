import type { HostFilter } from "../types.js";
import { PASS, freeMemoryMb } from "../types.js";

/** Passes hosts with enough memory under their RAM allocation ratio and reservation. */
export const ramFilter: HostFilter = {
  name: "ram",
  check(host, spec) {
    const free = freeMemoryMb(host);
    return free >= spec.resources.memoryMb ? PASS : { pass: false, reason: `needs ${spec.resources.memoryMb} MiB, ${Math.floor(free)} free` };
  },
};
