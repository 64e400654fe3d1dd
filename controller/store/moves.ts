/** Migration records: resizes, cold and live migrations, evacuations. */
import type { Migration, MigrationStatus, MigrationType } from "../domain/types.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, noteChange, select } from "./db.js";

const COLUMNS = `id, instance_uuid, project_id, action_id, request_id, type, status, source_host, target_host, requested_host,
  old_flavor, new_flavor, old_vm_state, tried_hosts, created_at, updated_at`;

function rowToMigration(r: Row): Migration {
  return {
    id: r.id,
    instanceUuid: r.instance_uuid,
    projectId: r.project_id,
    actionId: Number(r.action_id),
    requestId: r.request_id,
    type: r.type,
    status: r.status,
    sourceHost: r.source_host,
    targetHost: r.target_host,
    requestedHost: r.requested_host,
    oldFlavor: json(r.old_flavor, {} as Migration["oldFlavor"]),
    newFlavor: json(r.new_flavor, {} as Migration["newFlavor"]),
    oldVmState: r.old_vm_state,
    triedHosts: json(r.tried_hosts, []),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Migration statuses in which the move still holds capacity somewhere. */
export const OPEN_MIGRATION_STATUSES: readonly MigrationStatus[] = ["PRE_MIGRATING", "MIGRATING", "FINISHED"];

export async function insertMigration(
  q: Queryable,
  m: Omit<Migration, "createdAt" | "updatedAt" | "triedHosts" | "targetHost"> & { targetHost?: string | null },
): Promise<void> {
  await exec(
    q,
    `INSERT INTO migrations (id, instance_uuid, project_id, action_id, request_id, type, status, source_host, target_host,
       requested_host, old_flavor, new_flavor, old_vm_state, tried_hosts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      m.id,
      m.instanceUuid,
      m.projectId,
      m.actionId,
      m.requestId,
      m.type,
      m.status,
      m.sourceHost,
      m.targetHost ?? null,
      m.requestedHost,
      JSON.stringify(m.oldFlavor),
      JSON.stringify(m.newFlavor),
      m.oldVmState,
      JSON.stringify([m.sourceHost]),
    ],
  );
  if (m.status === "PRE_MIGRATING") noteChange(q, "placements");
}

/** The instance's migration that is still open (at most one), locked when asked. */
export async function openMigration(q: Queryable, instanceUuid: string, opts: { lock?: boolean } = {}): Promise<Migration | null> {
  const rows = await select(
    q,
    `SELECT ${COLUMNS} FROM migrations WHERE instance_uuid = ? AND status IN (?) ORDER BY created_at DESC LIMIT 1${opts.lock ? " FOR UPDATE" : ""}`,
    [instanceUuid, OPEN_MIGRATION_STATUSES],
  );
  return rows[0] ? rowToMigration(rows[0]) : null;
}

export async function updateMigration(
  q: Queryable,
  id: string,
  p: { status?: MigrationStatus; targetHost?: string | null; triedHosts?: readonly string[] },
): Promise<void> {
  const sets = ["updated_at = CURRENT_TIMESTAMP(3)"];
  const params: unknown[] = [];
  if (p.status !== undefined) (sets.push("status = ?"), params.push(p.status));
  if (p.targetHost !== undefined) (sets.push("target_host = ?"), params.push(p.targetHost));
  if (p.triedHosts !== undefined) (sets.push("tried_hosts = ?"), params.push(JSON.stringify(p.triedHosts)));
  params.push(id);
  await exec(q, `UPDATE migrations SET ${sets.join(", ")} WHERE id = ?`, params);
}

export async function listMigrations(
  q: Queryable,
  f: { projectId?: string; instanceUuid?: string; type?: MigrationType; status?: MigrationStatus; before?: { t: Date; id: string }; limit: number },
): Promise<Migration[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.projectId !== undefined) (where.push("project_id = ?"), params.push(f.projectId));
  if (f.instanceUuid !== undefined) (where.push("instance_uuid = ?"), params.push(f.instanceUuid));
  if (f.type !== undefined) (where.push("type = ?"), params.push(f.type));
  if (f.status !== undefined) (where.push("status = ?"), params.push(f.status));
  if (f.before) (where.push("(created_at, id) < (?, ?)"), params.push(f.before.t, f.before.id));
  params.push(f.limit);
  const rows = await select(
    q,
    `SELECT ${COLUMNS} FROM migrations ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY created_at DESC, id DESC LIMIT ?`,
    params,
  );
  return rows.map(rowToMigration);
}

/** Finished resizes/migrations older than `before` whose server waits in RESIZED with no task. */
export async function dueForAutoConfirm(q: Queryable, before: Date, limit: number): Promise<Array<{ id: string; instanceUuid: string; projectId: string }>> {
  const rows = await select(
    q,
    `SELECT m.id, m.instance_uuid, m.project_id FROM migrations m JOIN instances i ON i.uuid = m.instance_uuid
     WHERE m.status = 'FINISHED' AND m.updated_at < ? AND i.vm_state = 'RESIZED' AND i.task_state IS NULL
     ORDER BY m.updated_at LIMIT ?`,
    [before, limit],
  );
  return rows.map((r) => ({ id: r.id, instanceUuid: r.instance_uuid, projectId: r.project_id }));
}

/** The instance's most recent migration, whatever its status. */
export async function latestMigration(q: Queryable, instanceUuid: string): Promise<Migration | null> {
  const rows = await select(q, `SELECT ${COLUMNS} FROM migrations WHERE instance_uuid = ? ORDER BY created_at DESC LIMIT 1`, [instanceUuid]);
  return rows[0] ? rowToMigration(rows[0]) : null;
}

/** Ids of every migration of an instance (each may hold capacity as a consumer). */
export async function migrationIdsOf(q: Queryable, instanceUuid: string): Promise<string[]> {
  return (await select<{ id: string }>(q, "SELECT id FROM migrations WHERE instance_uuid = ?", [instanceUuid])).map((r) => r.id);
}
