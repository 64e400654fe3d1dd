import { readFileSync } from "node:fs";

/**
 * Reads a PEM file holding a certificate or a private key. A file that
 * cannot be read or holds no such block is an Error whose message says why
 * in a few words ("cannot read F: no such file", "F holds no PEM private
 * key"), for the caller to put after the flag that named it.
 */
export function readPemFile(path: string, kind: "certificate" | "private key"): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (err as Error).message;
    throw new Error(`cannot read ${path}: ${why}`);
  }
  const marker = kind === "certificate" ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/;
  if (!marker.test(data.toString("latin1"))) throw new Error(`${path} holds no PEM ${kind}`);
  return data;
}
