import type { Flavor, Image } from "../domain/types.js";
import type { Queryable, Row } from "./db.js";
import { exec, json, select, txLocal } from "./db.js";

// Flavors and images: the catalog servers are built from.

function rowToFlavor(r: Row): Flavor {
  return {
    id: r.id,
    name: r.name,
    vcpus: r.vcpus,
    ramMb: Number(r.ram_mb),
    diskGb: Number(r.disk_gb),
    description: r.description,
    extraSpecs: json(r.extra_specs, {}),
  };
}

export async function insertFlavor(q: Queryable, f: Flavor): Promise<void> {
  await exec(q, "INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gb, description, extra_specs) VALUES (?, ?, ?, ?, ?, ?, ?)", [
    f.id,
    f.name,
    f.vcpus,
    f.ramMb,
    f.diskGb,
    f.description,
    JSON.stringify(f.extraSpecs),
  ]);
}

/** Finds a flavor by id, or else by name. */
export async function getFlavor(q: Queryable, idOrName: string): Promise<Flavor | null> {
  const rows = await select(q, "SELECT * FROM flavors WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1", [idOrName, idOrName, idOrName]);
  return rows[0] ? rowToFlavor(rows[0]) : null;
}

/** Lists flavors ordered by (ram, id); `after` is the last (ram, id) of the previous page. */
export async function listFlavors(q: Queryable, f: { after?: { ramMb: number; id: string }; limit: number }): Promise<Flavor[]> {
  const rows = f.after
    ? await select(q, "SELECT * FROM flavors WHERE (ram_mb, id) > (?, ?) ORDER BY ram_mb, id LIMIT ?", [f.after.ramMb, f.after.id, f.limit])
    : await select(q, "SELECT * FROM flavors ORDER BY ram_mb, id LIMIT ?", [f.limit]);
  return rows.map(rowToFlavor);
}

export async function deleteFlavor(q: Queryable, id: string): Promise<boolean> {
  return (await exec(q, "DELETE FROM flavors WHERE id = ?", [id])).affectedRows === 1;
}

function rowToImage(r: Row): Image {
  return {
    id: r.id,
    name: r.name,
    projectId: r.project_id,
    status: r.status,
    visibility: r.visibility,
    diskFormat: r.disk_format,
    containerFormat: r.container_format,
    sizeBytes: Number(r.size_bytes),
    checksum: r.checksum,
    minDiskGb: Number(r.min_disk_gb),
    minRamMb: Number(r.min_ram_mb),
    properties: json(r.properties, {}),
    hasData: Number(r.has_data) === 1,
    createdAt: r.created_at,
  };
}

