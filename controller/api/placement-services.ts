/** Placement APIs: server groups, host aggregates and zones (admin), and the scheduler's dry run (admin). */
import type { AggregateServiceServer, Aggregate as PbAggregate } from "../../gen/novamesh/compute/v1/aggregate.js";
import type { SchedulerServiceServer } from "../../gen/novamesh/compute/v1/scheduler.js";
import {
  ServerGroupPolicy,
  type ServerGroup as PbServerGroup,
  type ServerGroupServiceServer,
} from "../../gen/novamesh/compute/v1/server_group.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import type { HostCache } from "../scheduler/host-cache.js";
import type { Pipeline } from "../scheduler/pipeline.js";
import { requestSpecOf } from "../scheduler/request-spec.js";
import { loadSurroundings } from "../store/placement.js";
import { GROUP_POLICIES, resourcesOf, type GroupPolicy } from "../domain/placement.js";
import {
  addAggregateHost,
  availabilityZones,
  createAggregate,
  deleteAggregate,
  getAggregate,
  listAggregates,
  removeAggregateHost,
  setAggregateMetadata,
  zoneConflicts,
  type Aggregate,
} from "../store/aggregates.js";
import { getFlavor, getImage } from "../store/catalog.js";
import { DEADLOCK_RETRIES, isDuplicateKey, withTx, type PoolConnection } from "../store/db.js";
import { getNodeByHost } from "../store/nodes.js";
import { checkQuota } from "../conductor/quota.js";
import { createServerGroup, deleteServerGroup, getServerGroup, listServerGroups, type ServerGroup } from "../store/server-groups.js";
import { fromEnum, toEnum } from "./convert.js";
import { placementOf } from "./placement-args.js";
import type { RpcDeps } from "./rpc.js";
import { isAdmin, requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

function groupToProto(g: ServerGroup): PbServerGroup {
  return {
    id: g.id,
    name: g.name,
    projectId: g.projectId,
    policy: toEnum(ServerGroupPolicy, "SERVER_GROUP_POLICY_", g.policy.toUpperCase().replace(/-/g, "_")),
    maxServerPerHost: g.maxServerPerHost,
    members: [...g.members],
    createTime: g.createdAt,
  };
}

export function serverGroupService(deps: RpcDeps): ServerGroupServiceServer {
  const { pool } = deps;
  const visible = async (ctx: Parameters<Parameters<typeof unary>[2]>[1], id: string) => {
    const g = await getServerGroup(pool, v.uuid("id", id));
    if (!g || (!isAdmin(ctx) && g.projectId !== ctx.principal.projectId)) throw notFound("server_group", id);
    return g;
  };
  return {
    createServerGroup: unary(deps, "CreateServerGroup", async (req, ctx) => {
      const g = req.serverGroup;
      if (!g) throw invalidArgument("server_group", "is required");
      const name = v.name("server_group.name", g.name);
      const literal = fromEnum(ServerGroupPolicy, "SERVER_GROUP_POLICY_", g.policy)?.toLowerCase().replace(/_/g, "-");
      if (!literal || !GROUP_POLICIES.includes(literal as GroupPolicy)) {
        throw invalidArgument("server_group.policy", `must be one of ${GROUP_POLICIES.join(", ")}`);
      }
      const policy = literal as GroupPolicy;
      if (g.maxServerPerHost !== 0 && policy !== "anti-affinity") {
        throw invalidArgument("server_group.max_server_per_host", "only applies to the anti-affinity policy");
      }
      const maxServerPerHost = g.maxServerPerHost === 0 ? 1 : v.intRange("server_group.max_server_per_host", g.maxServerPerHost, 1, 1000);
      const projectId = ctx.principal.projectId;
      const created = await withTx(
        pool,
        async (conn) => {
          await checkQuota(conn, projectId, { server_groups: 1 });
          return createServerGroup(conn, { name, projectId, policy, maxServerPerHost });
        },
        { deadlockRetries: DEADLOCK_RETRIES },
      );
      return { serverGroup: groupToProto(created) };
    }),
    getServerGroup: unary(deps, "GetServerGroup", async (req, ctx) => ({ serverGroup: groupToProto(await visible(ctx, req.id)) })),
    listServerGroups: unary(deps, "ListServerGroups", async (req, ctx) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const groups = await listServerGroups(pool, req.allProjects ? undefined : ctx.principal.projectId);
      return { serverGroups: groups.map(groupToProto) };
    }),
    deleteServerGroup: unary(deps, "DeleteServerGroup", async (req, ctx) => {
      const g = await visible(ctx, req.id);
      if (!(await deleteServerGroup(pool, g.id))) throw notFound("server_group", req.id);
      return {};
    }),
  };
}

