/** The audit trail: one row per mutating API call, kept for the retention period. */
import type { Queryable } from "./db.js";
import { exec, select } from "./db.js";

export interface AuditEntry {
  readonly tokenId: string;
  readonly projectId: string;
  readonly role: string;
  readonly method: string;
  readonly target: string;
  readonly requestId: string;
  readonly code: number;
  readonly reason: string;
}

export interface AuditRecord extends AuditEntry {
  readonly id: number;
  readonly time: Date;
}

/** Keeps text within its column (the entry comes from callers' input). */
const fit = (s: string, max: number) => (s.length <= max ? s : s.slice(0, max));

/** Appends records in one statement (autocommit: never part of a call's own transaction), timed by the database as they are written. */
export async function insertAuditRecords(q: Queryable, entries: readonly AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await exec(q, "INSERT INTO audit_records (token_id, project_id, role, method, target, request_id, code, reason) VALUES ?", [
    entries.map((e) => [fit(e.tokenId, 36), fit(e.projectId, 64), fit(e.role, 16), fit(e.method, 128), fit(e.target, 255), fit(e.requestId, 128), e.code, fit(e.reason, 64)]),
  ]);
}

/** Lists records newest first; `beforeId` is the last id of the previous page. */
export async function listAuditRecords(
  q: Queryable,
  f: { projectId?: string; tokenId?: string; method?: string; start?: Date; end?: Date; beforeId?: number; limit: number },
): Promise<AuditRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.projectId !== undefined) (where.push("project_id = ?"), params.push(f.projectId));
  if (f.tokenId !== undefined) (where.push("token_id = ?"), params.push(f.tokenId));
  if (f.method !== undefined) {
    // The full name, or the method alone (any service).
    if (f.method.includes("/")) (where.push("method = ?"), params.push(f.method));
    else (where.push("method LIKE ?"), params.push(`%/${f.method.replace(/[\\%_]/g, "\\$&")}`));
  }
  if (f.start !== undefined) (where.push("time >= ?"), params.push(f.start));
  if (f.end !== undefined) (where.push("time < ?"), params.push(f.end));
  if (f.beforeId !== undefined) (where.push("id < ?"), params.push(f.beforeId));
  params.push(f.limit);
  const rows = await select(q, `SELECT * FROM audit_records ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY id DESC LIMIT ?`, params);
  return rows.map((r) => ({
    id: Number(r.id),
    time: r.time,
    tokenId: r.token_id,
    projectId: r.project_id,
    role: r.role,
    method: r.method,
    target: r.target,
    requestId: r.request_id,
    code: Number(r.code),
    reason: r.reason,
  }));
}

/** Deletes up to `limit` records older than `days` days; returns how many. */
export async function purgeAuditRecords(q: Queryable, days: number, limit: number): Promise<number> {
  const res = await exec(q, "DELETE FROM audit_records WHERE time < CURRENT_TIMESTAMP(3) - INTERVAL ? DAY ORDER BY id LIMIT ?", [days, limit]);
  return res.affectedRows;
}
