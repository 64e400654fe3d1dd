import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, QuotaFailure, RetryInfo } from "../../gen/google/rpc/error_details.js";
import { Status } from "../../gen/google/rpc/status.js";
import type { ApiError } from "../errors.js";

export const ERROR_DOMAIN = "novamesh.io";

/**
 * Turns an ApiError into a gRPC error whose trailers carry the standard
 * `grpc-status-details-bin` (google.rpc.Status with ErrorInfo and, for bad
 * input, BadRequest field violations), as Google APIs do.
 */
/** Texts of an error (its message, a field's description, metadata values) are cut to this many characters. */
export const MAX_ERROR_TEXT = 1024;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `s` cut to `max` characters, saying how much was left out: an error never
 * echoes input of any length. The cut never splits a surrogate pair, and a
 * lone surrogate the input had becomes U+FFFD: grpc-js URI-encodes the
 * message into a header, which throws (and ends the process) on one.
 */
export function cut(s: string, max = MAX_ERROR_TEXT): string {
  let out = s;
  if (s.length > max) {
    const end = /[\uD800-\uDBFF]/.test(s[max - 1] ?? "") ? max - 1 : max;
    out = `${s.slice(0, end)}… (${s.length - end} more characters)`;
  }
  return out.replace(LONE_SURROGATE, "\uFFFD");
}

export function toServiceError(err: ApiError): Partial<ServiceError> {
  const metadata = Object.fromEntries(Object.entries(err.metadata).map(([k, v]) => [cut(k, 128), cut(v, 256)]));
  const details = [
    {
      typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
      value: Buffer.from(ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata }).finish()),
    },
  ];
  if (err.fieldViolations.length) {
    details.push({
      typeUrl: "type.googleapis.com/google.rpc.BadRequest",
      value: Buffer.from(BadRequest.encode({
        fieldViolations: err.fieldViolations.map((v) => ({ field: cut(v.field, 256), description: cut(v.description, 512), reason: "", localizedMessage: undefined })),
      }).finish()),
    });
  }
  if (err.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.ceil(err.retryDelayMs));
    details.push({
      typeUrl: "type.googleapis.com/google.rpc.RetryInfo",
      value: Buffer.from(RetryInfo.encode({ retryDelay: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 } }).finish()),
    });
  }
  if (err.quotaViolations.length) {
    details.push({
      typeUrl: "type.googleapis.com/google.rpc.QuotaFailure",
      value: Buffer.from(QuotaFailure.encode(QuotaFailure.fromPartial({
        violations: err.quotaViolations.map((v) => ({ subject: cut(v.subject, 256), description: cut(v.description, 512) })),
      })).finish()),
    });
  }
  const message = cut(err.message);
  const trailers = new Metadata();
  trailers.set("grpc-status-details-bin", Buffer.from(Status.encode({ code: err.code, message, details }).finish()));
  return { code: err.code, details: message, message, metadata: trailers };
}

/** Decodes the standard details of a gRPC error (clients and tests use it). */
export function decodeStatusDetails(md: Metadata | undefined): { errorInfo?: ErrorInfo; badRequest?: BadRequest; retryInfo?: RetryInfo; quotaFailure?: QuotaFailure } {
  const raw = md?.get("grpc-status-details-bin")[0];
  if (!raw) return {};
  const st = Status.decode(typeof raw === "string" ? Buffer.from(raw, "base64") : raw);
  const out: { errorInfo?: ErrorInfo; badRequest?: BadRequest; retryInfo?: RetryInfo; quotaFailure?: QuotaFailure } = {};
  for (const d of st.details) {
    if (d.typeUrl.endsWith("google.rpc.ErrorInfo")) out.errorInfo = ErrorInfo.decode(d.value);
    if (d.typeUrl.endsWith("google.rpc.BadRequest")) out.badRequest = BadRequest.decode(d.value);
    if (d.typeUrl.endsWith("google.rpc.RetryInfo")) out.retryInfo = RetryInfo.decode(d.value);
    if (d.typeUrl.endsWith("google.rpc.QuotaFailure")) out.quotaFailure = QuotaFailure.decode(d.value);
  }
  return out;
}

export { status };
