/**
 * Where the CLI connects and as whom. Each setting comes from, first to
 * last: its option (`--url`, `--token`, `--ca`, `--plaintext`,
 * `--tls-server-name`); the cloud named by `--os-cloud`/NOVAMESH_CLOUD in
 * the clouds file; NOVAMESH_URL, NOVAMESH_TOKEN, NOVAMESH_CA,
 * NOVAMESH_PLAINTEXT; the default (127.0.0.1:8774, TLS verified with the
 * system's CAs). Each call is a promise, its failure turned into what the
 * user should read.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { parse } from "yaml";
import { decodeStatusDetails } from "../controller/api/status.js";
import { UsageError } from "./output.js";
import { requestOf } from "./view.js";

export interface ConnectionOptions {
  readonly url?: string;
  readonly token?: string;
  readonly ca?: string;
  readonly plaintext?: boolean;
  readonly tlsServerName?: string;
  readonly osCloud?: string;
}

export interface Connection {
  readonly address: string;
  readonly credentials: grpc.ChannelCredentials;
  readonly channelOptions: grpc.ChannelOptions;
  readonly metadata: () => grpc.Metadata;
}

/** A cloud of the clouds file: the same settings as the options. */
interface Cloud {
  readonly url?: string;
  readonly token?: string;
  readonly ca?: string;
  readonly plaintext?: boolean;
  readonly tlsServerName?: string;
}

const CLOUD_KEYS: Record<string, keyof Cloud | "token_file"> = {
  url: "url",
  token: "token",
  token_file: "token_file",
  ca: "ca",
  plaintext: "plaintext",
  tls_server_name: "tlsServerName",
};

/** The clouds file: NOVAMESH_CLOUDS, else $XDG_CONFIG_HOME/novamesh/clouds.yaml (~/.config by default). */
export function cloudsFile(): string {
  return process.env.NOVAMESH_CLOUDS ?? join(process.env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "novamesh", "clouds.yaml");
}

/** Cloud `name` of the clouds file; paths in it are relative to the file. Mistakes in it are usage errors naming the file and key. */
export function readCloud(name: string, file = cloudsFile()): Cloud {
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new UsageError(`cloud "${name}": ${file}: ${(err as Error).message}`);
  }
  const clouds = (doc as { clouds?: Record<string, unknown> } | null)?.clouds;
  const entry = clouds?.[name];
  if (!entry || typeof entry !== "object") throw new UsageError(`no cloud "${name}" in ${file} (clouds: ${Object.keys(clouds ?? {}).join(", ") || "none"})`);
  const cloud: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(entry)) {
    const field = CLOUD_KEYS[key];
    if (!field) throw new UsageError(`${file}: clouds.${name}.${key} is not a setting (settings: ${Object.keys(CLOUD_KEYS).join(", ")})`);
    if (typeof value !== (field === "plaintext" ? "boolean" : "string")) throw new UsageError(`${file}: clouds.${name}.${key} must be a ${field === "plaintext" ? "boolean" : "string"}`);
    cloud[field] = value as string | boolean;
  }
  const here = (p: string) => resolve(dirname(file), p);
  if (typeof cloud.ca === "string") cloud.ca = here(cloud.ca);
  if (typeof cloud.token_file === "string") {
    if (cloud.token !== undefined) throw new UsageError(`${file}: clouds.${name} has both token and token_file`);
    cloud.token = readText(`clouds.${name}.token_file`, here(cloud.token_file)).trim();
    delete cloud.token_file;
  }
  return cloud as Cloud;
}

function readText(what: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`${what} ${path}: ${(err as Error).message}`);
  }
}

const yes = (v: string | undefined) => (v === undefined ? undefined : ["1", "true", "yes"].includes(v));

export function connection(o: ConnectionOptions): Connection {
  const cloudName = o.osCloud ?? process.env.NOVAMESH_CLOUD;
  const cloud: Cloud = cloudName ? readCloud(cloudName) : {};
  const env = process.env;
  const address = o.url ?? cloud.url ?? env.NOVAMESH_URL ?? "127.0.0.1:8774";
  const token = o.token ?? cloud.token ?? env.NOVAMESH_TOKEN ?? "";
  if (!token) throw new UsageError("no token: give --token, set NOVAMESH_TOKEN, or name a cloud with one (--os-cloud)");
  const plaintext = o.plaintext ?? cloud.plaintext ?? yes(env.NOVAMESH_PLAINTEXT) ?? false;
  const ca = o.ca ?? cloud.ca ?? env.NOVAMESH_CA;
  const serverName = o.tlsServerName ?? cloud.tlsServerName;
  if (plaintext && (o.ca || o.tlsServerName)) throw new UsageError("--plaintext goes without --ca and --tls-server-name");
  const credentials = plaintext ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(ca ? Buffer.from(readText("--ca", ca)) : undefined);
  return {
    address,
    credentials,
    channelOptions: serverName && !plaintext ? { "grpc.ssl_target_name_override": serverName, "grpc.default_authority": serverName } : {},
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
  const full = requestOf(client, method, req);
  const fn = (client as unknown as Record<string, (r: object, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Res) => void) => unknown>)[method];
  if (!fn) throw new Error(`no method ${method}`);
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

/** A failure of a streaming call, made a CallError when it is a gRPC status (other errors as they are). */
export function asCallError(err: unknown): unknown {
  const e = err as Partial<grpc.ServiceError> | null;
  return e && typeof e.code === "number" && e.metadata instanceof grpc.Metadata ? new CallError(e as grpc.ServiceError) : err;
}
