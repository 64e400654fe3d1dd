/**
 * The file backend's qemu-img calls: execFile (never a shell) with a
 * timeout; a failure is a DriverError "VOLUME_COMMAND_FAILED" carrying the
 * command's stderr, or "POOL_FULL" when the file system ran out of room.
 */
import { execFile } from "node:child_process";
import { DriverError } from "../../drivers/errors.js";
import { volumeError } from "../checks.js";

/** How qemu-img is run. */
export interface QemuImgOptions {
  /** The executable (default "qemu-img"). */
  readonly binary: string;
  /** Time a quick call (info, create, resize, snapshot) may take, milliseconds. */
  readonly timeoutMs: number;
  /** Time a copy (convert) may take, milliseconds. */
  readonly copyTimeoutMs: number;
}

/** What `qemu-img info` says about a volume file. */
export interface QcowInfo {
  readonly virtualSizeBytes: number;
  /** Bytes the file takes on disk. */
  readonly actualSizeBytes: number;
  /** Internal snapshots by name, in the order they were taken. */
  readonly snapshots: readonly string[];
  /** Files outside it that it reads (a backing file, an external data file): none for a safe image. */
  readonly externalFiles: readonly string[];
}

/** qemu's option syntax doubles commas inside a value. */
export function optValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/** Runs one program; resolves its stdout. */
export function runProgram(binary: string, args: readonly string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout);
        return;
      }
      const shown = [binary, ...args].join(" ");
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      const detail = missing ? `${binary} is not installed (Debian: qemu-utils, qemu-system-common)` : String(stderr).trim() || err.message;
      const killed = (err as { killed?: boolean }).killed ? ` (killed after ${timeoutMs} ms)` : "";
      const full = /No space left on device/i.test(detail);
      reject(new DriverError(full ? "POOL_FULL" : "VOLUME_COMMAND_FAILED", `${shown}${killed}: ${detail}`, { retryable: !full && !missing, cause: err }));
    });
  });
}

/** The qemu-img commands of the file backend. */
export class QemuImg {
  constructor(private readonly options: QemuImgOptions) {}

  private run(args: readonly string[], copy = false): Promise<string> {
    return runProgram(this.options.binary, args, copy ? this.options.copyTimeoutMs : this.options.timeoutMs);
  }

  /** `qemu-img info` with force-share (the file may be open in an export daemon). */
  async info(path: string, format?: "qcow2" | "raw"): Promise<QcowInfo> {
    const out = await this.run(["info", "-U", "--output=json", ...(format ? ["-f", format] : []), path]);
    const j = JSON.parse(out) as {
      "virtual-size": number;
      "actual-size"?: number;
      snapshots?: { name: string; id: string }[];
      "backing-filename"?: string;
      "format-specific"?: { data?: { "data-file"?: string } };
    };
    const snaps = [...(j.snapshots ?? [])].sort((a, b) => Number(a.id) - Number(b.id)).map((s) => s.name);
    const externalFiles = [j["backing-filename"], j["format-specific"]?.data?.["data-file"]].filter((f): f is string => typeof f === "string" && f !== "");
    return { virtualSizeBytes: j["virtual-size"], actualSizeBytes: j["actual-size"] ?? 0, snapshots: snaps, externalFiles };
  }

  /** A blank thin qcow2 file. */
  async create(path: string, sizeBytes: number): Promise<void> {
    await this.run(["create", "-q", "-f", "qcow2", path, String(sizeBytes)]);
  }

  /**
   * Copies `source` (raw or qcow2, or one of its internal snapshots) into a
   * standalone thin qcow2 file. `forceShare`
   * reads a file an export daemon has open (only its snapshots, which do not
   * change).
   */
  async convert(options: { source: string; format: "qcow2" | "raw"; dest: string; snapshot?: string; forceShare?: boolean }): Promise<void> {
    const args = ["convert", "-q", "-f", options.format, "-O", "qcow2"];
    if (options.forceShare) args.push("-U");
    if (options.snapshot !== undefined) args.push("-l", `snapshot.name=${options.snapshot}`);
    await this.run([...args, options.source, options.dest], true);
  }

  /**
   * Writes an image (raw or qcow2, `sourceBytes` of virtual size) over the
   * start of an existing qcow2 file that no daemon has open, and zeros over
   * the rest of its `destBytes`: one convert into the file (`-n`) from the
   * image followed by a source of zeros. The file's internal snapshots stay
   * (their clusters are copied on write, not overwritten); zeros become
   * zero clusters, not written data. Flushed before it resolves.
   */
  async overwrite(options: { source: string; format: "qcow2" | "raw"; sourceBytes: number; dest: string; destBytes: number }): Promise<void> {
    const sources = [`driver=${options.format},file.driver=file,file.filename=${optValue(options.source)}`];
    const tail = options.destBytes - options.sourceBytes;
    if (tail < 0) throw volumeError("IMAGE_TOO_LARGE", `${options.source} (${options.sourceBytes} bytes) does not fit ${options.dest} (${options.destBytes} bytes)`);
    if (tail > 0) sources.push(`driver=null-co,size=${tail},read-zeroes=on`);
    const target = `driver=qcow2,file.driver=file,file.filename=${optValue(options.dest)}`;
    await this.run(["convert", "-q", "-n", "-t", "writeback", "--image-opts", "--target-image-opts", ...sources, target], true);
  }

  /** Grows a file that no daemon has open. */
  async resize(path: string, sizeBytes: number): Promise<void> {
    await this.run(["resize", "-q", "-f", "qcow2", path, String(sizeBytes)]);
  }

  /** Takes (`-c`) or deletes (`-d`) an internal snapshot of a file that no daemon has open. */
  async snapshot(path: string, op: "-c" | "-d", name: string): Promise<void> {
    await this.run(["snapshot", "-q", op, name, path]);
  }
}
