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
}

/** Issues a token; the secret is returned once and stored only as a hash. */
export async function createToken(
  q: Queryable,
  t: { projectId: string; role: Role; description: string; secret?: string },
): Promise<{ token: TokenRecord; secret: string }> {
  const secret = t.secret ?? `nm_${randomBytes(24).toString("base64url")}`;
  const id = randomUUID();
  await exec(q, "INSERT INTO api_tokens (id, secret_hash, project_id, role, description) VALUES (?, ?, ?, ?, ?)", [
    id,
    hashSecret(secret),
    t.projectId,
    t.role,
    t.description,
  ]);
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
    `SELECT id, project_id, role, description, created_at FROM api_tokens ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY created_at, id`,
    params,
  );
  return rows.map((r) => ({ id: r.id, projectId: r.project_id, role: r.role, description: r.description, createdAt: r.created_at }));
}

export async function deleteToken(q: Queryable, id: string): Promise<boolean> {
  return (await exec(q, "DELETE FROM api_tokens WHERE id = ?", [id])).affectedRows === 1;
}

export async function principalForSecret(q: Queryable, secret: string): Promise<Principal | null> {
  const rows = await select(q, "SELECT id, project_id, role FROM api_tokens WHERE secret_hash = ?", [hashSecret(secret)]);
  const r = rows[0];
  return r ? { tokenId: r.id, projectId: r.project_id, role: r.role } : null;
}

/** Makes sure the configured admin token exists (first start, or a new secret). */
export async function ensureAdminToken(q: Queryable, secret: string, projectId: string): Promise<void> {
  const existing = await principalForSecret(q, secret);
  if (existing) return;
  await createToken(q, { projectId, role: "admin", description: "admin token from configuration", secret });
}
