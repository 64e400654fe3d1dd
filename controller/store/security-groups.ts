/**
 * Security groups and their rules (Neutron's model). Each project has one
 * default group (`default_of` = the project, unique), made on first use:
 * egress to anywhere, ingress from the group's own ports.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { formatIpv4 } from "../domain/ipv4.js";
import type { Direction, RuleProtocol, SecurityGroup, SecurityGroupRule } from "../domain/network.js";
import { ApiError, failedPrecondition } from "../errors.js";
import type { Queryable, Row } from "./db.js";
import { exec, isDuplicateKey, select } from "./db.js";
import { noteNetworkChange, touch } from "./network-changes.js";

const GROUP_COLUMNS = "id, project_id, name, description, default_of, created_at";
const RULE_COLUMNS = "id, security_group_id, direction, protocol, port_min, port_max, remote_cidr, remote_group_id, description";

function rowToRule(r: Row): SecurityGroupRule {
  return {
    id: r.id,
    securityGroupId: r.security_group_id,
    direction: r.direction as Direction,
    protocol: r.protocol as RuleProtocol,
    portMin: r.port_min,
    portMax: r.port_max,
    remoteCidr: r.remote_cidr,
    remoteGroupId: r.remote_group_id,
    description: r.description,
  };
}

async function withRules(q: Queryable, rows: Row[]): Promise<SecurityGroup[]> {
  if (rows.length === 0) return [];
  const rules = (
    await select(q, `SELECT ${RULE_COLUMNS} FROM security_group_rules WHERE security_group_id IN (${rows.map(() => "?").join(",")}) ORDER BY created_at, id`, rows.map((r) => r.id))
  ).map(rowToRule);
  return rows.map((r) => ({
    id: r.id,
    projectId: r.project_id,
    name: r.name,
    description: r.description,
    isDefault: r.default_of !== null,
    rules: rules.filter((x) => x.securityGroupId === r.id),
    createdAt: r.created_at,
  }));
}

/** A rule to add (validated by the caller). */
export type NewRule = Omit<SecurityGroupRule, "id" | "securityGroupId" | "description"> & { readonly description?: string };

/** What makes two rules the same rule. */
function ruleKey(r: NewRule): string {
  return [r.direction, r.protocol, r.portMin ?? "*", r.portMax ?? "*", r.remoteCidr, r.remoteGroupId ?? ""].join("|");
}

