/**
 * Key pairs: a project's SSH public keys, by name; and the migrations of
 * what a server's guest is given (its key, user data, config drive) and of
 * its other attributes (description, tags).
 */
import type { KeyType } from "../domain/ssh-keys.js";
import { CREATED_NOW as TS, exec, select, type Migration, type Queryable } from "./db.js";

export const KEYPAIR_MIGRATIONS: readonly Migration[] = [
  {
    version: 24,
    name: "key pairs, and the key a server was made with",
    statements: [
      `CREATE TABLE key_pairs (
        project_id VARCHAR(64) NOT NULL,
        name VARCHAR(255) NOT NULL,
        type VARCHAR(32) NOT NULL,
        public_key TEXT NOT NULL,
        fingerprint VARCHAR(128) NOT NULL,
        created_at ${TS},
        PRIMARY KEY (project_id, name)
      ) ENGINE=InnoDB`,
      // A copy: deleting the key pair later leaves the server's key as it was made.
      `ALTER TABLE instances ADD COLUMN key_name VARCHAR(255) NULL, ADD COLUMN key_data TEXT NULL`,
    ],
  },
  {
    version: 25,
    name: "what a guest is told about itself: host name, user data, config drive",
    statements: [
      // Servers made before keep '' and are given their display name, sanitised, when read.
      `ALTER TABLE instances ADD COLUMN hostname VARCHAR(63) NOT NULL DEFAULT '', ADD COLUMN config_drive TINYINT(1) NOT NULL DEFAULT 0,
         ADD COLUMN user_data MEDIUMBLOB NULL`,
    ],
  },
  {
    version: 26,
    name: "a server's description and tags",
    statements: [`ALTER TABLE instances ADD COLUMN description VARCHAR(255) NOT NULL DEFAULT '', ADD COLUMN tags JSON NULL`],
  },
];

export interface Keypair {
  readonly projectId: string;
  readonly name: string;
  readonly type: KeyType;
  readonly publicKey: string;
  readonly fingerprint: string;
  readonly createdAt: Date;
}

type Row = { project_id: string; name: string; type: string; public_key: string; fingerprint: string; created_at: Date };

const COLUMNS = "project_id, name, type, public_key, fingerprint, created_at";
const toKeypair = (r: Row): Keypair => ({
  projectId: r.project_id,
  name: r.name,
  type: r.type as KeyType,
  publicKey: r.public_key,
  fingerprint: r.fingerprint,
  createdAt: r.created_at,
});

/** Inserts a key pair; a duplicate name in the project is a duplicate-key error. */
export async function insertKeypair(q: Queryable, k: Omit<Keypair, "createdAt">): Promise<void> {
  await exec(q, "INSERT INTO key_pairs (project_id, name, type, public_key, fingerprint) VALUES (?, ?, ?, ?, ?)", [k.projectId, k.name, k.type, k.publicKey, k.fingerprint]);
}

export async function getKeypair(q: Queryable, projectId: string, name: string): Promise<Keypair | null> {
  const [r] = await select<Row>(q, `SELECT ${COLUMNS} FROM key_pairs WHERE project_id = ? AND name = ?`, [projectId, name]);
  return r ? toKeypair(r) : null;
}

export async function listKeypairs(q: Queryable, projectId: string): Promise<Keypair[]> {
  return (await select<Row>(q, `SELECT ${COLUMNS} FROM key_pairs WHERE project_id = ? ORDER BY name`, [projectId])).map(toKeypair);
}

/** Deletes a key pair; false when there was none. */
export async function deleteKeypair(q: Queryable, projectId: string, name: string): Promise<boolean> {
  return (await exec(q, "DELETE FROM key_pairs WHERE project_id = ? AND name = ?", [projectId, name])).affectedRows === 1;
}
