import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Principal, Role } from "../domain/types.js";
import type { Pool, Queryable } from "./db.js";
import { exec, select, withTx } from "./db.js";

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** How a token came to be: issued through the API, or the admin token of the configured secret. */
export type TokenKind = "api" | "configuration";

export interface TokenRecord {
  readonly id: string;
  readonly projectId: string;
  readonly role: Role;
  readonly description: string;
  readonly createdAt: Date;
  /** When it stops working; null: never. */
  readonly expireTime: Date | null;
  readonly kind: TokenKind;
  /** For an agent token: the host it speaks for (null until an enrolment token is used). */
  readonly host: string | null;
}

/** Another agent token already holds this host. */
export class HostTakenError extends Error {
  constructor(readonly host: string) {
    super(`host ${JSON.stringify(host)} is held by another agent token`);
  }
}

function isDuplicate(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === "ER_DUP_ENTRY";
}

/** Issues a token; the secret is returned once and stored only as a hash. */
export async function createToken(
  q: Queryable,
  t: { projectId: string; role: Role; description: string; secret?: string; host?: string | null; expireTime?: Date | null; ttlMs?: number },
): Promise<{ token: TokenRecord; secret: string }> {
  const secret = t.secret ?? `nm_${randomBytes(24).toString("base64url")}`;
  const id = randomUUID();
  try {
    // A ttl counts from the database's clock, the one expiry is checked against.
    await exec(
      q,
      `INSERT INTO api_tokens (id, secret_hash, project_id, role, description, host, enrolment, expire_time)
       VALUES (?, ?, ?, ?, ?, ?, ?, IF(? IS NULL, ?, CURRENT_TIMESTAMP(3) + INTERVAL ? MICROSECOND))`,
      [
        id,
        hashSecret(secret),
        t.projectId,
        t.role,
        t.description,
        t.host ?? null,
        // An agent token made without a host is an enrolment token.
        t.role === "agent" && !t.host ? 1 : 0,
        t.ttlMs ?? null,
        t.expireTime ?? null,
        Math.round((t.ttlMs ?? 0) * 1000),
      ],
    );
  } catch (err) {
    if (t.host && isDuplicate(err)) throw new HostTakenError(t.host);
    throw err;
  }
  const token = (await listTokens(q, { id }))[0]!;
  return { token, secret };
}

export async function listTokens(q: Queryable, f: { id?: string; projectId?: string } = {}): Promise<TokenRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.id) {
    where.push("id = ?");
    params.push(f.id);
  }
  if (f.projectId) {
    where.push("project_id = ?");
    params.push(f.projectId);
  }
  const rows = await select(
    q,
    `SELECT id, project_id, role, description, created_at, expire_time, kind, host FROM api_tokens ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY created_at, id`,
    params,
  );
  return rows.map((r) => ({
    id: r.id,
    projectId: r.project_id,
    role: r.role,
    description: r.description,
    createdAt: r.created_at,
    expireTime: r.expire_time ?? null,
    kind: r.kind,
    host: r.host ?? null,
  }));
}

export async function deleteToken(q: Queryable, id: string): Promise<boolean> {
  return (await exec(q, "DELETE FROM api_tokens WHERE id = ?", [id])).affectedRows === 1;
}

/**
 * The caller a secret stands for: its principal, "expired" for a token past
 * its expire_time (by the database's clock), or null for no token.
 */
export async function principalForSecret(q: Queryable, secret: string): Promise<Principal | "expired" | null> {
  const rows = await select(
    q,
    "SELECT id, project_id, role, host, expire_time IS NOT NULL AND expire_time <= CURRENT_TIMESTAMP(3) AS expired FROM api_tokens WHERE secret_hash = ?",
    [hashSecret(secret)],
  );
  const r = rows[0];
  if (!r) return null;
  if (Number(r.expired) === 1) return "expired";
  return { tokenId: r.id, projectId: r.project_id, role: r.role, host: r.host ?? null };
}

/** Of `ids`, the tokens that still exist and have not expired. */
export async function liveTokenIds(q: Queryable, ids: readonly string[]): Promise<Set<string>> {
  if (!ids.length) return new Set();
  const rows = await select<{ id: string }>(
    q,
    "SELECT id FROM api_tokens WHERE id IN (?) AND (expire_time IS NULL OR expire_time > CURRENT_TIMESTAMP(3))",
    [ids],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * Binds an enrolment token (an agent token created without a host) to
 * `host`, once; an unbound agent token that is not one is refused
 * (NotEnrolmentError).
 * Returns the host the token holds afterwards: `host`, or the one an earlier
 * (or concurrent) use bound it to; null when the token is gone.
 */
export async function bindAgentToken(q: Queryable, tokenId: string, host: string): Promise<string | null> {
  try {
    await exec(q, "UPDATE api_tokens SET host = ? WHERE id = ? AND role = 'agent' AND enrolment = 1 AND host IS NULL", [host, tokenId]);
  } catch (err) {
    if (isDuplicate(err)) throw new HostTakenError(host);
    throw err;
  }
  const rows = await select(q, "SELECT host, enrolment FROM api_tokens WHERE id = ?", [tokenId]);
  if (rows[0] && rows[0].host === null && !rows[0].enrolment) throw new NotEnrolmentError();
  return rows[0] ? (rows[0].host ?? null) : null;
}

/**
 * An agent token bound to no host that is not an enrolment token: one made
 * before agent tokens were bound to hosts. It speaks for no host.
 */
export class NotEnrolmentError extends Error {
  constructor() {
    super("this agent token is bound to no host and is not an enrolment token: issue the host its own (scripts/agent-token.ts, or CreateToken with a host)");
  }
}

/**
 * Makes the configured secret the one configuration admin token: it is
 * created (or taken over, never expiring, in `projectId`) and every other
 * configuration token is revoked, so starting with a new secret retires
 * the old one. Tokens issued through the API are left alone. Returns how
 * many previous configuration tokens were revoked.
 */
export async function ensureAdminToken(pool: Pool, secret: string, projectId: string): Promise<number> {
  const hash = hashSecret(secret);
  return withTx(pool, async (conn) => {
    await exec(
      conn,
      `INSERT INTO api_tokens (id, secret_hash, project_id, role, description, kind)
       VALUES (?, ?, ?, 'admin', 'admin token from configuration', 'configuration')
       ON DUPLICATE KEY UPDATE project_id = VALUES(project_id), role = 'admin', kind = 'configuration', expire_time = NULL`,
      [randomUUID(), hash, projectId],
    );
    const res = await exec(conn, "DELETE FROM api_tokens WHERE kind = 'configuration' AND secret_hash <> ?", [hash]);
    return res.affectedRows;
  });
}
