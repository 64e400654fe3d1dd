/** Checks CreateServer's (and ExplainPlacement's) placement arguments: zone and scheduler hints. */
import type { SchedulerHints as PbSchedulerHints } from "../../gen/novamesh/compute/v1/server.js";
import type { SchedulerHints } from "../domain/types.js";
import { invalidArgument, notFound } from "../errors.js";
import { availabilityZones } from "../store/aggregates.js";
import type { Queryable } from "../store/db.js";
import { getServerGroup } from "../store/server-groups.js";
import type { CallContext } from "./rpc.js";
import { isAdmin } from "./rpc.js";
import * as v from "./validate.js";

const MAX_HINT_SERVERS = 100;

/** The zone, group and hints of a request, validated; a group of another project is NOT_FOUND. */
export async function placementOf(
  q: Queryable,
  ctx: CallContext,
  zone: string,
  hints: PbSchedulerHints | undefined,
): Promise<{ availabilityZone: string; serverGroupId: string | null; schedulerHints: SchedulerHints }> {
  let availabilityZone = "";
  if (zone) {
    availabilityZone = v.name("availability_zone", zone);
    const zones = await availabilityZones(q);
    if (!zones.has(availabilityZone)) {
      throw invalidArgument("availability_zone", `no availability zone "${availabilityZone}" (zones: ${[...zones.keys()].join(", ") || "none"})`);
    }
  }
  let serverGroupId: string | null = null;
  if (hints?.group) {
    const id = v.uuid("scheduler_hints.group", hints.group);
    const g = await getServerGroup(q, id);
    if (!g || (!isAdmin(ctx) && g.projectId !== ctx.principal.projectId)) throw notFound("server_group", id);
    serverGroupId = g.id;
  }
  const servers = (field: string, ids: readonly string[] | undefined) => {
    if ((ids?.length ?? 0) > MAX_HINT_SERVERS) throw invalidArgument(field, `at most ${MAX_HINT_SERVERS} servers`);
    return [...new Set((ids ?? []).map((id, i) => v.uuid(`${field}[${i}]`, id)))];
  };
  return {
    availabilityZone,
    serverGroupId,
    schedulerHints: {
      sameHost: servers("scheduler_hints.same_host", hints?.sameHost),
      differentHost: servers("scheduler_hints.different_host", hints?.differentHost),
      // A member's hints name its own project's servers only; admins may name any.
      ...(isAdmin(ctx) ? {} : { projectId: ctx.principal.projectId }),
    },
  };
}
