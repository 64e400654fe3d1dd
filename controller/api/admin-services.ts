import { aggregatesByHost } from "../store/aggregates.js";
import { effectiveZone } from "../domain/placement.js";
import type { HostServiceServer } from "../../gen/novamesh/compute/v1/host.js";
import type { IdentityServiceServer } from "../../gen/novamesh/compute/v1/identity.js";
import { alreadyExists, invalidArgument, notFound } from "../errors.js";
import { getNodeByHost, listNodes, setNodeEnabled } from "../store/nodes.js";
import { HostTakenError, createToken, deleteToken, listTokens } from "../store/tokens.js";
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
  };
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
      const { token, secret } = await createToken(pool, { projectId, role, description, host }).catch((err: unknown) => {
        throw err instanceof HostTakenError ? alreadyExists("agent token for host", err.host) : err;
      });
      ctx.log.info({ token: token.id, role, token_project: projectId, ...(role === "agent" ? { host: host ?? "(enrolment)" } : {}) }, "token issued");
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
