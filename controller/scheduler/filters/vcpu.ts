import type { HostFilter } from "../types.js";
import { PASS, freeVcpus } from "../types.js";

/** Passes hosts with enough vCPUs under their CPU allocation ratio. */
export const vcpuFilter: HostFilter = {
  name: "vcpu",
  check(host, spec) {
    const free = freeVcpus(host);
    return free >= spec.resources.vcpus ? PASS : { pass: false, reason: `needs ${spec.resources.vcpus} vCPUs, ${Math.floor(free)} free` };
  },
};
