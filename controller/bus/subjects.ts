/**
 * NATS naming of a host's ops. Host names may hold characters NATS treats
 * specially in subjects and consumer names ('.', '*', '>', whitespace), so a
 * host becomes one token: letters, digits, '-' and '_' stay; every other byte
 * is written as `%XX`.
 */
export function hostToken(host: string): string {
  return Array.from(Buffer.from(host, "utf8"))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9_-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

export function opsSubject(prefix: string, host: string): string {
  return `${prefix}.${hostToken(host)}`;
}

/** Durable consumer name of a host: `agent-<token>` with '%' (not allowed) as '~'. */
export function consumerName(host: string): string {
  return `agent-${hostToken(host).replace(/%/g, "~")}`;
}

/**
 * Core NATS subject a host's agent answers queries on (request and reply,
 * never stored): `<prefix>.query.<host token>`, one token deeper than the
 * ops subjects, so the ops stream (`<prefix>.*`) never captures it.
 */
export function querySubject(prefix: string, host: string): string {
  return `${prefix}.query.${hostToken(host)}`;
}