function aggregateToProto(a: Aggregate): PbAggregate {
  return { id: a.id, name: a.name, metadata: { ...a.metadata }, hosts: [...a.hosts], createTime: a.createdAt, updateTime: a.updatedAt };
}

/** Aggregate metadata: keys 1–255 characters, values at most 255. */
function aggregateMetadata(field: string, m: Record<string, string>): Record<string, string> {
  const entries = Object.entries(m);
  if (entries.length > 128) throw invalidArgument(field, "at most 128 keys");
  for (const [k, val] of entries) {
    if (k.length < 1 || k.length > 255 || /[\u0000-\u001f]/.test(k)) throw invalidArgument(`${field}.${k.slice(0, 32)}`, "keys are 1–255 printable characters");
    if (val.length > 255) throw invalidArgument(`${field}.${k}`, "values are at most 255 characters");
  }
  return Object.fromEntries(entries);
}

export function aggregateService(deps: RpcDeps): AggregateServiceServer {
  const { pool } = deps;
  /** Runs `fn` on the aggregate's locked row, in a transaction; NOT_FOUND when there is none. */
  const locked = async <T>(id: string, fn: (conn: PoolConnection, a: Aggregate) => Promise<T>): Promise<T> => {
    if (!id) throw invalidArgument("id", "is required");
    return withTx(pool, async (conn) => {
      const a = await getAggregate(conn, id, { lock: true });
      if (!a) throw notFound("aggregate", id);
      return fn(conn, a);
    });
  };
  /** The aggregate after a change (the store's change note refreshes the scheduler's view). */
  const changed = async (id: string) => {
    const a = await getAggregate(pool, id);
    if (!a) throw notFound("aggregate", id);
    return { aggregate: aggregateToProto(a) };
  };
  /** Refuses to put `host` in `zone` while another of its aggregates puts it in another zone. */
  const checkZone = async (conn: PoolConnection, a: Aggregate, host: string, zone: string | undefined) => {
    if (!zone) return;
    const clash = await zoneConflicts(conn, host, zone, a.id);
    if (clash.length) {
      throw failedPrecondition(
        `host ${host} is in availability zone "${clash[0]!.zone}" through aggregate ${clash[0]!.name}; a host is in one zone, not also "${zone}"`,
        "AVAILABILITY_ZONE_CONFLICT",
        { host, zone, conflicting_aggregate: clash[0]!.name },
      );
    }
  };
  return {
    createAggregate: unary(deps, "CreateAggregate", async (req, ctx) => {
      requireRole(ctx, "admin");
      const name = v.name("name", req.name);
      const metadata = Object.fromEntries(Object.entries(aggregateMetadata("metadata", req.metadata)).filter(([, val]) => val !== ""));
      if (metadata.availability_zone) metadata.availability_zone = v.name("metadata.availability_zone", metadata.availability_zone);
      try {
        const a = await createAggregate(pool, { name, metadata });
        return { aggregate: aggregateToProto(a) };
      } catch (err) {
        if (isDuplicateKey(err)) throw alreadyExists("aggregate", name);
        throw err;
      }
    }),
    getAggregate: unary(deps, "GetAggregate", async (req, ctx) => {
      requireRole(ctx, "admin");
      if (!req.id) throw invalidArgument("id", "is required");
      const a = await getAggregate(pool, req.id);
      if (!a) throw notFound("aggregate", req.id);
      return { aggregate: aggregateToProto(a) };
    }),
    listAggregates: unary(deps, "ListAggregates", async (_req, ctx) => {
      requireRole(ctx, "admin");
      return { aggregates: (await listAggregates(pool)).map(aggregateToProto) };
    }),
    deleteAggregate: unary(deps, "DeleteAggregate", async (req, ctx) => {
      requireRole(ctx, "admin");
      await locked(req.id, async (conn, a) => {
        if (a.hosts.length) throw failedPrecondition(`aggregate ${a.name} still has hosts: ${a.hosts.join(", ")}`, "AGGREGATE_HAS_HOSTS", { aggregate: a.id });
        await deleteAggregate(conn, a.id);
      });
      return {};
    }),
    addAggregateHost: unary(deps, "AddAggregateHost", async (req, ctx) => {
      requireRole(ctx, "admin");
      if (!req.host) throw invalidArgument("host", "is required");
      const id = await locked(req.id, async (conn, a) => {
        if (!(await getNodeByHost(conn, req.host))) throw notFound("host", req.host);
        await checkZone(conn, a, req.host, a.metadata.availability_zone);
        if (!(await addAggregateHost(conn, a.id, req.host))) throw alreadyExists("aggregate host", `${req.host} in ${a.name}`);
        return a.id;
      });
      return changed(id);
    }),
    removeAggregateHost: unary(deps, "RemoveAggregateHost", async (req, ctx) => {
      requireRole(ctx, "admin");
      if (!req.host) throw invalidArgument("host", "is required");
      const id = await locked(req.id, async (conn, a) => {
        if (!(await removeAggregateHost(conn, a.id, req.host))) throw notFound("aggregate host", `${req.host} in ${a.name}`);
        return a.id;
      });
      return changed(id);
    }),
    setAggregateMetadata: unary(deps, "SetAggregateMetadata", async (req, ctx) => {
      requireRole(ctx, "admin");
      const patch = aggregateMetadata("metadata", req.metadata);
      if (patch.availability_zone) patch.availability_zone = v.name("metadata.availability_zone", patch.availability_zone);
      const id = await locked(req.id, async (conn, a) => {
        const next: Record<string, string> = { ...a.metadata };
        for (const [k, val] of Object.entries(patch)) {
          if (val === "") delete next[k];
          else next[k] = val;
        }
        if (Object.keys(next).length > 128) throw invalidArgument("metadata", "an aggregate holds at most 128 keys");
        if (next.availability_zone !== a.metadata.availability_zone) {
          for (const host of a.hosts) await checkZone(conn, a, host, next.availability_zone);
        }
        await setAggregateMetadata(conn, a.id, next);
        return a.id;
      });
      return changed(id);
    }),
    listAvailabilityZones: unary(deps, "ListAvailabilityZones", async (_req, ctx) => {
      // Everyone may see the zones' names (to create servers in them); only admins their hosts.
      const zones = await availabilityZones(pool);
      return { zones: [...zones.entries()].map(([name, hosts]) => ({ name, hosts: isAdmin(ctx) ? hosts : [] })) };
    }),
  };
}

