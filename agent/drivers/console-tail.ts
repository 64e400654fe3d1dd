/**
 * The end of a console log: at most N bytes, cut at a line start, decoded
 * as UTF-8 (invalid bytes become U+FFFD), and its last lines.
 */
import { open } from "node:fs/promises";

/** The last `maxBytes` bytes of `bytes`, from the first line start inside them (unless that leaves nothing). */
export function tailBytes(bytes: Uint8Array, maxBytes: number): string {
  if (bytes.length <= maxBytes) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  let start = bytes.length - maxBytes;
  // A cut line is dropped unless it is the only one.
  const newline = bytes.indexOf(0x0a, start - 1);
  if (newline >= 0 && newline + 1 < bytes.length) start = newline + 1;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, bytes.length - start).toString("utf8");
}

/** {@link tailBytes} of a file without reading more of it than needed; "" when it does not exist. */
export async function readFileTail(path: string, maxBytes: number): Promise<string> {
  let file;
  try {
    file = await open(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw err;
  }
  try {
    const { size } = await file.stat();
    // One byte more, to see whether the first byte kept starts a line.
    const length = Math.min(size, maxBytes + 1);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, size - length);
    const bytes = buf.subarray(0, bytesRead);
    if (bytes.length <= maxBytes) return bytes.toString("utf8");
    return tailBytes(bytes, maxBytes);
  } finally {
    await file.close();
  }
}

/** The last `n` lines of `text` (all of it when `n` is 0); a trailing newline does not count as a line. */
export function lastLines(text: string, n: number): string {
  if (n <= 0 || !text) return text;
  let end = text.length;
  if (text.endsWith("\n")) end--;
  let pos = end;
  for (let i = 0; i < n; i++) {
    const nl = text.lastIndexOf("\n", pos - 1);
    if (nl < 0) return text;
    pos = nl;
  }
  return text.slice(pos + 1);
}
