/**
 * What a caller may learn of hosts. Admins see host names; everyone else
 * sees Nova's hostId instead: the SHA-224 (hex) of the resource's project id
 * followed by the host name — stable per project and host, and meaningless
 * to other projects. Texts a tenant reads (faults, operation errors, action
 * events) get every known host name replaced by that id.
 */
import { createHash } from "node:crypto";
import type { Queryable } from "../store/db.js";
import { listHostNames } from "../store/nodes.js";
import type { CallContext } from "./rpc.js";

export type Viewer = { readonly admin: true } | { readonly admin: false; readonly hosts: readonly string[] };

/** Sees every host by name (admins, and the controller's own uses). */
export const ADMIN_VIEW: Viewer = { admin: true };

/** Nova's hostId of `host` for `projectId`; empty without a host. */
export function hostId(projectId: string, host: string | null | undefined): string {
  if (!host) return "";
  return createHash("sha224").update(projectId + host, "utf8").digest("hex");
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** `text` with every host name of `viewer` (and `extra`) replaced by its host id for `projectId`; as is for admins. */
export function maskHosts(viewer: Viewer, projectId: string, text: string, extra: readonly (string | null | undefined)[] = []): string {
  if (viewer.admin || !text) return text;
  const names = [...new Set([...viewer.hosts, ...extra].filter((h): h is string => !!h))].sort((a, b) => b.length - a.length);
  if (names.length === 0) return text;
  // Whole names only: a host name is not replaced inside a longer word.
  const re = new RegExp(`(?<![A-Za-z0-9._-])(?:${names.map(escape).join("|")})(?![A-Za-z0-9_-]|\\.[A-Za-z0-9])`, "g");
  return text.replace(re, (h) => hostId(projectId, h));
}

/** The same for every value of a map. */
export function maskMap(viewer: Viewer, projectId: string, m: Readonly<Record<string, string>>, extra: readonly (string | null | undefined)[] = []): Record<string, string> {
  if (viewer.admin) return { ...m };
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, maskHosts(viewer, projectId, v, extra)]));
}

/** Host names, re-read at most every 2 s per pool (a host that just joined is also masked through the record's own host fields). */
const names = new WeakMap<Queryable, { at: number; hosts: Promise<string[]> }>();

async function hostNames(q: Queryable): Promise<readonly string[]> {
  const now = Date.now();
  let c = names.get(q);
  if (!c || now - c.at > 2000) {
    c = { at: now, hosts: listHostNames(q) };
    names.set(q, c);
    c.hosts.catch(() => names.delete(q));
  }
  return c.hosts;
}

/** The viewer a call's caller is. */
export async function viewerOf(q: Queryable, ctx: CallContext): Promise<Viewer> {
  if (ctx.principal.role === "admin") return ADMIN_VIEW;
  return { admin: false, hosts: await hostNames(q) };
}
