import { aggregatesByHost } from "../store/aggregates.js";
import { effectiveZone } from "../domain/placement.js";
import type { HostServiceServer } from "../../gen/novamesh/compute/v1/host.js";
import type { CreateTokenRequest, IdentityServiceServer } from "../../gen/novamesh/compute/v1/identity.js";
import { alreadyExists, invalidArgument, notFound } from "../errors.js";
import { getNodeByHost, listNodes, setNodeEnabled } from "../store/nodes.js";
import { HostTakenError, createToken, deleteToken, listTokens } from "../store/tokens.js";
import { listPools } from "../store/volume-pools.js";
import { volumePoolToProto } from "./volume-pools.js";
import { hypervisorToProto, roleFromProto, serviceToProto, tokenToProto } from "./convert.js";
import type { RpcDeps } from "./rpc.js";
import { requireRole, unary } from "./rpc.js";
import * as v from "./validate.js";

export function hostService(deps: RpcDeps, opts: { serviceDownTimeSeconds: number }): HostServiceServer {
  const { pool } = deps;
  const dt = opts.serviceDownTimeSeconds;
  const setEnabled = async (hostName: string, enabled: boolean, reason: string) => {
    if (!hostName) throw invalidArgument("host", "is required");
    if (!(await setNodeEnabled(pool, hostName, enabled, reason))) throw notFound("host", hostName);
    return { service: serviceToProto((await getNodeByHost(pool, hostName))!, dt) };
  };
  return {
    listServices: unary(deps, "ListServices", async (req, ctx) => {
      requireRole(ctx, "admin");
      const nodes = await listNodes(pool, { host: req.host || undefined });
      return { services: nodes.map((n) => serviceToProto(n, dt)) };
    }),
    listHypervisors: unary(deps, "ListHypervisors", async (req, ctx) => {
      requireRole(ctx, "admin");
      const [all, aggregates] = await Promise.all([listNodes(pool), aggregatesByHost(pool)]);
      const nodes = all.filter((n) => !req.hostname || n.host.includes(req.hostname));
      return { hypervisors: nodes.map((n) => hypervisorToProto(n, dt, effectiveZone(aggregates.get(n.host), n.zone))) };
    }),
    enableService: unary(deps, "EnableService", async (req, ctx) => {
      requireRole(ctx, "admin");
      return setEnabled(req.host, true, "");
    }),
    disableService: unary(deps, "DisableService", async (req, ctx) => {
      requireRole(ctx, "admin");
      return setEnabled(req.host, false, v.text("reason", req.reason));
    }),
    listVolumePools: unary(deps, "ListVolumePools", async (req, ctx) => {
      requireRole(ctx, "admin");
      const [pools, aggregates] = await Promise.all([listPools(pool, { host: req.host || undefined }), aggregatesByHost(pool)]);
      return { pools: pools.map((p) => volumePoolToProto(p, dt, effectiveZone(aggregates.get(p.host), p.hostZone))) };
    }),
  };
}

/** The longest a token may live: 3650 days. */
export const MAX_TOKEN_LIFETIME_MS = 3650 * 86400_000;

/** CreateToken's expiration, checked: a future `expire_time` or a positive `ttl`, at most MAX_TOKEN_LIFETIME_MS ahead. */
function tokenExpiry(e: CreateTokenRequest["expiration"]): { expireTime?: Date; ttlMs?: number } {
  if (!e) return {};
  if (e.$case === "expireTime") {
    const t = e.expireTime.getTime();
    if (!Number.isFinite(t)) throw invalidArgument("expire_time", "is not a valid time");
    if (t <= Date.now()) throw invalidArgument("expire_time", `must be in the future (got ${e.expireTime.toISOString()})`);
    if (t - Date.now() > MAX_TOKEN_LIFETIME_MS) throw invalidArgument("expire_time", "must be at most 3650 days ahead");
    return { expireTime: e.expireTime };
  }
  const { seconds, nanos } = e.ttl;
  if (!Number.isFinite(seconds) || !Number.isInteger(nanos) || nanos <= -1e9 || nanos >= 1e9 || (seconds > 0 && nanos < 0) || (seconds < 0 && nanos > 0)) {
    throw invalidArgument("ttl", "is not a valid duration");
  }
  const ms = seconds * 1000 + nanos / 1e6;
  if (!(ms > 0)) throw invalidArgument("ttl", "must be positive");
  if (ms > MAX_TOKEN_LIFETIME_MS) throw invalidArgument("ttl", "must be at most 3650 days");
  return { ttlMs: ms };
}

export function identityService(deps: RpcDeps): IdentityServiceServer {
  const { pool } = deps;
  return {
    createToken: unary(deps, "CreateToken", async (req, ctx) => {
      requireRole(ctx, "admin");
      const projectId = v.projectId("project_id", req.projectId);
      const role = roleFromProto(req.role);
      if (!role) throw invalidArgument("role", "must be ROLE_ADMIN, ROLE_MEMBER or ROLE_AGENT");
      if (role !== "agent" && req.host) throw invalidArgument("host", "only an agent token speaks for a host");
      const host = role === "agent" && req.host ? v.hostName("host", req.host) : null;
      const description = v.text("description", req.description);
      const expiry = tokenExpiry(req.expiration);
      const { token, secret } = await createToken(pool, { projectId, role, description, host, ...expiry }).catch((err: unknown) => {
        throw err instanceof HostTakenError ? alreadyExists("agent token for host", err.host) : err;
      });
      ctx.log.info(
        { token: token.id, role, token_project: projectId, expire_time: token.expireTime, ...(role === "agent" ? { host: host ?? "(enrolment)" } : {}) },
        "token issued",
      );
      return { token: tokenToProto(token), secret };
    }),
    listTokens: unary(deps, "ListTokens", async (req, ctx) => {
      requireRole(ctx, "admin");
      return { tokens: (await listTokens(pool, { projectId: req.projectId || undefined })).map(tokenToProto) };
    }),
    deleteToken: unary(deps, "DeleteToken", async (req, ctx) => {
      requireRole(ctx, "admin");
      const id = v.uuid("id", req.id);
      if (!(await deleteToken(pool, id))) throw notFound("token", id);
      return {};
    }),
  };
}
