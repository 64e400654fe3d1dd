/**
 * How the libvirt driver treats failures: libvirt errors as DriverErrors,
 * the failures that are a decision ("not found" means gone, "off
 * meanwhile" means done), and best-effort steps, whose failure is logged
 * and otherwise ignored.
 */
import { DriverError } from "../errors.js";
import { isLibvirtError } from "./binding/index.js";
import * as C from "./binding/constants.js";

export { bestEffort } from "../../best-effort.js";

/** Whether `err` says a file or directory is not there. */
export function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
}

/** A catch handler that swallows DriverErrors of `code` (a state reached meanwhile) and rethrows the rest. */
export function unless(code: string): (err: unknown) => void {
  return (err) => {
    if (!(err instanceof DriverError && err.code === code)) throw err;
  };
}

export function invalidState(message: string): DriverError {
  return new DriverError("INVALID_STATE", message, { retryable: false });
}

/** A libvirt failure as a DriverError (retryable when libvirt's connection failed). */
export function fromLibvirt(err: unknown, what: string): DriverError {
  if (err instanceof DriverError) return err;
  if (isLibvirtError(err)) {
    const connection = [C.VIR_ERR_INVALID_CONN, C.VIR_ERR_SYSTEM_ERROR, C.VIR_ERR_RPC].includes(err.code);
    return new DriverError(connection ? "HYPERVISOR_UNAVAILABLE" : `LIBVIRT_${err.codeName.replace(/^VIR_ERR_/, "")}`, `${what}: ${err.message}`, {
      retryable: connection,
      cause: err,
    });
  }
  return DriverError.from(err);
}