export function schedulerService(deps: RpcDeps, scheduler: { pipeline: Pipeline; hosts: HostCache }): SchedulerServiceServer {
  const { pool } = deps;
  return {
    explainPlacement: unary(deps, "ExplainPlacement", async (req, ctx) => {
      requireRole(ctx, "admin");
      if (!req.flavorId) throw invalidArgument("flavor_id", "is required");
      const flavor = await getFlavor(pool, req.flavorId);
      if (!flavor) throw notFound("flavor", req.flavorId);
      const imageId = v.uuid("image_id", req.imageId);
      const image = await getImage(pool, imageId, undefined);
      if (!image) throw notFound("image", imageId);
      const placement = await placementOf(pool, ctx, req.availabilityZone, req.schedulerHints);
      const instanceUuid = "00000000-0000-0000-0000-000000000000";
      const spec = requestSpecOf(
        {
          instanceUuid,
          resources: resourcesOf(flavor),
          ignoreHosts: [],
          flavorExtraSpecs: flavor.extraSpecs,
          imageProperties: image.properties,
          availabilityZone: placement.availabilityZone,
        },
        await loadSurroundings(pool, { instanceUuid, serverGroupId: placement.serverGroupId, schedulerHints: placement.schedulerHints }),
      );
      // A fresh view: the dry run answers for the database as it is now.
      const ex = scheduler.pipeline.explain(await scheduler.hosts.get(true), spec);
      return {
        hostsConsidered: ex.placement.considered,
        rejections: { ...ex.placement.rejections },
        hosts: ex.hosts.map((h) => ({
          host: h.host,
          passed: h.passed,
          filters: h.filters.map((f) => ({ filter: f.filter, pass: f.pass, reason: f.reason })),
          weights: { ...h.weights },
          score: h.score,
          rank: h.rank,
        })),
        chosenHost: ex.placement.candidates[0]?.host ?? "",
        algorithm: scheduler.pipeline.options.algorithm,
      };
    }),
  };
}