/** Adds a rule; ALREADY_EXISTS (SECURITY_GROUP_RULE_EXISTS) when the group has the same rule. */
export async function createRule(q: Queryable, groupId: string, r: NewRule): Promise<SecurityGroupRule> {
  const id = randomUUID();
  try {
    await exec(
      q,
      `INSERT INTO security_group_rules (id, security_group_id, direction, protocol, port_min, port_max, remote_cidr, remote_group_id, description, rule_key)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [id, groupId, r.direction, r.protocol, r.portMin, r.portMax, r.remoteCidr, r.remoteGroupId, r.description ?? "", ruleKey(r)],
    );
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    throw new ApiError(status.ALREADY_EXISTS, `security group ${groupId} already has this rule`, { reason: "SECURITY_GROUP_RULE_EXISTS", metadata: { security_group: groupId } });
  }
  await noteNetworkChange(q, [touch("rules", groupId)]);
  return (await getRule(q, id))!;
}

export async function getRule(q: Queryable, id: string): Promise<SecurityGroupRule | null> {
  const rows = await select(q, `SELECT ${RULE_COLUMNS} FROM security_group_rules WHERE id = ?`, [id]);
  return rows[0] ? rowToRule(rows[0]) : null;
}

export async function deleteRule(q: Queryable, id: string): Promise<boolean> {
  const rule = await getRule(q, id);
  const gone = (await exec(q, "DELETE FROM security_group_rules WHERE id = ?", [id])).affectedRows === 1;
  if (gone && rule) await noteNetworkChange(q, [touch("rules", rule.securityGroupId)]);
  return gone;
}

export async function createSecurityGroup(q: Queryable, g: { projectId: string; name: string; description: string }): Promise<SecurityGroup> {
  const id = randomUUID();
  await exec(q, "INSERT INTO security_groups (id, project_id, name, description) VALUES (?, ?, ?, ?)", [id, g.projectId, g.name, g.description]);
  await createRule(q, id, { direction: "egress", protocol: "", portMin: null, portMax: null, remoteCidr: "", remoteGroupId: null });
  return (await getSecurityGroup(q, id))!;
}

/** The project's default group, made (with its two rules) if it has none. */
export async function ensureDefaultGroup(q: Queryable, projectId: string): Promise<SecurityGroup> {
  const existing = await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups WHERE default_of = ?`, [projectId]);
  if (existing[0]) return (await withRules(q, existing))[0]!;
  const id = randomUUID();
  try {
    await exec(q, "INSERT INTO security_groups (id, project_id, name, description, default_of) VALUES (?, ?, 'default', 'Default security group', ?)", [
      id,
      projectId,
      projectId,
    ]);
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    const again = await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups WHERE default_of = ? LOCK IN SHARE MODE`, [projectId]);
    if (!again[0]) throw err;
    return (await withRules(q, again))[0]!;
  }
  await createRule(q, id, { direction: "egress", protocol: "", portMin: null, portMax: null, remoteCidr: "", remoteGroupId: null });
  await createRule(q, id, { direction: "ingress", protocol: "", portMin: null, portMax: null, remoteCidr: "", remoteGroupId: id });
  return (await getSecurityGroup(q, id))!;
}

export async function getSecurityGroup(q: Queryable, id: string): Promise<SecurityGroup | null> {
  const rows = await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups WHERE id = ?`, [id]);
  return (await withRules(q, rows))[0] ?? null;
}

/** A project's groups by id or name (names that several groups share are ambiguous: null). */
export async function findSecurityGroup(q: Queryable, projectId: string, idOrName: string): Promise<SecurityGroup | null | "ambiguous"> {
  const rows = await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups WHERE project_id = ? AND (id = ? OR name = ?)`, [projectId, idOrName, idOrName]);
  const byId = rows.find((r) => r.id === idOrName);
  if (byId) return (await withRules(q, [byId]))[0]!;
  if (rows.length > 1) return "ambiguous";
  return (await withRules(q, rows))[0] ?? null;
}

export async function listSecurityGroups(q: Queryable, projectId: string | undefined): Promise<SecurityGroup[]> {
  const rows =
    projectId === undefined
      ? await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups ORDER BY created_at, id`)
      : await select(q, `SELECT ${GROUP_COLUMNS} FROM security_groups WHERE project_id = ? ORDER BY created_at, id`, [projectId]);
  return withRules(q, rows);
}

/** Deletes a group no port uses and no other group's rule names. */
export async function deleteSecurityGroup(q: Queryable, id: string): Promise<boolean> {
  const [ports] = await select<{ n: number }>(q, "SELECT COUNT(*) AS n FROM port_security_groups WHERE security_group_id = ?", [id]);
  if (Number(ports!.n) > 0) throw failedPrecondition(`security group ${id} is used by ${ports!.n} port(s)`, "SECURITY_GROUP_IN_USE", { security_group: id, ports: String(ports!.n) });
  const [refs] = await select<{ n: number }>(q, "SELECT COUNT(*) AS n FROM security_group_rules WHERE remote_group_id = ? AND security_group_id <> ?", [id, id]);
  if (Number(refs!.n) > 0) {
    throw failedPrecondition(`security group ${id} is the remote group of ${refs!.n} rule(s) of other groups`, "SECURITY_GROUP_IN_USE", { security_group: id, rules: String(refs!.n) });
  }
  await exec(q, "DELETE FROM security_group_rules WHERE security_group_id = ?", [id]);
  return (await exec(q, "DELETE FROM security_groups WHERE id = ?", [id])).affectedRows === 1;
}

/** The addresses of the ports in each of `groupIds` (for rules naming a remote group). */
export async function groupAddresses(q: Queryable, groupIds: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(groupIds.map((g) => [g, []]));
  if (groupIds.length === 0) return out;
  const rows = await select<{ security_group_id: string; address: number }>(
    q,
    `SELECT g.security_group_id, a.address FROM port_security_groups g JOIN ip_allocations a ON a.port_id = g.port_id
     WHERE g.security_group_id IN (${groupIds.map(() => "?").join(",")}) ORDER BY a.address`,
    [...groupIds],
  );
  for (const r of rows) {
    out.get(r.security_group_id)!.push(formatIpv4(Number(r.address)));
  }
  return out;
}
