/** SecurityGroupService (see proto/novamesh/network/v1/security_group.proto). */
import {
  Direction as PbDirection,
  type SecurityGroup as PbSecurityGroup,
  type SecurityGroupRule as PbRule,
  type SecurityGroupServiceServer,
} from "../../gen/novamesh/network/v1/security_group.js";
import type { RuleProtocol, SecurityGroup, SecurityGroupRule } from "../domain/network.js";
import { RULE_PROTOCOLS } from "../domain/network.js";
import { formatCidr, parseCidr } from "../domain/ipv4.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { withTx } from "../store/db.js";
import {
  createRule,
  createSecurityGroup,
  deleteRule,
  deleteSecurityGroup,
  ensureDefaultGroup,
  getRule,
  getSecurityGroup,
  listSecurityGroups,
  type NewRule,
} from "../store/security-groups.js";
import { fromEnum, toEnum } from "./convert.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { isAdmin, unary } from "./rpc.js";
import * as v from "./validate.js";

function ruleToProto(r: SecurityGroupRule): PbRule {
  return {
    id: r.id,
    securityGroupId: r.securityGroupId,
    direction: toEnum(PbDirection, "DIRECTION_", r.direction),
    protocol: r.protocol,
    portRangeMin: r.portMin ?? undefined,
    portRangeMax: r.portMax ?? undefined,
    remoteIpPrefix: r.remoteCidr,
    remoteGroupId: r.remoteGroupId ?? "",
    description: r.description,
  };
}

function groupToProto(g: SecurityGroup): PbSecurityGroup {
  return { id: g.id, name: g.name, projectId: g.projectId, description: g.description, rules: g.rules.map(ruleToProto), createTime: g.createdAt };
}

/** A rule of a request, checked: port ranges by protocol, one remote at most. */
function ruleOf(r: PbRule, sameProject: (groupId: string) => Promise<boolean>): Promise<NewRule> {
  return (async () => {
    const direction = fromEnum(PbDirection, "DIRECTION_", r.direction)?.toLowerCase();
    if (direction !== "ingress" && direction !== "egress") throw invalidArgument("rule.direction", "must be DIRECTION_INGRESS or DIRECTION_EGRESS");
    const protocol = r.protocol.toLowerCase();
    if (!(RULE_PROTOCOLS as readonly string[]).includes(protocol)) throw invalidArgument("rule.protocol", `must be one of tcp, udp, icmp, or empty for any`);
    const min = r.portRangeMin ?? null;
    const max = r.portRangeMax ?? null;
    if (protocol === "tcp" || protocol === "udp") {
      if (min === null && max !== null) throw invalidArgument("rule.port_range_min", "is required with port_range_max");
      if (min !== null && (min < 1 || min > 65535)) throw invalidArgument("rule.port_range_min", "must be 1-65535");
      if (max !== null && (max < (min ?? 1) || max > 65535)) throw invalidArgument("rule.port_range_max", "must be port_range_min-65535");
    } else if (protocol === "icmp") {
      if (min === null && max !== null) throw invalidArgument("rule.port_range_max", "an ICMP code needs a type (port_range_min)");
      if (min !== null && (min < 0 || min > 255)) throw invalidArgument("rule.port_range_min", "an ICMP type is 0-255");
      if (max !== null && (max < 0 || max > 255)) throw invalidArgument("rule.port_range_max", "an ICMP code is 0-255");
    } else if (min !== null || max !== null) {
      throw invalidArgument("rule.port_range_min", "port ranges need protocol tcp, udp or icmp");
    }
    let remoteCidr = "";
    if (r.remoteIpPrefix) {
      const c = parseCidr(r.remoteIpPrefix);
      if (!c) throw invalidArgument("rule.remote_ip_prefix", `${JSON.stringify(r.remoteIpPrefix.slice(0, 64))} is not an IPv4 CIDR with its host bits zero`);
      remoteCidr = formatCidr(c);
    }
    let remoteGroupId: string | null = null;
    if (r.remoteGroupId) {
      if (remoteCidr) throw invalidArgument("rule.remote_group_id", "give remote_ip_prefix or remote_group_id, not both");
      remoteGroupId = v.uuid("rule.remote_group_id", r.remoteGroupId);
      if (!(await sameProject(remoteGroupId))) throw notFound("security_group", r.remoteGroupId);
    }
    return {
      direction,
      protocol: protocol as RuleProtocol,
      portMin: min,
      portMax: protocol === "tcp" || protocol === "udp" ? (max ?? min) : max,
      remoteCidr,
      remoteGroupId,
      description: v.text("rule.description", r.description),
    };
  })();
}

export function securityGroupService(deps: RpcDeps): SecurityGroupServiceServer {
  const { pool } = deps;
  const visible = async (ctx: CallContext, id: string, field = "id") => {
    const g = await getSecurityGroup(pool, v.uuid(field, id));
    if (!g || (!isAdmin(ctx) && g.projectId !== ctx.principal.projectId)) throw notFound("security_group", id);
    return g;
  };
  return {
    createSecurityGroup: unary(deps, "CreateSecurityGroup", async (req, ctx) => {
      const name = v.name("name", req.name);
      if (name === "default") throw invalidArgument("name", `"default" is the project's default group, made on first use`);
      const g = await withTx(pool, (conn) => createSecurityGroup(conn, { projectId: ctx.principal.projectId, name, description: v.text("description", req.description) }));
      return { securityGroup: groupToProto(g) };
    }),

    getSecurityGroup: unary(deps, "GetSecurityGroup", async (req, ctx) => ({ securityGroup: groupToProto(await visible(ctx, req.id)) })),

    listSecurityGroups: unary(deps, "ListSecurityGroups", async (req, ctx) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      await withTx(pool, (conn) => ensureDefaultGroup(conn, ctx.principal.projectId));
      const groups = await listSecurityGroups(pool, req.allProjects ? undefined : ctx.principal.projectId);
      return { securityGroups: groups.map(groupToProto) };
    }),

    deleteSecurityGroup: unary(deps, "DeleteSecurityGroup", async (req, ctx) => {
      const g = await visible(ctx, req.id);
      if (g.isDefault) throw failedPrecondition("the default security group cannot be deleted", "SECURITY_GROUP_IN_USE", { security_group: g.id });
      await withTx(pool, (conn) => deleteSecurityGroup(conn, g.id));
      return {};
    }),

    createSecurityGroupRule: unary(deps, "CreateSecurityGroupRule", async (req, ctx) => {
      if (!req.rule) throw invalidArgument("rule", "is required");
      const g = await visible(ctx, req.rule.securityGroupId, "rule.security_group_id");
      const rule = await ruleOf(req.rule, async (id) => (await getSecurityGroup(pool, id))?.projectId === g.projectId);
      const created = await withTx(pool, (conn) => createRule(conn, g.id, rule));
      return { rule: ruleToProto(created) };
    }),

    deleteSecurityGroupRule: unary(deps, "DeleteSecurityGroupRule", async (req, ctx) => {
      const r = await getRule(pool, v.uuid("id", req.id));
      if (!r) throw notFound("security_group_rule", req.id);
      await visible(ctx, r.securityGroupId).catch(() => {
        throw notFound("security_group_rule", req.id);
      });
      await deleteRule(pool, r.id);
      return {};
    }),
  };
}
