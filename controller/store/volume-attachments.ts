/** Volume attachments (table volume_attachments): which server a volume is attached to, where and how. */
import type { AttachmentMove, AttachmentState, VolumeAttachment } from "../domain/volume.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, select } from "./db.js";

const COLUMNS = "id, volume_id, instance_uuid, compute_host, device, delete_on_termination, state, export, export_id, move, created_at";

function rowToAttachment(r: Row): VolumeAttachment {
  return {
    id: r.id,
    volumeId: r.volume_id,
    instanceUuid: r.instance_uuid,
    computeHost: r.compute_host,
    device: r.device,
    deleteOnTermination: r.delete_on_termination === 1,
    state: r.state,
    export: json<VolumeAttachment["export"]>(r.export, null),
    exportId: r.export_id ?? r.id,
    move: json<AttachmentMove | null>(r.move, null),
    createdAt: r.created_at,
  };
}

/** Records an attachment, "attaching". Throws ER_DUP_ENTRY when the volume has one. */
export async function insertAttachment(
  q: Queryable,
  a: { id: string; volumeId: string; instanceUuid: string; computeHost: string; device: string; deleteOnTermination: boolean },
): Promise<void> {
  await exec(
    q,
    "INSERT INTO volume_attachments (id, volume_id, instance_uuid, compute_host, device, delete_on_termination, state) VALUES (?, ?, ?, ?, ?, ?, 'attaching')",
    [a.id, a.volumeId, a.instanceUuid, a.computeHost, a.device, a.deleteOnTermination ? 1 : 0],
  );
}

export async function getAttachment(q: Queryable, id: string): Promise<VolumeAttachment | null> {
  const rows = await select(q, `SELECT ${COLUMNS} FROM volume_attachments WHERE id = ?`, [id]);
  return rows[0] ? rowToAttachment(rows[0]) : null;
}

/** A server's attachments, oldest first. */
export async function attachmentsOf(q: Queryable, instanceUuid: string): Promise<VolumeAttachment[]> {
  return (await select(q, `SELECT ${COLUMNS} FROM volume_attachments WHERE instance_uuid = ? ORDER BY created_at, id`, [instanceUuid])).map(rowToAttachment);
}

/** The attachments of volumes, by volume id. */
export async function attachmentsOfVolumes(q: Queryable, volumeIds: readonly string[]): Promise<Map<string, VolumeAttachment[]>> {
  const out = new Map<string, VolumeAttachment[]>();
  if (volumeIds.length === 0) return out;
  for (const r of await select(q, `SELECT ${COLUMNS} FROM volume_attachments WHERE volume_id IN (?) ORDER BY created_at`, [volumeIds])) {
    const a = rowToAttachment(r);
    out.set(a.volumeId, [...(out.get(a.volumeId) ?? []), a]);
  }
  return out;
}

export async function updateAttachment(
  q: Queryable,
  id: string,
  patch: {
    state?: AttachmentState;
    device?: string;
    export?: VolumeAttachment["export"];
    exportId?: string;
    computeHost?: string;
    move?: AttachmentMove | null;
  },
): Promise<void> {
  const sets: string[] = [];
  const params: unknown[] = [];
  const jsonOf = (x: object | null) => (x === null ? null : JSON.stringify(x));
  if (patch.state !== undefined) (sets.push("state = ?"), params.push(patch.state));
  if (patch.device !== undefined) (sets.push("device = ?"), params.push(patch.device));
  if (patch.export !== undefined) (sets.push("export = ?"), params.push(jsonOf(patch.export)));
  if (patch.exportId !== undefined) (sets.push("export_id = ?"), params.push(patch.exportId));
  if (patch.computeHost !== undefined) (sets.push("compute_host = ?"), params.push(patch.computeHost));
  if (patch.move !== undefined) (sets.push("move = ?"), params.push(jsonOf(patch.move)));
  if (sets.length === 0) return;
  params.push(id);
  await exec(q, `UPDATE volume_attachments SET ${sets.join(", ")} WHERE id = ?`, params);
}

export async function deleteAttachment(q: Queryable, id: string): Promise<void> {
  await exec(q, "DELETE FROM volume_attachments WHERE id = ?", [id]);
}
