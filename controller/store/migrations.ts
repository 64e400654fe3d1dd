import { CREATED_NOW as TS, exec, select, type Migration, type Pool } from "./db.js";
import { NETWORK_MIGRATIONS } from "./network-schema.js";
import { KEYPAIR_MIGRATIONS } from "./keypairs.js";
import { QUOTA_MIGRATIONS } from "./quotas.js";
import { VOLUME_MIGRATIONS } from "./volume-schema.js";

export type { Migration };

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "core tables",
    statements: [
      `CREATE TABLE api_tokens (
        id CHAR(36) NOT NULL PRIMARY KEY,
        secret_hash CHAR(64) NOT NULL UNIQUE,
        project_id VARCHAR(64) NOT NULL,
        role VARCHAR(16) NOT NULL,
        description VARCHAR(255) NOT NULL DEFAULT '',
        created_at ${TS}
      ) ENGINE=InnoDB`,
      `CREATE TABLE flavors (
        id VARCHAR(64) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL UNIQUE,
        vcpus INT NOT NULL,
        ram_mb BIGINT NOT NULL,
        disk_gb BIGINT NOT NULL,
        description TEXT NOT NULL,
        extra_specs JSON NOT NULL,
        created_at ${TS}
      ) ENGINE=InnoDB`,
      `CREATE TABLE images (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL,
        visibility VARCHAR(16) NOT NULL,
        disk_format VARCHAR(16) NOT NULL,
        container_format VARCHAR(16) NOT NULL,
        size_bytes BIGINT NOT NULL DEFAULT 0,
        checksum VARCHAR(64) NOT NULL DEFAULT '',
        min_disk_gb BIGINT NOT NULL DEFAULT 0,
        min_ram_mb BIGINT NOT NULL DEFAULT 0,
        properties JSON NOT NULL,
        created_at ${TS},
        deleted_at DATETIME(3) NULL,
        KEY images_visible (deleted_at, visibility, project_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE compute_nodes (
        id CHAR(36) NOT NULL PRIMARY KEY,
        host VARCHAR(255) NOT NULL UNIQUE,
        hypervisor_type VARCHAR(32) NOT NULL,
        zone VARCHAR(255) NOT NULL,
        version VARCHAR(64) NOT NULL DEFAULT '',
        vcpus INT NOT NULL,
        memory_mb BIGINT NOT NULL,
        disk_gb BIGINT NOT NULL,
        vcpus_used INT NOT NULL DEFAULT 0,
        memory_mb_used BIGINT NOT NULL DEFAULT 0,
        disk_gb_used BIGINT NOT NULL DEFAULT 0,
        running_vms INT NOT NULL DEFAULT 0,
        cpu_allocation_ratio DOUBLE NOT NULL,
        ram_allocation_ratio DOUBLE NOT NULL,
        disk_allocation_ratio DOUBLE NOT NULL,
        reserved_memory_mb BIGINT NOT NULL DEFAULT 0,
        free_memory_mb_reported BIGINT NOT NULL DEFAULT 0,
        free_disk_gb_reported BIGINT NOT NULL DEFAULT 0,
        enabled TINYINT(1) NOT NULL DEFAULT 1,
        disabled_reason VARCHAR(255) NOT NULL DEFAULT '',
        last_seen_at DATETIME(3) NULL,
        generation BIGINT NOT NULL DEFAULT 0,
        created_at ${TS}
      ) ENGINE=InnoDB`,
      `CREATE TABLE instances (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        uuid CHAR(36) NOT NULL UNIQUE,
        name VARCHAR(255) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        request_id VARCHAR(128) NOT NULL,
        flavor_id VARCHAR(64) NOT NULL,
        flavor_name VARCHAR(255) NOT NULL,
        vcpus INT NOT NULL,
        ram_mb BIGINT NOT NULL,
        disk_gb BIGINT NOT NULL,
        extra_specs JSON NOT NULL,
        image_id CHAR(36) NOT NULL,
        host VARCHAR(255) NULL,
        vm_state VARCHAR(32) NOT NULL,
        task_state VARCHAR(32) NULL,
        power_state VARCHAR(16) NOT NULL DEFAULT 'NOSTATE',
        fault JSON NULL,
        metadata JSON NOT NULL,
        attempt INT NOT NULL DEFAULT 0,
        tried_hosts JSON NOT NULL,
        created_at ${TS},
        updated_at ${TS},
        launched_at DATETIME(3) NULL,
        deleted_at DATETIME(3) NULL,
        UNIQUE KEY instances_request (project_id, request_id),
        KEY instances_project (project_id, deleted_at, id),
        KEY instances_host (host),
        KEY instances_task (task_state)
      ) ENGINE=InnoDB`,
      `CREATE TABLE allocations (
        instance_uuid CHAR(36) NOT NULL,
        node_id CHAR(36) NOT NULL,
        vcpus INT NOT NULL,
        memory_mb BIGINT NOT NULL,
        disk_gb BIGINT NOT NULL,
        created_at ${TS},
        PRIMARY KEY (instance_uuid, node_id),
        KEY allocations_node (node_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE instance_actions (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        instance_uuid CHAR(36) NOT NULL,
        request_id VARCHAR(128) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        action VARCHAR(32) NOT NULL,
        start_time ${TS},
        finish_time DATETIME(3) NULL,
        message VARCHAR(255) NOT NULL DEFAULT '',
        UNIQUE KEY actions_request (instance_uuid, request_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE instance_action_events (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        action_id BIGINT NOT NULL,
        event VARCHAR(64) NOT NULL,
        host VARCHAR(255) NOT NULL DEFAULT '',
        start_time ${TS},
        finish_time DATETIME(3) NULL,
        result VARCHAR(16) NULL,
        fault TEXT NULL,
        op_id CHAR(36) NULL,
        KEY events_action (action_id),
        KEY events_op (op_id)
      ) ENGINE=InnoDB`,
      `CREATE TABLE compute_ops (
        op_id CHAR(36) NOT NULL PRIMARY KEY,
        instance_uuid CHAR(36) NOT NULL,
        action_id BIGINT NOT NULL,
        host VARCHAR(255) NOT NULL,
        kind VARCHAR(32) NOT NULL,
        attempt INT NOT NULL DEFAULT 1,
        state VARCHAR(16) NOT NULL DEFAULT 'PENDING',
        error JSON NULL,
        created_at ${TS},
        finished_at DATETIME(3) NULL,
        KEY ops_instance (instance_uuid)
      ) ENGINE=InnoDB`,
      `CREATE TABLE outbox (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        subject VARCHAR(512) NOT NULL,
        msg_id CHAR(36) NOT NULL,
        payload MEDIUMBLOB NOT NULL,
        created_at ${TS}
      ) ENGINE=InnoDB`,
      `CREATE TABLE server_changes (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        instance_uuid CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        snapshot JSON NOT NULL,
        created_at ${TS},
        KEY changes_instance (instance_uuid, id)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 2,
    name: "default flavors",
    statements: [
      `INSERT INTO flavors (id, name, vcpus, ram_mb, disk_gb, description, extra_specs) VALUES
        ('1', 'm1.tiny', 1, 512, 1, '', '{}'),
        ('2', 'm1.small', 1, 2048, 20, '', '{}'),
        ('3', 'm1.medium', 2, 4096, 40, '', '{}'),
        ('4', 'm1.large', 4, 8192, 80, '', '{}'),
        ('5', 'm1.xlarge', 8, 16384, 160, '', '{}')`,
    ],
  },
  {
    version: 3,
    name: "operations, deadlines, locks, migrations, ordered change log",
    statements: [
      `ALTER TABLE instances
        ADD COLUMN task_deadline DATETIME(3) NULL AFTER task_state,
        ADD COLUMN locked_by VARCHAR(16) NULL,
        ADD COLUMN locked_reason VARCHAR(255) NOT NULL DEFAULT '',
        ADD KEY instances_deadline (task_deadline)`,
      `ALTER TABLE instance_actions
        ADD COLUMN state VARCHAR(16) NOT NULL DEFAULT 'RUNNING',
        ADD COLUMN progress INT NOT NULL DEFAULT 0,
        ADD COLUMN progress_message VARCHAR(255) NOT NULL DEFAULT '',
        ADD COLUMN error JSON NULL,
        ADD COLUMN cancellable TINYINT(1) NOT NULL DEFAULT 0,
        ADD COLUMN updated_at ${TS},
        ADD COLUMN deadline DATETIME(3) NULL,
        ADD KEY actions_project (project_id, id),
        ADD KEY actions_state (state)`,
      `UPDATE instance_actions SET state = IF(finish_time IS NULL, 'RUNNING', IF(message = 'Error', 'FAILED', 'SUCCEEDED'))`,
      `ALTER TABLE instance_action_events ADD COLUMN details TEXT NULL`,
      `CREATE TABLE migrations (
        id CHAR(36) NOT NULL PRIMARY KEY,
        instance_uuid CHAR(36) NOT NULL,
        project_id VARCHAR(64) NOT NULL,
        action_id BIGINT NOT NULL,
        request_id VARCHAR(128) NOT NULL,
        type VARCHAR(16) NOT NULL,
        status VARCHAR(16) NOT NULL,
        source_host VARCHAR(255) NOT NULL,
        target_host VARCHAR(255) NULL,
        requested_host VARCHAR(255) NULL,
        old_flavor JSON NOT NULL,
        new_flavor JSON NOT NULL,
        old_vm_state VARCHAR(32) NOT NULL,
        tried_hosts JSON NOT NULL,
        created_at ${TS},
        updated_at ${TS},
        KEY migrations_instance (instance_uuid, created_at),
        KEY migrations_status (status, updated_at)
      ) ENGINE=InnoDB`,
      // WatchServers' index: taken from this counter at commit time, so
      // indexes become visible strictly in order (see store/changes.ts).
      `CREATE TABLE change_counter (id TINYINT NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB`,
      `INSERT INTO change_counter (id, n) SELECT 1, COALESCE(MAX(id), 0) FROM server_changes`,
    ],
  },
  {
    version: 4,
    name: "shelved images, migration URIs, images made by actions",
    statements: [
      `ALTER TABLE instances ADD COLUMN shelved_image_id CHAR(36) NULL`,
      `ALTER TABLE compute_nodes ADD COLUMN migration_uri VARCHAR(1024) NOT NULL DEFAULT ''`,
      `ALTER TABLE instance_actions ADD COLUMN image_id CHAR(36) NULL`,
    ],
  },
  {
    version: 5,
    name: "deadlines for tasks started before deadlines existed",
    statements: [
      // An hour from the upgrade: long enough for any task of the old
      // controller to finish, and then the reaper ends it.
      `UPDATE instances SET task_deadline = CURRENT_TIMESTAMP(3) + INTERVAL 1 HOUR WHERE task_state IS NOT NULL AND task_deadline IS NULL`,
      `UPDATE instance_actions SET deadline = CURRENT_TIMESTAMP(3) + INTERVAL 1 HOUR WHERE finish_time IS NULL AND deadline IS NULL`,
    ],
  },
  {
    version: 6,
    name: "image bytes: which images have them, uploads in progress",
    statements: [
      `ALTER TABLE images ADD COLUMN has_data TINYINT(1) NOT NULL DEFAULT 0, ADD COLUMN upload_heartbeat_at DATETIME(3) NULL`,
      // Snapshots (images made by an action) were stored by their host.
      `UPDATE images i JOIN instance_actions a ON a.image_id = i.id SET i.has_data = 1 WHERE i.status = 'active'`,
      `UPDATE images i JOIN instances s ON s.shelved_image_id = i.id SET i.has_data = 1 WHERE i.status = 'active'`,
    ],
  },
  {
    version: 7,
    name: "scheduling: zones and hints of servers, server groups, host aggregates, per-host reservations, build failures",
    statements: [
      `ALTER TABLE instances ADD COLUMN availability_zone VARCHAR(255) NOT NULL DEFAULT '',
         ADD COLUMN scheduler_hints JSON NULL, ADD COLUMN server_group_id CHAR(36) NULL,
         ADD COLUMN alternate_hosts JSON NULL,
         ADD INDEX instances_group (server_group_id)`,
      `ALTER TABLE compute_nodes ADD COLUMN reserved_vcpus INT NOT NULL DEFAULT 0,
         ADD COLUMN reserved_disk_gb BIGINT NOT NULL DEFAULT 0,
         ADD COLUMN architecture VARCHAR(32) NOT NULL DEFAULT '',
         ADD COLUMN failed_builds INT NOT NULL DEFAULT 0`,
      `CREATE TABLE server_groups (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        project_id VARCHAR(255) NOT NULL,
        policy VARCHAR(32) NOT NULL,
        max_server_per_host INT NOT NULL DEFAULT 1,
        created_at ${TS},
        deleted_at DATETIME(3) NULL,
        INDEX server_groups_project (project_id, deleted_at)
      ) ENGINE=InnoDB`,
      `CREATE TABLE aggregates (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        metadata JSON NOT NULL,
        created_at ${TS},
        updated_at ${TS},
        UNIQUE KEY aggregates_name (name)
      ) ENGINE=InnoDB`,
      `CREATE TABLE aggregate_hosts (
        aggregate_id CHAR(36) NOT NULL,
        host VARCHAR(255) NOT NULL,
        PRIMARY KEY (aggregate_id, host),
        INDEX aggregate_hosts_host (host)
      ) ENGINE=InnoDB`,
    ],
  },
  {
    version: 8,
    name: "the request each action was made with, so a request id reused for another request is refused",
    statements: [`ALTER TABLE instance_actions ADD COLUMN request_body JSON NULL`],
  },
  {
    version: 9,
    name: "tenant hardening: token expiry and kind, the audit trail, operations in their server's project",
    statements: [
      `ALTER TABLE api_tokens ADD COLUMN expire_time DATETIME(3) NULL,
         ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'api'`,
      // The configuration's admin token was told apart by its description only.
      `UPDATE api_tokens SET kind = 'configuration' WHERE description = 'admin token from configuration' AND role = 'admin'`,
      `CREATE TABLE audit_records (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        time ${TS},
        token_id VARCHAR(36) NOT NULL DEFAULT '',
        project_id VARCHAR(64) NOT NULL DEFAULT '',
        role VARCHAR(16) NOT NULL DEFAULT '',
        method VARCHAR(128) NOT NULL,
        target VARCHAR(255) NOT NULL DEFAULT '',
        request_id VARCHAR(128) NOT NULL DEFAULT '',
        code INT NOT NULL,
        reason VARCHAR(64) NOT NULL DEFAULT '',
        KEY audit_time (time),
        KEY audit_project (project_id, id),
        KEY audit_token (token_id, id)
      ) ENGINE=InnoDB`,
      // An admin's action on a tenant's server belongs to the server's project.
      `UPDATE instance_actions a JOIN instances i ON i.uuid = a.instance_uuid SET a.project_id = i.project_id WHERE a.project_id <> i.project_id`,
    ],
  },
  {
    version: 10,
    name: "agent tokens bound to one host each",
    // Agent tokens of before stay unbound and are not enrolment tokens: they
    // speak for no host until reissued (one token used to serve every host).
    statements: [
      `ALTER TABLE api_tokens ADD COLUMN host VARCHAR(255) NULL, ADD UNIQUE KEY api_tokens_host (host),
         ADD COLUMN enrolment TINYINT(1) NOT NULL DEFAULT 0`,
    ],
  },
  {
    version: 12,
    name: "a host's ops not yet done, by host: what image bytes a host may read and write",
    statements: [`ALTER TABLE compute_ops ADD KEY ops_host (host, state)`],
  },
  {
    version: 13,
    name: "keys the controllers share, such as the one that signs ops",
    statements: [
      `CREATE TABLE controller_keys (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        seed VARCHAR(128) NOT NULL,
        created_at ${TS}
      ) ENGINE=InnoDB`,
    ],
  },
  ...NETWORK_MIGRATIONS,
  {
    version: 15,
    name: "an action in flight records the image it makes (a server being shelved), as a snapshot's does",
    statements: [
      `UPDATE instance_actions a
         JOIN compute_ops o ON o.action_id = a.id AND o.state = 'PENDING'
         JOIN instances s ON s.uuid = a.instance_uuid AND s.task_state = 'SHELVING'
          SET a.image_id = s.shelved_image_id
        WHERE a.image_id IS NULL AND s.shelved_image_id IS NOT NULL`,
    ],
  },
  ...VOLUME_MIGRATIONS,
  ...QUOTA_MIGRATIONS,
  ...KEYPAIR_MIGRATIONS,
  {
    version: 28,
    name: "the trace an action, an op and an outbox message belong to (W3C traceparent; null when not traced)",
    statements: [
      "ALTER TABLE instance_actions ADD COLUMN trace_parent VARCHAR(64) NULL",
      "ALTER TABLE compute_ops ADD COLUMN trace_parent VARCHAR(64) NULL",
      "ALTER TABLE outbox ADD COLUMN trace_parent VARCHAR(64) NULL",
    ],
  },
];

/**
 * Stored routines: code rather than schema, so made again (CREATE OR
 * REPLACE) at every start after the migrations — a database restored
 * without its routines gets them back, and a change to one needs no new
 * migration. They run with the caller's rights (SQL SECURITY INVOKER).
 */
export const ROUTINES: readonly string[] = [
  // A transaction's server changes (store/changes.ts): their indexes from the
  // counter, the rows, and the commit, in one call. `changes` is a JSON array
  // of {"u": server uuid, "p": project id, "s": the snapshot's JSON text in
  // base64} in index order (base64: no character JSON_TABLE has to unquote,
  // which MariaDB before 10.11.10 did not do).
  `CREATE OR REPLACE PROCEDURE commit_server_changes(IN changes LONGTEXT) SQL SECURITY INVOKER
   BEGIN
     DECLARE k INT DEFAULT JSON_LENGTH(changes);
     UPDATE change_counter SET n = LAST_INSERT_ID(n + k) WHERE id = 1;
     IF ROW_COUNT() <> 1 THEN
       SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the change counter (change_counter row 1) is missing';
     END IF;
     INSERT INTO server_changes (id, instance_uuid, project_id, snapshot)
       SELECT LAST_INSERT_ID() - k + j.ord, j.u, j.p, CONVERT(FROM_BASE64(j.s) USING utf8mb4)
         FROM JSON_TABLE(changes, '$[*]' COLUMNS (ord FOR ORDINALITY, u CHAR(36) PATH '$.u', p VARCHAR(64) PATH '$.p', s LONGTEXT PATH '$.s')) AS j;
     COMMIT;
   END`,
];

/**
 * Applies the migrations the database lacks, in order. A named lock keeps
 * several controllers starting at once from racing.
 */
export async function migrate(pool: Pool, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  const conn = await pool.getConnection();
  const applied: number[] = [];
  try {
    const [lockRows] = await conn.query("SELECT GET_LOCK('novamesh_migrate', 60) AS l");
    if ((lockRows as Array<{ l: number }>)[0]?.l !== 1) throw new Error("timed out waiting for the migration lock");
    try {
      await exec(
        conn,
        `CREATE TABLE IF NOT EXISTS schema_migrations (
          version INT NOT NULL PRIMARY KEY,
          name VARCHAR(255) NOT NULL,
          applied_at ${TS}
        ) ENGINE=InnoDB`,
      );
      const done = new Set((await select<{ version: number }>(conn, "SELECT version FROM schema_migrations")).map((r) => r.version));
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(m.version)) continue;
        // MySQL DDL commits implicitly; each statement is idempotent only
        // through this table, so a failed migration must be fixed by hand.
        for (const sql of m.statements) await exec(conn, sql);
        await exec(conn, "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name]);
        applied.push(m.version);
      }
      for (const sql of ROUTINES) await exec(conn, sql);
    } finally {
      await conn.query("SELECT RELEASE_LOCK('novamesh_migrate')");
    }
  } finally {
    conn.release();
  }
  return applied;
}
