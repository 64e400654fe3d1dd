/**
 * `qemu-img`, the tool that makes and copies disk images (Debian's
 * qemu-utils). Each call runs the binary with arguments (never a shell),
 * honours an AbortSignal, and rejects with a DriverError that carries
 * qemu-img's own message.
 */
import { execFile } from "node:child_process";
import { DriverError } from "../errors.js";

/** Disk formats novamesh handles. */
export type DiskFormat = "qcow2" | "raw";

/** What `qemu-img info` says about an image. */
export interface ImageInfo {
  /** Format qemu-img detected. */
  readonly format: string;
  /** Size the guest sees, bytes. */
  readonly virtualSizeBytes: number;
  /** Bytes it takes on the host file system. */
  readonly actualSizeBytes: number;
  /** Backing file, for an overlay. */
  readonly backingFile?: string;
}

/** Runs qemu-img; resolves its stdout. */
export function qemuImg(args: readonly string[], options: { readonly signal?: AbortSignal; readonly binary?: string } = {}): Promise<string> {
  const binary = options.binary ?? process.env.NOVAMESH_QEMU_IMG ?? "qemu-img";
  return new Promise((resolve, reject) => {
    execFile(binary, args, { signal: options.signal, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout);
        return;
      }
      if (err.name === "AbortError") {
        reject(new DriverError("ABORTED", `qemu-img ${args[0]} was aborted`, { retryable: true, cause: err }));
        return;
      }
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      const detail = missing ? `${binary} is not installed (Debian: qemu-utils)` : String(stderr).trim() || err.message;
      reject(new DriverError("DISK_ERROR", `qemu-img ${args[0]}: ${detail}`, { retryable: false, cause: err }));
    });
  });
}

/** `qemu-img info` (with force-share, so images in use by a running guest can be read). */
export async function imageInfo(path: string, signal?: AbortSignal): Promise<ImageInfo> {
  const out = await qemuImg(["info", "-U", "--output=json", path], { signal });
  const j = JSON.parse(out) as { format: string; "virtual-size": number; "actual-size"?: number; "backing-filename"?: string };
  return {
    format: j.format,
    virtualSizeBytes: j["virtual-size"],
    actualSizeBytes: j["actual-size"] ?? 0,
    ...(j["backing-filename"] ? { backingFile: j["backing-filename"] } : {}),
  };
}

/**
 * A qcow2 overlay at `path` on the base image `base` (which is never
 * written), `sizeGb` big, or the base's size when that is larger or
 * `sizeGb` is 0 (Nova's flavor with root disk 0).
 */
export async function createOverlay(
  options: { readonly base: string; readonly baseFormat: string; readonly path: string; readonly sizeGb: number },
  signal?: AbortSignal,
): Promise<void> {
  const base = await imageInfo(options.base, signal);
  const wanted = options.sizeGb * 1024 ** 3;
  const args = ["create", "-q", "-f", "qcow2", "-F", options.baseFormat, "-b", options.base, options.path];
  if (wanted > base.virtualSizeBytes) args.push(String(wanted));
  await qemuImg(args, { signal });
}

/** A blank image (for tests and for images made from nothing). */
export async function createBlank(path: string, sizeBytes: number, format: DiskFormat = "qcow2", signal?: AbortSignal): Promise<void> {
  await qemuImg(["create", "-q", "-f", format, path, String(sizeBytes)], { signal });
}

/**
 * Copies `source` (flattening its backing chain) into a standalone image at
 * `dest`. `forceShare` reads an image a guest has open (the caller pauses
 * the guest so the copy is consistent).
 */
export async function convert(
  options: { readonly source: string; readonly dest: string; readonly format: DiskFormat; readonly forceShare?: boolean },
  signal?: AbortSignal,
): Promise<void> {
  const args = ["convert", "-q", ...(options.forceShare ? ["-U"] : []), "-O", options.format, options.source, options.dest];
  await qemuImg(args, { signal });
}

/** Grows an image to `sizeGb` (never shrinks: a smaller size is left alone, as Nova does). */
export async function growTo(path: string, sizeGb: number, signal?: AbortSignal): Promise<void> {
  const info = await imageInfo(path, signal);
  const wanted = sizeGb * 1024 ** 3;
  if (wanted > info.virtualSizeBytes) await qemuImg(["resize", "-q", path, String(wanted)], { signal });
}

/** Rebases an overlay onto another backing file without copying data (`-u`: the data is the same). */
export async function rebaseUnsafe(path: string, backing: string, backingFormat: string, signal?: AbortSignal): Promise<void> {
  await qemuImg(["rebase", "-q", "-u", "-F", backingFormat, "-b", backing, path], { signal });
}
