/** What a guest is told about itself: its host name and user data (see the config drive). */

/** User data a server may carry, in bytes (Nova's limit is 65535 bytes of base64; this is of the data itself). */
export const MAX_USER_DATA_BYTES = 65536;

/**
 * A server's host name from its display name, as Nova sanitises one: lower
 * case, spaces and underscores as '-', nothing but letters, digits, '-' and
 * '.', no '-' or '.' at either end, at most 63 characters; a name with
 * nothing left gives `server-<id>`.
 */
export function hostnameOf(name: string, uuid: string): string {
  const h = name
    .toLowerCase()
    .replace(/[ _]/g, "-")
    .replace(/[^a-z0-9.-]/g, "")
    .replace(/^[.-]+|[.-]+$/g, "")
    .slice(0, 63)
    .replace(/[.-]+$/, "");
  return h || `server-${uuid}`;
}
