import { randomUUID } from "node:crypto";
import { INTERNAL_REQUEST_PREFIX } from "../domain/types.js";
import { invalidArgument } from "../errors.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// C0/C1 control characters (tab excluded from names too).
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** A UUID in canonical lower-case form, or INVALID_ARGUMENT naming `field`. */
export function uuid(field: string, v: string): string {
  if (!v) throw invalidArgument(field, "is required");
  if (!UUID_RE.test(v)) throw invalidArgument(field, `must be a UUID, got ${JSON.stringify(v.slice(0, 64))}`);
  return v.toLowerCase();
}

/** A display name: 1–max characters, trimmed, no control characters. */
export function name(field: string, v: string, max = 255): string {
  const t = v.trim();
  if (!t) throw invalidArgument(field, "must not be empty");
  if ([...t].length > max) throw invalidArgument(field, `must be at most ${max} characters`);
  if (CONTROL_RE.test(t)) throw invalidArgument(field, "must not contain control characters");
  return t;
}

/** Optional free text up to max characters (and, when given, up to maxBytes bytes in UTF-8, as a TEXT column holds). */
export function text(field: string, v: string, max = 255, maxBytes?: number): string {
  if ([...v].length > max) throw invalidArgument(field, `must be at most ${max} characters`);
  if (maxBytes !== undefined && Buffer.byteLength(v, "utf8") > maxBytes) throw invalidArgument(field, `must be at most ${maxBytes} bytes in UTF-8`);
  return v;
}

/** An identifier of a project: letters, digits, '-' and '_'. */
export function projectId(field: string, v: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(v)) throw invalidArgument(field, "must be 1-64 letters, digits, '-' or '_'");
  return v;
}

/** A compute host's name: 1-255 letters, digits, '.', '-' and '_', starting with a letter or digit. */
export function hostName(field: string, v: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/.test(v)) throw invalidArgument(field, "must be 1-255 letters, digits, '.', '-' or '_'");
  return v;
}

/** A caller's idempotency key, or a fresh one. */
export function requestId(field: string, v: string): string {
  if (!v) return `req-${randomUUID()}`;
  if (v.length > 128 || CONTROL_RE.test(v)) throw invalidArgument(field, "must be 1-128 printable characters");
  if (v.startsWith(INTERNAL_REQUEST_PREFIX)) throw invalidArgument(field, `must not start with "${INTERNAL_REQUEST_PREFIX}" (the controller's own)`);
  return v;
}

/** A metadata key: 1-255 characters. */
export function metadataKey(field: string, k: string): string {
  if (!k || [...k].length > 255) throw invalidArgument(field, "keys must be 1-255 characters");
  return k;
}

/** A key/value map with Nova's metadata limits. */
export function metadata(field: string, m: Record<string, string>, maxItems = 128): Record<string, string> {
  const entries = Object.entries(m);
  if (entries.length > maxItems) throw invalidArgument(field, `must have at most ${maxItems} entries`);
  for (const [k, v] of entries) {
    metadataKey(`${field}[${JSON.stringify(k)}]`, k);
    if ([...v].length > 255) throw invalidArgument(`${field}[${JSON.stringify(k)}]`, "values must be at most 255 characters");
  }
  return Object.fromEntries(entries);
}

/** An integer in [min, max]. */
export function intRange(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw invalidArgument(field, `must be an integer from ${min} to ${max}`);
  return v;
}

/** page_size: 0 means the default; otherwise 1..max. */
export function pageSize(v: number, def = 100, max = 1000): number {
  if (v === 0) return def;
  if (v < 0) throw invalidArgument("page_size", "must not be negative");
  if (v > max) throw invalidArgument("page_size", `must be at most ${max}`);
  return v;
}

/** Page tokens are opaque to clients: base64url of a small JSON cursor. */
export function encodePageToken(cursor: unknown): string {
  return Buffer.from(JSON.stringify(cursor), "utf8").toString("base64url");
}

/** Whether every number in `v` is finite. */
function allFinite(v: unknown): boolean {
  if (typeof v === "number") return Number.isFinite(v);
  if (Array.isArray(v)) return v.every(allFinite);
  if (v && typeof v === "object") return Object.values(v).every(allFinite);
  return true;
}

export function decodePageToken<T>(token: string, check: (v: unknown) => v is T): T | undefined {
  if (!token) return undefined;
  const bad = () => invalidArgument("page_token", "is not a token this API returned");
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw bad();
  }
  // JSON numbers may overflow to Infinity (1e400): no token this API wrote holds one.
  if (allFinite(v) && check(v)) return v;
  throw bad();
}