export async function insertImage(q: Queryable, i: Omit<Image, "createdAt" | "hasData">): Promise<void> {
  await writeImages(
    q,
    `INSERT INTO images (id, name, project_id, status, visibility, disk_format, container_format, size_bytes, checksum,
       min_disk_gb, min_ram_mb, properties) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    [
      i.id,
      i.name,
      i.projectId,
      i.status,
      i.visibility,
      i.diskFormat,
      i.containerFormat,
      i.sizeBytes,
      i.checksum,
      i.minDiskGb,
      i.minRamMb,
      JSON.stringify(i.properties),
    ],
  );
}

const IMAGES_READ = Symbol("images read in this transaction");

/**
 * The images a transaction has read by id, until it writes one: the
 * transactions that place and build servers read a batch's image once, not
 * once per server and step.
 */
function imagesRead(q: Queryable): Map<string, Image | null> | undefined {
  return txLocal(q, IMAGES_READ, () => new Map<string, Image | null>(), { cache: true });
}

/** Every write of the images table: what the transaction read of them is read again after it. */
async function writeImages(q: Queryable, sql: string, params: unknown[]) {
  imagesRead(q)?.clear();
  return exec(q, sql, params);
}

/** An image the project can see (its own or public); `projectId` undefined = any (admin). */
export async function getImage(q: Queryable, id: string, projectId: string | undefined): Promise<Image | null> {
  if (projectId === undefined) {
    const read = imagesRead(q);
    if (read?.has(id)) return read.get(id)!;
    const rows = await select(q, "SELECT * FROM images WHERE id = ? AND deleted_at IS NULL", [id]);
    const image = rows[0] ? rowToImage(rows[0]) : null;
    read?.set(id, image);
    return image;
  }
  const rows = await select(q, "SELECT * FROM images WHERE id = ? AND deleted_at IS NULL AND (visibility = 'public' OR project_id = ?)", [id, projectId]);
  return rows[0] ? rowToImage(rows[0]) : null;
}

/** Lists visible images, newest first; `after` is the last (created_at, id) of the previous page. */
export async function listImages(
  q: Queryable,
  f: { projectId: string | undefined; after?: { createdAt: Date; id: string }; limit: number },
): Promise<Image[]> {
  const where = ["deleted_at IS NULL"];
  const params: unknown[] = [];
  if (f.projectId !== undefined) {
    where.push("(visibility = 'public' OR project_id = ?)");
    params.push(f.projectId);
  }
  if (f.after) {
    where.push("(created_at, id) < (?, ?)");
    params.push(f.after.createdAt, f.after.id);
  }
  params.push(f.limit);
  const rows = await select(q, `SELECT * FROM images WHERE ${where.join(" AND ")} ORDER BY created_at DESC, id DESC LIMIT ?`, params);
  return rows.map(rowToImage);
}

export async function deleteImage(q: Queryable, id: string): Promise<boolean> {
  const res = await writeImages(q, "UPDATE images SET deleted_at = CURRENT_TIMESTAMP(3), status = 'deleted' WHERE id = ? AND deleted_at IS NULL", [id]);
  return res.affectedRows === 1;
}

/** A snapshot stored by a host: the queued image becomes active with its size and checksum. */
export async function activateImage(q: Queryable, id: string, data: { sizeBytes: number; checksum: string; diskFormat: string }): Promise<void> {
  await writeImages(
    q,
    "UPDATE images SET status = 'active', has_data = 1, size_bytes = ?, checksum = ?, disk_format = IF(? = '', disk_format, ?) WHERE id = ? AND deleted_at IS NULL",
    [data.sizeBytes, data.checksum, data.diskFormat, data.diskFormat, id],
  );
}

/**
 * Seconds without a heartbeat after which an upload counts as dead (its
 * controller stopped) and the image may be uploaded again.
 */
export const UPLOAD_STALE_SECONDS = 120;

/**
 * Marks a queued image as being uploaded (SAVING). False when it is not
 * queued, unless its upload has stopped beating for
 * {@link UPLOAD_STALE_SECONDS} (a controller that died mid-upload).
 */
export async function beginImageUpload(q: Queryable, id: string): Promise<boolean> {
  const res = await writeImages(
    q,
    `UPDATE images SET status = 'saving', upload_heartbeat_at = CURRENT_TIMESTAMP(3)
      WHERE id = ? AND deleted_at IS NULL
        AND (status = 'queued' OR (status = 'saving' AND upload_heartbeat_at < CURRENT_TIMESTAMP(3) - INTERVAL ${UPLOAD_STALE_SECONDS} SECOND))`,
    [id],
  );
  return res.affectedRows === 1;
}

/** Keeps a running upload from counting as dead. */
export async function beatImageUpload(q: Queryable, id: string): Promise<void> {
  await writeImages(q, "UPDATE images SET upload_heartbeat_at = CURRENT_TIMESTAMP(3) WHERE id = ? AND status = 'saving'", [id]);
}

/** Ends an upload: ACTIVE with the stored size and checksum, or QUEUED again when `data` is null. False if the image was deleted meanwhile. */
export async function endImageUpload(q: Queryable, id: string, data: { sizeBytes: number; checksum: string } | null): Promise<boolean> {
  const res = data
    ? await writeImages(
        q,
        "UPDATE images SET status = 'active', has_data = 1, size_bytes = ?, checksum = ?, upload_heartbeat_at = NULL WHERE id = ? AND status = 'saving' AND deleted_at IS NULL",
        [data.sizeBytes, data.checksum, id],
      )
    : await writeImages(q, "UPDATE images SET status = 'queued', upload_heartbeat_at = NULL WHERE id = ? AND status = 'saving' AND deleted_at IS NULL", [id]);
  return res.affectedRows === 1;
}
