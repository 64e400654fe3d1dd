/** What every volume backend checks and how it says no: ids, sizes, and the errors of the contract. */
import { DriverError } from "../drivers/errors.js";
import { CLIENT_NAME_PATTERN, VOLUME_ID_PATTERN, type VolumeErrorCode, type VolumeImage, type VolumeSource } from "./backend.js";

/** A rejection with one of the contract's codes (never retryable: the same call fails the same way). */
export function volumeError(code: VolumeErrorCode, message: string): DriverError {
  return new DriverError(code, message, { retryable: false });
}

/** Throws "INVALID_ARGUMENT" unless `id` is a volume, snapshot or attachment id. */
export function checkId(what: string, id: string): void {
  if (typeof id !== "string" || !VOLUME_ID_PATTERN.test(id)) {
    throw volumeError("INVALID_ARGUMENT", `${what} ${JSON.stringify(id)} is not an id (${VOLUME_ID_PATTERN.source})`);
  }
}

/** Throws "INVALID_ARGUMENT" unless `client` is a host name. */
export function checkClient(client: string): void {
  if (typeof client !== "string" || !CLIENT_NAME_PATTERN.test(client)) {
    throw volumeError("INVALID_ARGUMENT", `client ${JSON.stringify(client)} is not a host name`);
  }
}

/** Throws "INVALID_ARGUMENT" unless `size` is a positive whole number of bytes. */
export function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0) throw volumeError("INVALID_ARGUMENT", `size ${size} is not a positive whole number of bytes`);
}

/** Checks that an image has a path and a format of the contract (the file itself is checked when it is read). */
export function checkImage(image: VolumeImage): void {
  if (image === null || typeof image !== "object") throw volumeError("INVALID_ARGUMENT", "an image needs a path and a format");
  if (typeof image.path !== "string" || image.path === "") throw volumeError("INVALID_ARGUMENT", "an image needs a path");
  if (image.format !== "raw" && image.format !== "qcow2") throw volumeError("INVALID_ARGUMENT", `image format ${String(image.format)}`);
}

/** Checks a source's ids (an image's path is checked when it is read). */
export function checkSource(source: VolumeSource): void {
  if (source.kind === "snapshot") {
    checkId("volume", source.volumeId);
    checkId("snapshot", source.snapshotId);
  } else if (source.kind === "image") {
    checkImage(source);
  } else if (source.kind !== "blank") {
    throw volumeError("INVALID_ARGUMENT", `source kind ${String((source as { kind: unknown }).kind)}`);
  }
}

/** The same source, for the idempotency of `create`. */
export function sameSource(a: VolumeSource, b: VolumeSource): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
