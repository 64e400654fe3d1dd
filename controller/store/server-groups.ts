/** Server groups (Nova's os-server-groups): a policy over where members run. */
import { randomUUID } from "node:crypto";
import type { GroupPolicy } from "../domain/placement.js";
import type { Queryable, Row } from "./db.js";
import { exec, select } from "./db.js";
import { OPEN_MIGRATION_STATUSES } from "./moves.js";

export interface ServerGroup {
  readonly id: string;
  readonly name: string;
  readonly projectId: string;
  readonly policy: GroupPolicy;
  /** anti-affinity: members allowed on one host. */
  readonly maxServerPerHost: number;
  /** Member server ids (not deleted), oldest first. */
  readonly members: readonly string[];
  readonly createdAt: Date;
}

async function withMembers(q: Queryable, rows: Row[]): Promise<ServerGroup[]> {
  if (rows.length === 0) return [];
  const members = await select<{ server_group_id: string; uuid: string }>(
    q,
    `SELECT server_group_id, uuid FROM instances WHERE deleted_at IS NULL AND server_group_id IN (${rows.map(() => "?").join(",")}) ORDER BY id`,
    rows.map((r) => r.id),
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    projectId: r.project_id,
    policy: r.policy as GroupPolicy,
    maxServerPerHost: r.max_server_per_host,
    members: members.filter((m) => m.server_group_id === r.id).map((m) => m.uuid),
    createdAt: r.created_at,
  }));
}

export async function createServerGroup(
  q: Queryable,
  g: { name: string; projectId: string; policy: GroupPolicy; maxServerPerHost: number },
): Promise<ServerGroup> {
  const id = randomUUID();
  await exec(q, "INSERT INTO server_groups (id, name, project_id, policy, max_server_per_host) VALUES (?, ?, ?, ?, ?)", [
    id,
    g.name,
    g.projectId,
    g.policy,
    g.maxServerPerHost,
  ]);
  return (await getServerGroup(q, id))!;
}

/** A live group. */
export async function getServerGroup(q: Queryable, id: string): Promise<ServerGroup | null> {
  const rows = await select(q, "SELECT * FROM server_groups WHERE id = ? AND deleted_at IS NULL", [id]);
  return (await withMembers(q, rows))[0] ?? null;
}

/** Groups of a project (all projects when undefined), oldest first. */
export async function listServerGroups(q: Queryable, projectId: string | undefined): Promise<ServerGroup[]> {
  const rows =
    projectId === undefined
      ? await select(q, "SELECT * FROM server_groups WHERE deleted_at IS NULL ORDER BY created_at, id")
      : await select(q, "SELECT * FROM server_groups WHERE deleted_at IS NULL AND project_id = ? ORDER BY created_at, id", [projectId]);
  return withMembers(q, rows);
}

export async function deleteServerGroup(q: Queryable, id: string): Promise<boolean> {
  return (await exec(q, "UPDATE server_groups SET deleted_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND deleted_at IS NULL", [id])).affectedRows === 1;
}

/**
 * Hosts the group's members other than `except` hold, with how many each:
 * where they run, and where an open move (resize, migration, live migration,
 * evacuation) is taking them, so a member on its way counts on both hosts.
 */
export async function groupMemberHosts(q: Queryable, groupId: string, except: string): Promise<Map<string, number>> {
  const rows = await select<{ host: string; n: number }>(
    q,
    `SELECT host, COUNT(DISTINCT uuid) AS n FROM (
       SELECT i.uuid, i.host FROM instances i
       WHERE i.server_group_id = ? AND i.uuid <> ? AND i.deleted_at IS NULL AND i.host IS NOT NULL AND i.host <> ''
       UNION ALL
       SELECT i.uuid, m.target_host AS host FROM instances i JOIN migrations m ON m.instance_uuid = i.uuid
       WHERE i.server_group_id = ? AND i.uuid <> ? AND i.deleted_at IS NULL AND m.target_host IS NOT NULL AND m.target_host <> ''
         AND m.status IN (?)
     ) members GROUP BY host`,
    [groupId, except, groupId, except, OPEN_MIGRATION_STATUSES],
  );
  return new Map(rows.map((r) => [r.host, Number(r.n)]));
}

/**
 * Hosts the given servers run on (scheduler hints same_host /
 * different_host); with `projectId`, only that project's servers count.
 */
export async function hostsOfServers(q: Queryable, ids: readonly string[], projectId?: string): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await select<{ host: string }>(
    q,
    `SELECT DISTINCT host FROM instances WHERE uuid IN (${ids.map(() => "?").join(",")}) AND deleted_at IS NULL AND host IS NOT NULL AND host <> ''
       ${projectId === undefined ? "" : "AND project_id = ?"}`,
    projectId === undefined ? [...ids] : [...ids, projectId],
  );
  return new Set(rows.map((r) => r.host));
}
