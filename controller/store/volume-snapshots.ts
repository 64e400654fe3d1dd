/** Volume snapshots (table volume_snapshots). */
import type { SnapshotStatus, VolumeFault, VolumeSnapshot } from "../domain/volume.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, select } from "./db.js";

const COLUMNS = "id, volume_id, project_id, name, description, size_gb, status, fault, task_deadline, created_at, updated_at";

function rowToSnapshot(r: Row): VolumeSnapshot {
  return {
    id: r.id,
    volumeId: r.volume_id,
    projectId: r.project_id,
    name: r.name,
    description: r.description,
    sizeGb: Number(r.size_gb),
    status: r.status,
    fault: json<VolumeFault | null>(r.fault, null),
    taskDeadline: r.task_deadline,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** Records a snapshot, CREATING until `taskDeadline`. */
export async function insertSnapshot(
  q: Queryable,
  s: { id: string; volumeId: string; projectId: string; name: string; description: string; sizeGb: number; taskDeadline: Date },
): Promise<void> {
  await exec(
    q,
    "INSERT INTO volume_snapshots (id, volume_id, project_id, name, description, size_gb, status, task_deadline) VALUES (?, ?, ?, ?, ?, ?, 'CREATING', ?)",
    [s.id, s.volumeId, s.projectId, s.name, s.description, s.sizeGb, s.taskDeadline],
  );
}

/** A snapshot; `lock` true locks it, "share" keeps it from changing until the caller commits. */
export async function getSnapshot(q: Queryable, id: string, opts: { lock?: boolean | "share" } = {}): Promise<VolumeSnapshot | null> {
  const lock = opts.lock === "share" ? " LOCK IN SHARE MODE" : opts.lock ? " FOR UPDATE" : "";
  const rows = await select(q, `SELECT ${COLUMNS} FROM volume_snapshots WHERE id = ?${lock}`, [id]);
  return rows[0] ? rowToSnapshot(rows[0]) : null;
}

/** Snapshots, oldest first: of a project (any when undefined), of a volume (any when undefined). */
export async function listSnapshots(q: Queryable, f: { projectId?: string; volumeId?: string }): Promise<VolumeSnapshot[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.projectId !== undefined) (where.push("project_id = ?"), params.push(f.projectId));
  if (f.volumeId !== undefined) (where.push("volume_id = ?"), params.push(f.volumeId));
  return (await select(q, `SELECT ${COLUMNS} FROM volume_snapshots ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY created_at, id`, params)).map(rowToSnapshot);
}

/** Whether a volume is being made from the snapshot now. */
export async function snapshotBeingCopied(q: Queryable, snapshotId: string): Promise<boolean> {
  return (await select(q, "SELECT 1 FROM volumes WHERE source_snapshot_id = ? AND status = 'CREATING' LIMIT 1", [snapshotId])).length > 0;
}

/** Whether a volume has snapshots. */
export async function hasSnapshots(q: Queryable, volumeId: string): Promise<boolean> {
  return (await select(q, "SELECT 1 FROM volume_snapshots WHERE volume_id = ? LIMIT 1", [volumeId])).length > 0;
}

export async function updateSnapshot(q: Queryable, id: string, patch: { status?: SnapshotStatus; fault?: VolumeFault | null; taskDeadline?: Date | null }): Promise<void> {
  const sets = ["updated_at = CURRENT_TIMESTAMP(3)"];
  const params: unknown[] = [];
  if (patch.status !== undefined) (sets.push("status = ?"), params.push(patch.status));
  if (patch.fault !== undefined) (sets.push("fault = ?"), params.push(patch.fault === null ? null : JSON.stringify(patch.fault)));
  if (patch.taskDeadline !== undefined) (sets.push("task_deadline = ?"), params.push(patch.taskDeadline));
  params.push(id);
  await exec(q, `UPDATE volume_snapshots SET ${sets.join(", ")} WHERE id = ?`, params);
}

export async function deleteSnapshotRow(q: Queryable, id: string): Promise<void> {
  await exec(q, "DELETE FROM volume_snapshots WHERE id = ?", [id]);
}

/** Snapshots past their deadline, locked (others' locked rows skipped). */
export async function lockOverdueSnapshots(q: Queryable, now: Date, limit: number): Promise<VolumeSnapshot[]> {
  const rows = await select(q, `SELECT ${COLUMNS} FROM volume_snapshots WHERE task_deadline IS NOT NULL AND task_deadline < ? ORDER BY task_deadline LIMIT ? FOR UPDATE SKIP LOCKED`, [
    now,
    limit,
  ]);
  return rows.map(rowToSnapshot);
}
