import { status } from "@grpc/grpc-js";

/** A violated field of a request, as google.rpc.BadRequest.FieldViolation. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** An exceeded limit, as google.rpc.QuotaFailure.Violation. */
export interface QuotaViolation {
  readonly subject: string;
  readonly description: string;
}

/**
 * The one error class of the controller: carries a gRPC status code, a
 * machine-readable reason (google.rpc.ErrorInfo) and, for bad input, the
 * violated fields. Only `api/` turns it into a gRPC status.
 */
export class ApiError extends Error {
  readonly code: status;
  readonly reason: string;
  readonly fieldViolations: readonly FieldViolation[];
  readonly metadata: Readonly<Record<string, string>>;
  /** When the caller may try again (google.rpc.RetryInfo), for limits. */
  readonly retryDelayMs: number | undefined;
  /** The limits that were exceeded (google.rpc.QuotaFailure). */
  readonly quotaViolations: readonly QuotaViolation[];

  constructor(
    code: status,
    message: string,
    opts: {
      reason?: string;
      fieldViolations?: readonly FieldViolation[];
      metadata?: Record<string, string>;
      retryDelayMs?: number;
      quotaViolations?: readonly QuotaViolation[];
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "ApiError";
    this.code = code;
    this.reason = opts.reason ?? status[code] ?? "UNKNOWN";
    this.fieldViolations = opts.fieldViolations ?? [];
    this.metadata = opts.metadata ?? {};
    this.retryDelayMs = opts.retryDelayMs;
    this.quotaViolations = opts.quotaViolations ?? [];
  }
}

export function invalidArgument(field: string, description: string): ApiError {
  return new ApiError(status.INVALID_ARGUMENT, `${field}: ${description}`, {
    reason: "INVALID_ARGUMENT",
    fieldViolations: [{ field, description }],
  });
}

export function notFound(kind: string, id: string): ApiError {
  return new ApiError(status.NOT_FOUND, `${kind} ${JSON.stringify(id)} not found`, {
    reason: `${kind.toUpperCase()}_NOT_FOUND`,
    metadata: { [kind]: id },
  });
}

export function alreadyExists(kind: string, id: string): ApiError {
  return new ApiError(status.ALREADY_EXISTS, `${kind} ${JSON.stringify(id)} already exists`, {
    reason: `${kind.toUpperCase()}_EXISTS`,
  });
}

export function failedPrecondition(message: string, reason: string, metadata?: Record<string, string>): ApiError {
  return new ApiError(status.FAILED_PRECONDITION, message, { reason, metadata });
}

export function permissionDenied(message: string): ApiError {
  return new ApiError(status.PERMISSION_DENIED, message, { reason: "PERMISSION_DENIED" });
}

export function unauthenticated(message: string): ApiError {
  return new ApiError(status.UNAUTHENTICATED, message, { reason: "UNAUTHENTICATED" });
}

const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "PROTOCOL_CONNECTION_LOST",
  "ER_CON_COUNT_ERROR",
  "ER_SERVER_SHUTDOWN",
  "ER_LOCK_WAIT_TIMEOUT",
  "ER_LOCK_DEADLOCK",
  "CONNECTION_CLOSED",
]);

/** Normalises anything thrown into an ApiError (unknown errors become INTERNAL). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) {
    return new ApiError(status.UNAVAILABLE, "the database is unavailable; retry later", {
      reason: "DATABASE_UNAVAILABLE",
      cause: err,
    });
  }
  if (err instanceof Error && /Pool is closed|Can't add new command when connection is in closed state/.test(err.message)) {
    return new ApiError(status.UNAVAILABLE, "the database is unavailable; retry later", {
      reason: "DATABASE_UNAVAILABLE",
      cause: err,
    });
  }
  return new ApiError(status.INTERNAL, "internal error", { reason: "INTERNAL", cause: err });
}
