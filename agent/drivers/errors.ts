/**
 * Errors thrown by drivers. Every driver method rejects with a
 * {@link DriverError} (or a subclass); anything else a library throws is
 * normalised with {@link DriverError.from}.
 */

/** Codes every driver uses; drivers may add their own (e.g. "SPAWN_FAILED"). */
export type DriverErrorCode =
  | "NOT_FOUND"
  | "NOT_SUPPORTED"
  | "INSUFFICIENT_RESOURCES"
  | "INSTANCE_EXISTS"
  | "INVALID_STATE"
  | "ABORTED"
  | "SOFT_REBOOT_TIMEOUT"
  | "INTERNAL"
  | (string & {});

/** Options of a {@link DriverError}. */
export interface DriverErrorOptions {
  /** Whether running the same call again (here or on another host) may succeed. */
  readonly retryable?: boolean;
  /** The underlying error. */
  readonly cause?: unknown;
}

/** A driver call failed. */
export class DriverError extends Error {
  /** Machine-readable code, reported to the controller as `OpError.code`. */
  readonly code: DriverErrorCode;
  /** Whether running the same call again (here or elsewhere) may succeed. */
  readonly retryable: boolean;

  constructor(code: DriverErrorCode, message: string, options: DriverErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DriverError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }

  /**
   * Normalises anything thrown into a DriverError: DriverErrors are returned
   * as they are, aborts become a retryable "ABORTED", everything else a
   * non-retryable `fallbackCode` carrying the original as `cause`.
   */
  static from(reason: unknown, fallbackCode: DriverErrorCode = "INTERNAL"): DriverError {
    if (reason instanceof DriverError) return reason;
    if (reason instanceof Error && reason.name === "AbortError") {
      return new DriverError("ABORTED", reason.message || "aborted", { retryable: true, cause: reason });
    }
    if (reason instanceof Error) return new DriverError(fallbackCode, reason.message, { cause: reason });
    return new DriverError(fallbackCode, String(reason), { cause: reason });
  }
}

/** The hypervisor has no virtual machine with this id. */
export class InstanceNotFoundError extends DriverError {
  /** The id asked for. */
  readonly instanceId: string;

  constructor(instanceId: string, options: { readonly cause?: unknown } = {}) {
    super("NOT_FOUND", `instance ${instanceId} not found on this hypervisor`, { retryable: false, ...options });
    this.name = "InstanceNotFoundError";
    this.instanceId = instanceId;
  }
}

/** The driver cannot do this (see `Driver.capabilities`). */
export class NotSupportedError extends DriverError {
  /** The operation, such as "reboot(soft)". */
  readonly operation: string;

  constructor(operation: string, driver: string) {
    super("NOT_SUPPORTED", `${operation} is not supported by the ${driver} driver`, { retryable: false });
    this.name = "NotSupportedError";
    this.operation = operation;
  }
}

/** The guest did not restart within the time a soft reboot gives it; it was left as it was. */
export class SoftRebootTimeoutError extends DriverError {
  /** The instance. */
  readonly instanceId: string;
  /** Seconds the guest was given. */
  readonly timeoutSeconds: number;

  constructor(instanceId: string, timeoutSeconds: number) {
    super("SOFT_REBOOT_TIMEOUT", `instance ${instanceId} did not restart within ${timeoutSeconds} s of a soft reboot request`, {
      retryable: false,
    });
    this.name = "SoftRebootTimeoutError";
    this.instanceId = instanceId;
    this.timeoutSeconds = timeoutSeconds;
  }
}

/** Rejects with a retryable "ABORTED" DriverError if the signal is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw new DriverError("ABORTED", "the call was aborted", { retryable: true, cause: signal.reason });
  }
}
