import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Principal, Role } from "../domain/types.js";
import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

export interface TokenRecord {
  readonly id: string;
  readonly projectId: string;
  readonly role: Role;
  readonly description: string;
  readonly createdAt: Date;
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
  t: { projectId: string; role: Role; description: string; secret?: string; host?: string | null },
): Promise<{ token: TokenRecord; secret: string }> {
  const secret = t.secret ?? `nm_${randomBytes(24).toString("base64url")}`;
  const id = randomUUID();
  try {
    await exec(q, "INSERT INTO api_tokens (id, secret_hash, project_id, role, description, host) VALUES (?, ?, ?, ?, ?, ?)", [
      id,
      hashSecret(secret),
      t.projectId,
      t.role,
      t.description,
      t.host ?? null,
    ]);
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
    `SELECT id, project_id, role, description, created_at, host FROM api_tokens ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY created_at, id`,
    params,
  );
  return rows.map((r) => ({ id: r.id, projectId: r.project_id, role: r.role, description: r.description, createdAt: r.created_at, host: r.host ?? null }));
}

export async function deleteToken(q: Queryable, id: string): Promise<boolean> {
  return (await exec(q, "DELETE FROM api_tokens WHERE id = ?", [id])).affectedRows === 1;
}

export async function principalForSecret(q: Queryable, secret: string): Promise<Principal | null> {
  const rows = await select(q, "SELECT id, project_id, role, host FROM api_tokens WHERE secret_hash = ?", [hashSecret(secret)]);
  const r = rows[0];
  return r ? { tokenId: r.id, projectId: r.project_id, role: r.role, host: r.host ?? null } : null;
}

/**
 * Binds an enrolment token (an agent token without a host) to `host`, once.
 * Returns the host the token holds afterwards: `host`, or the one an earlier
 * (or concurrent) use bound it to; null when the token is gone.
 */
export async function bindAgentToken(q: Queryable, tokenId: string, host: string): Promise<string | null> {
  try {
    await exec(q, "UPDATE api_tokens SET host = ? WHERE id = ? AND role = 'agent' AND host IS NULL", [host, tokenId]);
  } catch (err) {
    if (isDuplicate(err)) throw new HostTakenError(host);
    throw err;
  }
  const rows = await select(q, "SELECT host FROM api_tokens WHERE id = ?", [tokenId]);
  return rows[0] ? (rows[0].host ?? null) : null;
}

/** Makes sure the configured admin token exists (first start, or a new secret). */
export async function ensureAdminToken(q: Queryable, secret: string, projectId: string): Promise<void> {
  const existing = await principalForSecret(q, secret);
  if (existing) return;
  await createToken(q, { projectId, role: "admin", description: "admin token from configuration", secret });
}
