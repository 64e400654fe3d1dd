/**
 * Volumes and volume types (tables volumes, volume_types), and the claims
 * volumes hold on their pools (volume_pools.allocated_bytes).
 */
import type { PoolCandidate, Volume, VolumeFault, VolumeStatus, VolumeType } from "../domain/volume.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, select } from "./db.js";

const VOLUME_COLUMNS = `v.id, v.project_id, v.name, v.description, v.size_gb, v.claimed_gb, v.type_id, t.name AS type_name, v.zone, v.status, v.host, v.pool,
  v.source_image_id, v.source_snapshot_id, v.request_id, v.fault, v.task_deadline, v.created_at, v.updated_at`;
const FROM = "FROM volumes v LEFT JOIN volume_types t ON t.id = v.type_id";

/**
 * Volumes by `where`, locked when asked: the rows are locked by a query on
 * volumes alone (a join would lock the shared type rows too), then read
 * with their type's name.
 */
async function volumesWhere(q: Queryable, where: string, params: unknown[], lock: "" | "FOR UPDATE" | "FOR UPDATE SKIP LOCKED" = ""): Promise<Volume[]> {
  if (lock) {
    const ids = (await select(q, `SELECT v.id FROM volumes v WHERE ${where} ${lock}`, params)).map((r) => r.id as string);
    if (ids.length === 0) return [];
    return (await select(q, `SELECT ${VOLUME_COLUMNS} ${FROM} WHERE v.id IN (?) ORDER BY v.task_deadline, v.id`, [ids])).map(rowToVolume);
  }
  return (await select(q, `SELECT ${VOLUME_COLUMNS} ${FROM} WHERE ${where}`, params)).map(rowToVolume);
}

