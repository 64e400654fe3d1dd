/**
 * The config drive as libvirt guests get it: an ISO 9660 image (Rock Ridge
 * and Joliet names, volume label `config-2`) made with xorriso, Debian's
 * ISO writer, as Nova makes it with genisoimage. It sits beside the
 * instance's disk as `disk.config` and is attached read-only as a CD-ROM.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { CONFIG_DRIVE_LABEL, configDriveFiles } from "../config-drive.js";
import { DriverError } from "../errors.js";
import type { GuestSpec, InstanceSpec } from "../types.js";
import type { InstanceFiles } from "./instance-files.js";

/** Runs xorriso in its mkisofs mode; rejects with a DriverError carrying its message. */
function xorriso(args: readonly string[], signal?: AbortSignal): Promise<void> {
  const binary = process.env.NOVAMESH_XORRISO ?? "xorriso";
  return new Promise((resolve, reject) => {
    execFile(binary, ["-as", "mkisofs", ...args], { signal, maxBuffer: 4 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if (err.name === "AbortError") return reject(new DriverError("ABORTED", "making the config drive was aborted", { retryable: true, cause: err }));
      const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
      const detail = missing ? `${binary} is not installed (Debian: xorriso)` : String(stderr).trim() || err.message;
      reject(new DriverError("DISK_ERROR", `making the config drive: ${detail}`, { retryable: false, cause: err }));
    });
  });
}

/**
 * Writes the config drive of `instance` to `path` (atomically: a guest or a
 * second attempt never sees half an image). The files are laid out in a
 * scratch directory beside it, which is removed whatever happens.
 */
export async function writeConfigDrive(path: string, instance: InstanceSpec, guest: GuestSpec, signal?: AbortSignal): Promise<void> {
  const scratch = await mkdtemp(join(dirname(path), ".config-drive-"));
  const tmp = `${path}.tmp`;
  try {
    for (const [file, data] of configDriveFiles(instance, guest)) {
      await mkdir(dirname(join(scratch, file)), { recursive: true });
      await writeFile(join(scratch, file), data);
    }
    await xorriso(["-o", tmp, "-V", CONFIG_DRIVE_LABEL, "-J", "-r", "-l", "-quiet", scratch], signal);
    await rename(tmp, path);
  } finally {
    await rm(scratch, { recursive: true, force: true });
    await rm(tmp, { force: true });
  }
}

/** Writes the instance's config drive into its directory when its guest gets one; what an earlier one left is replaced. */
export async function makeConfigDrive(files: InstanceFiles, instance: InstanceSpec, signal?: AbortSignal): Promise<void> {
  if (instance.guest?.configDrive) await writeConfigDrive(files.configDrive(instance.id), instance, instance.guest, signal);
}
