/**
 * The volume tables: the storage pools volume hosts report. Part of the
 * schema history in migrations.ts.
 */
import type { Migration } from "./db.js";

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
];