function rowToVolume(r: Row): Volume {
  return {
    id: r.id,
    projectId: r.project_id,
    name: r.name,
    description: r.description,
    sizeGb: Number(r.size_gb),
    claimedGb: r.claimed_gb === null ? null : Number(r.claimed_gb),
    status: r.status,
    typeId: r.type_id,
    typeName: r.type_name ?? "",
    zone: r.zone,
    host: r.host,
    pool: r.pool,
    sourceImageId: r.source_image_id,
    sourceSnapshotId: r.source_snapshot_id,
    requestId: r.request_id,
    fault: json<VolumeFault | null>(r.fault, null),
    taskDeadline: r.task_deadline,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export interface NewVolume {
  readonly id: string;
  readonly projectId: string;
  readonly name: string;
  readonly description: string;
  readonly sizeGb: number;
  readonly typeId: string;
  readonly zone: string;
  readonly host: string;
  readonly pool: string;
  readonly sourceImageId: string | null;
  readonly sourceSnapshotId: string | null;
  readonly requestId: string;
  readonly taskDeadline: Date;
}

/** Records a new volume, CREATING. Throws ER_DUP_ENTRY on a repeated (project, request id). */
export async function insertVolume(q: Queryable, v: NewVolume): Promise<void> {
  await exec(
    q,
    `INSERT INTO volumes (id, project_id, name, description, size_gb, type_id, zone, status, host, pool, source_image_id, source_snapshot_id, request_id, task_deadline)
     VALUES (?, ?, ?, ?, ?, ?, ?, 'CREATING', ?, ?, ?, ?, ?, ?)`,
    [v.id, v.projectId, v.name, v.description, v.sizeGb, v.typeId, v.zone, v.host, v.pool, v.sourceImageId, v.sourceSnapshotId, v.requestId, v.taskDeadline],
  );
}

/** A volume by id (deleted ones too: callers decide), optionally locked. */
export async function getVolume(q: Queryable, id: string, opts: { lock?: boolean } = {}): Promise<Volume | null> {
  return (await volumesWhere(q, "v.id = ?", [id], opts.lock ? "FOR UPDATE" : ""))[0] ?? null;
}

/** The volume a project created with `requestId`, if any. */
export async function findVolumeByRequest(q: Queryable, projectId: string, requestId: string): Promise<Volume | null> {
  return (await volumesWhere(q, "v.project_id = ? AND v.request_id = ?", [projectId, requestId]))[0] ?? null;
}

/** Volumes not deleted, oldest first (by creation, then id), after `after`. */
export async function listVolumes(
  q: Queryable,
  f: { projectId?: string; status?: VolumeStatus; after?: { createdAt: Date; id: string }; limit: number },
): Promise<Volume[]> {
  const where = ["v.status <> 'DELETED'"];
  const params: unknown[] = [];
  if (f.projectId !== undefined) (where.push("v.project_id = ?"), params.push(f.projectId));
  if (f.status !== undefined) (where.push("v.status = ?"), params.push(f.status));
  if (f.after) (where.push("(v.created_at, v.id) > (?, ?)"), params.push(f.after.createdAt, f.after.id));
  params.push(f.limit);
  return volumesWhere(q, `${where.join(" AND ")} ORDER BY v.created_at, v.id LIMIT ?`, params);
}

export interface VolumePatch {
  readonly status?: Volume["status"];
  readonly sizeGb?: number;
  readonly claimedGb?: number | null;
  readonly fault?: VolumeFault | null;
  readonly taskDeadline?: Date | null;
  /** The image its content came from (a re-imaged root volume's new one). */
  readonly sourceImageId?: string | null;
}

/** Changes a volume's status, size, fault, deadline or source image. */
export async function updateVolume(q: Queryable, id: string, patch: VolumePatch): Promise<void> {
  const sets = ["updated_at = CURRENT_TIMESTAMP(3)"];
  const params: unknown[] = [];
  if (patch.status !== undefined) (sets.push("status = ?"), params.push(patch.status));
  if (patch.sizeGb !== undefined) (sets.push("size_gb = ?"), params.push(patch.sizeGb));
  if (patch.claimedGb !== undefined) (sets.push("claimed_gb = ?"), params.push(patch.claimedGb));
  if (patch.fault !== undefined) (sets.push("fault = ?"), params.push(patch.fault === null ? null : JSON.stringify(patch.fault)));
  if (patch.taskDeadline !== undefined) (sets.push("task_deadline = ?"), params.push(patch.taskDeadline));
  if (patch.sourceImageId !== undefined) (sets.push("source_image_id = ?"), params.push(patch.sourceImageId));
  params.push(id);
  await exec(q, `UPDATE volumes SET ${sets.join(", ")} WHERE id = ?`, params);
}

/** Volumes whose working status outlived its deadline, locked (others' locked rows skipped). */
export async function lockOverdueVolumes(q: Queryable, now: Date, limit: number): Promise<Volume[]> {
  return volumesWhere(q, "v.task_deadline IS NOT NULL AND v.task_deadline < ? ORDER BY v.task_deadline LIMIT ?", [now, limit], "FOR UPDATE SKIP LOCKED");
}

// ---- pools: where volumes may go, and their claims ----

/**
 * The pools a volume may be placed in: of volume hosts that are enabled and
 * reported since `upSince`, of `backend` (any when ""), with their hosts'
 * own zones (aggregates may set another).
 */
export async function candidatePools(q: Queryable, f: { backend: string; upSince: Date }): Promise<PoolCandidate[]> {
  const rows = await select(
    q,
    `SELECT p.host, p.name, n.zone, p.total_bytes, p.allocated_bytes FROM volume_pools p JOIN compute_nodes n ON n.host = p.host
      WHERE n.enabled = 1 AND n.last_seen_at >= ? AND (? = '' OR p.backend = ?)`,
    [f.upSince, f.backend, f.backend],
  );
  return rows.map((r) => ({ host: r.host, name: r.name, zone: r.zone ?? "", totalBytes: Number(r.total_bytes), allocatedBytes: Number(r.allocated_bytes) }));
}

/**
 * Claims `bytes` on a pool if it has room: allocated + bytes ≤ total ×
 * ratio, checked and added in one conditional UPDATE (the pool's row lock
 * orders concurrent claims, on any controller). Returns whether it did.
 */
export async function claimPoolBytes(q: Queryable, host: string, pool: string, bytes: number, ratio: number): Promise<boolean> {
  const res = await exec(
    q,
    `UPDATE volume_pools SET allocated_bytes = allocated_bytes + ?
      WHERE host = ? AND name = ? AND allocated_bytes + ? <= FLOOR(total_bytes * ?)`,
    [bytes, host, pool, bytes, ratio],
  );
  return res.affectedRows === 1;
}

/** Adds `bytes` to a pool's claims whatever its room (a volume its host made larger than asked). */
export async function addPoolBytes(q: Queryable, host: string, pool: string, bytes: number): Promise<void> {
  await exec(q, "UPDATE volume_pools SET allocated_bytes = allocated_bytes + ? WHERE host = ? AND name = ?", [bytes, host, pool]);
}

/** Gives back `bytes` a volume held on its pool. */
export async function releasePoolBytes(q: Queryable, host: string, pool: string, bytes: number): Promise<void> {
  await exec(q, "UPDATE volume_pools SET allocated_bytes = GREATEST(0, allocated_bytes - ?) WHERE host = ? AND name = ?", [bytes, host, pool]);
}

/**
 * Sets each of `host`'s pools' claims to the sizes of the volumes the
 * controller placed there (a pool the host stopped reporting and reports
 * again starts from its volumes, not from zero).
 */
export async function recountPoolClaims(q: Queryable, host: string): Promise<void> {
  await exec(
    q,
    `UPDATE volume_pools p SET p.allocated_bytes = (
        SELECT COALESCE(SUM(GREATEST(v.size_gb, COALESCE(v.claimed_gb, 0))), 0) * 1073741824
          FROM volumes v WHERE v.host = p.host AND v.pool = p.name AND v.status <> 'DELETED')
      WHERE p.host = ?`,
    [host],
  );
}

// ---- volume types ----

function rowToType(r: Row): VolumeType {
  return { id: r.id, name: r.name, backend: r.backend, description: r.description, createdAt: r.created_at };
}

export async function insertVolumeType(q: Queryable, t: { id: string; name: string; backend: string; description: string }): Promise<void> {
  await exec(q, "INSERT INTO volume_types (id, name, backend, description) VALUES (?, ?, ?, ?)", [t.id, t.name, t.backend, t.description]);
}

/** A volume type by name; `lock` "share" keeps it from being deleted until the caller commits, "update" locks it to delete it. */
export async function getVolumeTypeByName(q: Queryable, name: string, opts: { lock?: "share" | "update" } = {}): Promise<VolumeType | null> {
  const lock = opts.lock === "update" ? " FOR UPDATE" : opts.lock === "share" ? " LOCK IN SHARE MODE" : "";
  const rows = await select(q, `SELECT id, name, backend, description, created_at FROM volume_types WHERE name = ?${lock}`, [name]);
  return rows[0] ? rowToType(rows[0]) : null;
}

export async function listVolumeTypes(q: Queryable): Promise<VolumeType[]> {
  return (await select(q, "SELECT id, name, backend, description, created_at FROM volume_types ORDER BY name")).map(rowToType);
}

/** Whether a volume (not deleted) has the type. */
export async function volumeTypeInUse(q: Queryable, typeId: string): Promise<boolean> {
  return (await select(q, "SELECT 1 FROM volumes WHERE type_id = ? AND status <> 'DELETED' LIMIT 1", [typeId])).length > 0;
}

export async function deleteVolumeType(q: Queryable, id: string): Promise<void> {
  await exec(q, "DELETE FROM volume_types WHERE id = ?", [id]);
}
