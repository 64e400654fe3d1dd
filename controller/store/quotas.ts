/**
 * Quota limits (the defaults under project '' and each project's own) and
 * a project's usage, counted from the rows it holds. A check takes the
 * project's quota lock first (one row per project, held to the end of the
 * transaction): every request that adds to a project's usage takes it, and
 * the counts are read after it under READ COMMITTED, so they include all
 * that earlier holders committed.
 */
import type { ProjectLimits, QuotaResource, Usage } from "../domain/quota.js";
import { DHCP_OWNER } from "../domain/network.js";
import { QUOTA_RESOURCES, mergeLimits } from "../domain/quota.js";
import { exec, select, type Migration, type Queryable } from "./db.js";
import { OPEN_MIGRATION_STATUSES } from "./moves.js";

/** The project id the default limits are kept under (no project has it: ids are 1–64 characters). */
const DEFAULTS = "";

export const QUOTA_MIGRATIONS: readonly Migration[] = [
  {
    version: 23,
    name: "quota limits and the lock of each project's usage",
    statements: [
      `CREATE TABLE quota_limits (
        project_id VARCHAR(64) NOT NULL,
        resource VARCHAR(32) NOT NULL,
        hard_limit BIGINT NOT NULL,
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (project_id, resource)
      ) ENGINE=InnoDB`,
      `CREATE TABLE quota_locks (
        project_id VARCHAR(64) NOT NULL PRIMARY KEY,
        locked_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 27,
    name: "a project's ports, counted under its quota lock",
    statements: [`CREATE INDEX ports_project ON ports (project_id, device_owner)`],
  },
];

/**
 * Takes the project's quota lock until the transaction ends; the first
 * request of a project makes its row. Two transactions of one project
 * wait for each other here; of different projects, never.
 */
export async function lockQuota(q: Queryable, projectId: string): Promise<void> {
  await exec(q, "INSERT INTO quota_locks (project_id) VALUES (?) ON DUPLICATE KEY UPDATE locked_at = CURRENT_TIMESTAMP(3)", [projectId]);
}

type LimitRow = { project_id: string; resource: string; hard_limit: number | string };

function byResource(rows: readonly LimitRow[], projectId: string): Partial<Record<QuotaResource, number>> {
  const out: Partial<Record<QuotaResource, number>> = {};
  for (const r of rows) if (r.project_id === projectId) out[r.resource as QuotaResource] = Number(r.hard_limit);
  return out;
}

/** A project's limits: its own over the defaults. */
export async function projectLimits(q: Queryable, projectId: string): Promise<ProjectLimits> {
  const rows = await select<LimitRow>(q, "SELECT project_id, resource, hard_limit FROM quota_limits WHERE project_id IN (?, ?)", [DEFAULTS, projectId]);
  return mergeLimits(byResource(rows, DEFAULTS), byResource(rows, projectId));
}

/** The default limits. */
export async function defaultLimits(q: Queryable): Promise<Record<QuotaResource, number>> {
  const rows = await select<LimitRow>(q, "SELECT project_id, resource, hard_limit FROM quota_limits WHERE project_id = ?", [DEFAULTS]);
  return { ...mergeLimits(byResource(rows, DEFAULTS), {}).limits };
}

async function putLimits(q: Queryable, projectId: string, limits: Readonly<Partial<Record<QuotaResource, number>>>): Promise<void> {
  const entries = Object.entries(limits);
  if (entries.length === 0) return;
  await exec(
    q,
    `INSERT INTO quota_limits (project_id, resource, hard_limit) VALUES ${entries.map(() => "(?, ?, ?)").join(", ")}
     ON DUPLICATE KEY UPDATE hard_limit = VALUES(hard_limit), updated_at = CURRENT_TIMESTAMP(3)`,
    entries.flatMap(([r, n]) => [projectId, r, n]),
  );
}

export const setProjectLimits = (q: Queryable, projectId: string, limits: Readonly<Partial<Record<QuotaResource, number>>>) => putLimits(q, projectId, limits);
export const setDefaultLimits = (q: Queryable, limits: Readonly<Partial<Record<QuotaResource, number>>>) => putLimits(q, DEFAULTS, limits);

/** Drops a project's own limits (of `resources`; empty: all). */
export async function resetProjectLimits(q: Queryable, projectId: string, resources: readonly QuotaResource[]): Promise<void> {
  if (resources.length === 0) await exec(q, "DELETE FROM quota_limits WHERE project_id = ?", [projectId]);
  else await exec(q, "DELETE FROM quota_limits WHERE project_id = ? AND resource IN (?)", [projectId, resources]);
}

const n = (v: unknown) => Number(v ?? 0);
const usage = (inUse: unknown, reserved: unknown): Usage => ({ inUse: n(inUse), reserved: n(reserved) });

/**
 * Servers, their cores and RAM. A server being built, or unshelved (still
 * SHELVED_OFFLOADED with a task), is reserved; a shelved and offloaded one
 * holds no cores or RAM. A resize not yet confirmed or reverted reserves
 * what its other flavor has beyond the current one: until it ends the
 * server may go back to either flavor, so it holds the larger of each.
 * One statement, so the resizes are counted against the servers as the
 * same snapshot has them (a resize's host switches the server's flavor
 * without the quota lock).
 */
async function serverUsage(q: Queryable, projectId: string): Promise<Pick<Record<QuotaResource, Usage>, "instances" | "cores" | "ram">> {
  const beyond = (column: string, key: string) =>
    `GREATEST(i.${column}, CAST(JSON_VALUE(m.old_flavor, '$.${key}') AS SIGNED), CAST(JSON_VALUE(m.new_flavor, '$.${key}') AS SIGNED)) - i.${column}`;
  const [row] = await select(
    q,
    `SELECT COUNT(*) AS n,
            SUM(vm_state = 'BUILDING') AS building,
            SUM(CASE WHEN held AND NOT pending THEN vcpus ELSE 0 END) AS cores,
            SUM(CASE WHEN held AND pending THEN vcpus ELSE 0 END) AS cores_reserved,
            SUM(CASE WHEN held AND NOT pending THEN ram_mb ELSE 0 END) AS ram,
            SUM(CASE WHEN held AND pending THEN ram_mb ELSE 0 END) AS ram_reserved,
            MAX(r.cores) AS resize_cores, MAX(r.ram) AS resize_ram
       FROM (SELECT vcpus, ram_mb, vm_state,
                    vm_state <> 'SHELVED_OFFLOADED' OR task_state IN ('UNSHELVING', 'SPAWNING') AS held,
                    vm_state = 'BUILDING' OR vm_state = 'SHELVED_OFFLOADED' AS pending
               FROM instances WHERE project_id = ? AND deleted_at IS NULL) s
       JOIN (SELECT COALESCE(SUM(${beyond("vcpus", "vcpus")}), 0) AS cores, COALESCE(SUM(${beyond("ram_mb", "ramMb")}), 0) AS ram
               FROM migrations m JOIN instances i ON i.uuid = m.instance_uuid
              WHERE m.project_id = ? AND m.type = 'RESIZE' AND m.status IN (?) AND i.deleted_at IS NULL) r`,
    [projectId, projectId, OPEN_MIGRATION_STATUSES],
  );
  return {
    instances: usage(n(row?.n) - n(row?.building), row?.building),
    cores: usage(row?.cores, n(row?.cores_reserved) + n(row?.resize_cores)),
    ram: usage(row?.ram, n(row?.ram_reserved) + n(row?.resize_ram)),
  };
}

/** Volumes, snapshots and their gigabytes; those being created are reserved. */
async function volumeUsage(q: Queryable, projectId: string): Promise<Pick<Record<QuotaResource, Usage>, "volumes" | "snapshots" | "gigabytes">> {
  // An extend reserves the growth it claimed (claimed_gb) until the volume has it.
  const sizes = (table: string, growing: string) =>
    select(
      q,
      `SELECT SUM(status <> 'CREATING') AS made, SUM(status = 'CREATING') AS creating,
              SUM(CASE WHEN status <> 'CREATING' THEN size_gb ELSE 0 END) AS gb,
              SUM(CASE WHEN status = 'CREATING' THEN size_gb ELSE ${growing} END) AS gb_creating
         FROM ${table} WHERE project_id = ? AND status <> 'DELETED'`,
      [projectId],
    );
  const [[v], [s]] = await Promise.all([sizes("volumes", "GREATEST(COALESCE(claimed_gb, size_gb) - size_gb, 0)"), sizes("volume_snapshots", "0")]);
  return {
    volumes: usage(v?.made, v?.creating),
    snapshots: usage(s?.made, s?.creating),
    gigabytes: usage(n(v?.gb) + n(s?.gb), n(v?.gb_creating) + n(s?.gb_creating)),
  };
}

async function count(q: Queryable, sql: string, params: unknown[]): Promise<Usage> {
  const [row] = await select(q, sql, params);
  return usage(row?.n, 0);
}

/** The resources counted together, and how. */
const COUNTERS: readonly { resources: readonly QuotaResource[]; count: (q: Queryable, projectId: string) => Promise<Partial<Record<QuotaResource, Usage>>> }[] = [
  { resources: ["instances", "cores", "ram"], count: serverUsage },
  { resources: ["volumes", "snapshots", "gigabytes"], count: volumeUsage },
  {
    resources: ["server_groups"],
    count: async (q, p) => ({ server_groups: await count(q, "SELECT COUNT(*) AS n FROM server_groups WHERE project_id = ? AND deleted_at IS NULL", [p]) }),
  },
  {
    // A project's ports (not the DHCP ports its networks' hosts hold), and those its servers still being built get when placed.
    resources: ["ports"],
    count: async (q, p) => {
      const [made] = await select(q, "SELECT COUNT(*) AS n FROM ports WHERE project_id = ? AND device_owner <> ?", [p, DHCP_OWNER]);
      const [coming] = await select(
        q,
        `SELECT COUNT(*) AS n FROM instances i,
                JSON_TABLE(i.requested_networks, '$.networks[*]' COLUMNS (network_id VARCHAR(64) PATH '$.networkId')) r
          WHERE i.project_id = ? AND i.deleted_at IS NULL AND i.vm_state = 'BUILDING' AND r.network_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM ports p WHERE p.device_id = i.uuid)`,
        [p],
      );
      return { ports: usage(made?.n, coming?.n) };
    },
  },
  { resources: ["key_pairs"], count: async (q, p) => ({ key_pairs: await count(q, "SELECT COUNT(*) AS n FROM key_pairs WHERE project_id = ?", [p]) }) },
  {
    // Per group: what the project's fullest group has.
    resources: ["server_group_members"],
    count: async (q, p) => ({
      server_group_members: await count(
        q,
        `SELECT COALESCE(MAX(c), 0) AS n FROM (SELECT COUNT(*) AS c FROM instances i JOIN server_groups g ON g.id = i.server_group_id
          WHERE g.project_id = ? AND g.deleted_at IS NULL AND i.deleted_at IS NULL GROUP BY i.server_group_id) m`,
        [p],
      ),
    }),
  },
  {
    // Per server: the most any of the project's servers has.
    resources: ["metadata_items"],
    count: async (q, p) => ({
      metadata_items: await count(q, "SELECT COALESCE(MAX(JSON_LENGTH(metadata)), 0) AS n FROM instances WHERE project_id = ? AND deleted_at IS NULL", [p]),
    }),
  },
];

/** A project's usage of `resources` (default: all). */
export async function projectUsage(q: Queryable, projectId: string, resources: readonly QuotaResource[] = QUOTA_RESOURCES): Promise<Partial<Record<QuotaResource, Usage>>> {
  const wanted = COUNTERS.filter((c) => c.resources.some((r) => resources.includes(r)));
  return Object.assign({}, ...(await Promise.all(wanted.map((c) => c.count(q, projectId)))));
}

/** The members a server group has now. */
export async function groupMembers(q: Queryable, groupId: string): Promise<number> {
  return (await count(q, "SELECT COUNT(*) AS n FROM instances WHERE server_group_id = ? AND deleted_at IS NULL", [groupId])).inUse;
}
