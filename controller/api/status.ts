import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo } from "../../gen/google/rpc/error_details.js";
import { Status } from "../../gen/google/rpc/status.js";
import type { ApiError } from "../errors.js";

export const ERROR_DOMAIN = "novamesh.io";

/**
 * Turns an ApiError into a gRPC error whose trailers carry the standard
 * `grpc-status-details-bin` (google.rpc.Status with ErrorInfo and, for bad
 * input, BadRequest field violations), as Google APIs do.
 */
export function toServiceError(err: ApiError): Partial<ServiceError> {
  const details = [
    {
      typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
      value: Buffer.from(ErrorInfo.encode({ reason: err.reason, domain: ERROR_DOMAIN, metadata: { ...err.metadata } }).finish()),
    },
  ];
  if (err.fieldViolations.length) {
    details.push({
      typeUrl: "type.googleapis.com/google.rpc.BadRequest",
      value: Buffer.from(BadRequest.encode({
        fieldViolations: err.fieldViolations.map((v) => ({ field: v.field, description: v.description, reason: "", localizedMessage: undefined })),
      }).finish()),
    });
  }
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode({ code: err.code, message: err.message, details }).finish()));
  return { code: err.code, details: err.message, message: err.message, metadata };
}

/** Decodes the standard details of a gRPC error (clients and tests use it). */
export function decodeStatusDetails(md: Metadata | undefined): { errorInfo?: ErrorInfo; badRequest?: BadRequest } {
  const raw = md?.get("grpc-status-details-bin")[0];
  if (!raw) return {};
  const st = Status.decode(typeof raw === "string" ? Buffer.from(raw, "base64") : raw);
  const out: { errorInfo?: ErrorInfo; badRequest?: BadRequest } = {};
  for (const d of st.details) {
    if (d.typeUrl.endsWith("google.rpc.ErrorInfo")) out.errorInfo = ErrorInfo.decode(d.value);
    if (d.typeUrl.endsWith("google.rpc.BadRequest")) out.badRequest = BadRequest.decode(d.value);
  }
  return out;
}

export { status };
