/**
 * Where the CLI connects and as whom: `--url`/NOVAMESH_URL (default
 * 127.0.0.1:8774), `--token`/NOVAMESH_TOKEN, TLS verified with `--ca`/
 * NOVAMESH_CA (default: the system's CAs) or `--plaintext`; and each call
 * as a promise, its failure turned into what the user should read.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { decodeStatusDetails } from "../controller/api/status.js";
import { UsageError } from "./output.js";

export interface ConnectionOptions {
  readonly url?: string;
  readonly token?: string;
  readonly ca?: string;
  readonly plaintext?: boolean;
}

export interface Connection {
  readonly address: string;
  readonly credentials: grpc.ChannelCredentials;
  readonly metadata: () => grpc.Metadata;
}

export function connection(o: ConnectionOptions): Connection {
  const address = o.url ?? process.env.NOVAMESH_URL ?? "127.0.0.1:8774";
  const token = o.token ?? process.env.NOVAMESH_TOKEN ?? "";
  if (!token) throw new UsageError("no token: give --token or set NOVAMESH_TOKEN");
  const plaintext = o.plaintext ?? ["1", "true", "yes"].includes(process.env.NOVAMESH_PLAINTEXT ?? "");
  const ca = o.ca ?? process.env.NOVAMESH_CA;
  let credentials: grpc.ChannelCredentials;
  if (plaintext) credentials = grpc.credentials.createInsecure();
  else {
    let pem: Buffer | undefined;
    if (ca) {
      try {
        pem = readFileSync(ca);
      } catch (err) {
        throw new UsageError(`--ca ${ca}: ${(err as Error).message}`);
      }
    }
    credentials = grpc.credentials.createSsl(pem);
  }
  return {
    address,
    credentials,
    metadata: () => {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${token}`);
      return md;
    },
  };
}

/**
 * Calls `method` of `client` with `req` and the connection's token, the
 * fields `req` leaves out at their proto defaults (the generated encoders
 * need every field); a failure becomes a CallError.
 */
export function unary<Res>(c: Connection, client: grpc.Client, method: string, req: object): Promise<Res> {
  const def = (client.constructor as unknown as { service: Record<string, { requestDeserialize: (b: Buffer) => object }> }).service[method];
  if (!def) throw new Error(`no method ${method}`);
  const full = { ...def.requestDeserialize(Buffer.alloc(0)), ...req };
  const fn = (client as unknown as Record<string, (r: object, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown>)[method]!;
  return new Promise((resolve, reject) => fn.call(client, full, c.metadata(), (err, res) => (err ? reject(new CallError(err)) : resolve(res))));
}

/** A failed call, with what its status details say: the reason, the bad fields, the exceeded quotas. */
export class CallError extends Error {
  readonly code: grpc.status;
  constructor(override readonly cause: grpc.ServiceError) {
    super(cause.details || cause.message);
    this.code = cause.code;
  }

  /** The lines the user reads: the status and message, then each bad field and exceeded limit. */
  describe(): string[] {
    const d = decodeStatusDetails(this.cause.metadata);
    const lines = [`${grpc.status[this.code] ?? this.code}: ${this.message}`];
    if (d.errorInfo?.reason && d.errorInfo.reason !== grpc.status[this.code]) lines.push(`  reason: ${d.errorInfo.reason}`);
    for (const v of d.badRequest?.fieldViolations ?? []) lines.push(`  field ${v.field}: ${v.description}`);
    for (const v of d.quotaFailure?.violations ?? []) lines.push(`  quota ${v.subject}: ${v.description}`);
    return lines;
  }
}
