/**
 * The volume tables: the storage pools volume hosts report, volume types,
 * volumes, their actions (operations) and the ops sent to volume hosts.
 * Part of the schema history in migrations.ts.
 */
import { CREATED_NOW as TS, type Migration } from "./db.js";

export const VOLUME_MIGRATIONS: readonly Migration[] = [
  {
    version: 16,
    name: "the storage pools of volume hosts",
    statements: [
      `CREATE TABLE volume_pools (
        host VARCHAR(255) NOT NULL,
        name VARCHAR(64) NOT NULL,
        backend VARCHAR(32) NOT NULL,
        total_bytes BIGINT NOT NULL,
        free_bytes BIGINT NOT NULL,
        provisioned_bytes BIGINT NOT NULL,
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        PRIMARY KEY (host, name)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 18,
    name: "volumes, volume types, their actions and ops",
    statements: [
      `ALTER TABLE volume_pools ADD COLUMN allocated_bytes BIGINT NOT NULL DEFAULT 0`,
      `CREATE TABLE volume_types (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(64) NOT NULL,
        backend VARCHAR(32) NOT NULL DEFAULT '',
        description VARCHAR(255) NOT NULL DEFAULT '',
        created_at ${TS},
        UNIQUE KEY volume_types_name (name)
      ) ENGINE=InnoDB`,
      `INSERT INTO volume_types (id, name, description) VALUES (UUID(), 'default', 'Volumes on any backend')`,
      `CREATE TABLE volumes (
        id CHAR(36) NOT NULL PRIMARY KEY,
        project_id VARCHAR(64) NOT NULL,
        name VARCHAR(255) NOT NULL DEFAULT '',
        description VARCHAR(255) NOT NULL DEFAULT '',
        size_gb INT NOT NULL,
        type_id CHAR(36) NOT NULL,
        zone VARCHAR(255) NOT NULL DEFAULT '',
        status VARCHAR(16) NOT NULL,
        host VARCHAR(255) NOT NULL,
        pool VARCHAR(64) NOT NULL,
        source_image_id CHAR(36) NULL,
        request_id VARCHAR(128) NOT NULL,
        fault JSON NULL,
        task_deadline DATETIME(3) NULL,
        created_at ${TS},
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        UNIQUE KEY volumes_request (project_id, request_id),
        KEY volumes_pool (host, pool),
        KEY volumes_type (type_id),
        KEY volumes_deadline (task_deadline),
        KEY volumes_project (project_id, created_at, id),
        KEY volumes_created (created_at, id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE volume_actions (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        volume_id CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        action VARCHAR(32) NOT NULL,
        request_id VARCHAR(128) NOT NULL,
        request_body JSON NULL,
        state VARCHAR(16) NOT NULL DEFAULT 'RUNNING',
        error JSON NULL,
        deadline DATETIME(3) NULL,
        start_time ${TS},
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        finish_time DATETIME(3) NULL,
        UNIQUE KEY volume_actions_request (volume_id, request_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE volume_ops (
        op_id CHAR(36) NOT NULL PRIMARY KEY,
        volume_id CHAR(36) NOT NULL,
        action_id BIGINT NOT NULL,
        host VARCHAR(255) NOT NULL,
        kind VARCHAR(32) NOT NULL,
        state VARCHAR(16) NOT NULL DEFAULT 'PENDING',
        error JSON NULL,
        created_at ${TS},
        finished_at DATETIME(3) NULL,
        KEY volume_ops_volume (volume_id, state),
        KEY volume_ops_host (host, state, kind)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 19,
    name: "volume attachments",
    statements: [
      `CREATE TABLE volume_attachments (
        id CHAR(36) NOT NULL PRIMARY KEY,
        volume_id CHAR(36) NOT NULL,
        instance_uuid CHAR(36) NOT NULL,
        compute_host VARCHAR(255) NOT NULL,
        device VARCHAR(32) NOT NULL DEFAULT '',
        delete_on_termination TINYINT NOT NULL DEFAULT 0,
        state VARCHAR(16) NOT NULL,
        export JSON NULL,
        created_at ${TS},
        UNIQUE KEY attachments_volume (volume_id),
        KEY attachments_instance (instance_uuid)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 20,
    name: "volume snapshots",
    statements: [
      `CREATE TABLE volume_snapshots (
        id CHAR(36) NOT NULL PRIMARY KEY,
        volume_id CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        name VARCHAR(255) NOT NULL DEFAULT '',
        description VARCHAR(255) NOT NULL DEFAULT '',
        size_gb INT NOT NULL,
        status VARCHAR(16) NOT NULL,
        fault JSON NULL,
        task_deadline DATETIME(3) NULL,
        created_at ${TS},
        updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        KEY snapshots_volume (volume_id),
        KEY snapshots_project (project_id, created_at),
        KEY snapshots_deadline (task_deadline)
      ) ENGINE=InnoDB`,
      `ALTER TABLE volume_actions ADD COLUMN snapshot_id CHAR(36) NULL`,
      `ALTER TABLE volumes ADD COLUMN source_snapshot_id CHAR(36) NULL`,
      // The size an extend claimed on the pool before its host grew the volume.
      `ALTER TABLE volumes ADD COLUMN claimed_gb INT NULL`,
    ],
  },
  {
    version: 21,
    name: "attachments that move with their server",
    statements: [
      // The id of the attachment's export on its volume host (NULL: the attachment's own); a live migration changes it.
      `ALTER TABLE volume_attachments ADD COLUMN export_id CHAR(36) NULL`,
      // The export made for a live migration's target while the server moves: { host, exportId, opId, export }.
      `ALTER TABLE volume_attachments ADD COLUMN move JSON NULL`,
    ],
  },
  {
    version: 22,
    name: "servers booted from a volume",
    statements: [
      // Its root disk is a volume: placement claims no local disk for it (Nova's is_bfv request spec).
      `ALTER TABLE instances ADD COLUMN boots_from_volume TINYINT(1) NOT NULL DEFAULT 0`,
      `UPDATE instances i SET boots_from_volume = 1 WHERE EXISTS (SELECT 1 FROM volume_attachments a WHERE a.instance_uuid = i.uuid AND a.device = 'vda')`,
    ],
  },
];
