/**
 * What a host may read and write of the image store: the bytes it needs for
 * the work it has, and nothing else (AgentService's DownloadHostObject,
 * UploadHostObject and DeleteMigrationDisk). Every answer starts from the
 * host: its instances (`instances_host`) and its ops not yet done
 * (`ops_host`), so a host's question never scans other hosts' servers.
 */
import { OP_KINDS, OP_TRAITS } from "../domain/ops.js";
import type { Queryable } from "./db.js";
import { select } from "./db.js";

/** Op kinds that run on a volume host: they name a server but need none of its images. */
const VOLUME_HOST_KINDS = OP_KINDS.filter((k) => OP_TRAITS[k].onVolumeHost);

/**
 * Whether `host` needs the bytes of image `imageId`: a server on the host,
 * or one an op of the host not yet done works on (a build, an unshelve, a
 * rebuild or evacuation, a migration's or live migration's target), uses it
 * as its image or shelved image, or as the kernel or ramdisk either names
 * — the latter only when that image is public or the server's project's own
 * (image properties are the tenant's to write: naming another project's
 * private image there gains nothing). A volume host's ops on a server's
 * volume (export, unexport) give it no right to the server's image.
 */
export async function hostNeedsImage(q: Queryable, host: string, imageId: string): Promise<boolean> {
  const rows = await select(
    q,
    `SELECT STRAIGHT_JOIN 1
       FROM (SELECT uuid FROM instances WHERE host = ? AND deleted_at IS NULL
             UNION SELECT instance_uuid FROM compute_ops WHERE host = ? AND state = 'PENDING' AND kind NOT IN (?)) mine
       JOIN instances s ON s.uuid = mine.uuid AND s.deleted_at IS NULL
       LEFT JOIN images m ON m.id = s.image_id
       LEFT JOIN images sh ON sh.id = s.shelved_image_id
       LEFT JOIN images k ON k.id = ? AND k.deleted_at IS NULL
      WHERE ? IN (s.image_id, s.shelved_image_id)
         OR (? IN (JSON_UNQUOTE(JSON_EXTRACT(m.properties, '$.kernel_id')), JSON_UNQUOTE(JSON_EXTRACT(m.properties, '$.ramdisk_id')),
                   JSON_UNQUOTE(JSON_EXTRACT(sh.properties, '$.kernel_id')), JSON_UNQUOTE(JSON_EXTRACT(sh.properties, '$.ramdisk_id')))
             AND (k.visibility = 'public' OR k.project_id = s.project_id))
      LIMIT 1`,
    [host, host, VOLUME_HOST_KINDS, imageId, imageId, imageId],
  );
  return rows.length > 0;
}

/**
 * Whether `host` has a create_volume op not yet done for a volume copied
 * from image `imageId`, or a reimage_volume op not yet done for a server
 * being rebuilt from it (the image is the server's by then).
 */
export async function volumeHostNeedsImage(q: Queryable, host: string, imageId: string): Promise<boolean> {
  const rows = await select(
    q,
    `SELECT 1 FROM volume_ops o JOIN volumes v ON v.id = o.volume_id
      WHERE o.host = ? AND o.state = 'PENDING' AND o.kind = 'create_volume' AND v.source_image_id = ?
     UNION ALL
     SELECT 1 FROM compute_ops o JOIN instances s ON s.uuid = o.instance_uuid AND s.deleted_at IS NULL
      WHERE o.host = ? AND o.state = 'PENDING' AND o.kind = 'reimage_volume' AND s.image_id = ?
     LIMIT 1`,
    [host, imageId, host, imageId],
  );
  return rows.length > 0;
}

/**
 * Whether `host` may store the bytes of image `imageId`: an op of the host
 * not yet done belongs to the action that makes that image (an action that
 * stores a server's disk as an image records that image).
 */
export async function hostMakesImage(q: Queryable, host: string, imageId: string): Promise<boolean> {
  const rows = await select(
    q,
    `SELECT 1 FROM compute_ops o JOIN instance_actions a ON a.id = o.action_id
      WHERE o.host = ? AND o.state = 'PENDING' AND a.image_id = ?
      LIMIT 1`,
    [host, imageId],
  );
  return rows.length > 0;
}

/** Whether `host` has an op of one of `kinds` for server `serverId` not yet done (a cold migration's disk). */
export async function hostHasOpFor(q: Queryable, host: string, serverId: string, kinds: readonly string[]): Promise<boolean> {
  const rows = await select(q, "SELECT 1 FROM compute_ops WHERE host = ? AND instance_uuid = ? AND state = 'PENDING' AND kind IN (?) LIMIT 1", [
    host,
    serverId,
    kinds,
  ]);
  return rows.length > 0;
}
