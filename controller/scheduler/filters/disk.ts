import type { HostFilter } from "../types.js";
import { PASS, freeDiskGb } from "../types.js";

/** Passes hosts with enough local disk under their disk allocation ratio. */
export const diskFilter: HostFilter = {
  name: "disk",
  check(host, spec) {
    const free = freeDiskGb(host);
    return free >= spec.resources.diskGb ? PASS : { pass: false, reason: `needs ${spec.resources.diskGb} GiB, ${Math.floor(free)} free` };
  },
};
