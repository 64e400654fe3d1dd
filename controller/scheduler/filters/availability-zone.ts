import type { HostFilter } from "../types.js";
import { PASS, zoneOf } from "../types.js";

/** Passes hosts in the requested availability zone (Nova's AvailabilityZoneFilter). */
export const availabilityZoneFilter: HostFilter = {
  name: "availability_zone",
  check(host, spec) {
    if (!spec.availabilityZone) return PASS;
    const zone = zoneOf(host);
    return zone === spec.availabilityZone ? PASS : { pass: false, reason: `in zone "${zone}", not "${spec.availabilityZone}"` };
  },
};
