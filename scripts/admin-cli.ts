/**
 * The command line the seeding scripts share: `[ADDRESS] [--tls-ca FILE |
 * --plaintext]` plus a script's own value options, the admin token from
 * NOVAMESH_ADMIN_TOKEN, and running `main` with exit code 2 for usage
 * errors and 1 for failures.
 */
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { TlsConfigError, clientCredentials } from "../agent/tls.js";

/** A controller address and what an admin client connects to it with. */
export interface AdminConnection {
  readonly address: string;
  readonly metadata: grpc.Metadata;
  readonly credentials: grpc.ChannelCredentials;
  readonly channelOptions: grpc.ChannelOptions;
}

/** Thrown for a bad command line; the runner prints it with the usage line. */
export class UsageError extends Error {}

/**
 * Parses `args`: the address (default NOVAMESH_CONTROLLER or
 * 127.0.0.1:8774), TLS options, and each of `valueOptions` (`--name VALUE`,
 * handed to its setter).
 */
export function adminConnection(args: readonly string[], valueOptions: Readonly<Record<string, (value: string) => void>> = {}): AdminConnection {
  let address: string | undefined;
  let ca: string | undefined;
  let plaintext = ["1", "true", "yes"].includes(process.env.NOVAMESH_PLAINTEXT ?? "");
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const set = a === "--tls-ca" ? (v: string) => (ca = v) : valueOptions[a];
    if (set) {
      const v = args[++i];
      if (!v) throw new UsageError(`${a} needs a value`);
      set(v);
    } else if (a === "--plaintext") plaintext = true;
    else if (a.startsWith("-")) throw new UsageError(`unknown option ${a}`);
    else if (address === undefined) address = a;
    else throw new UsageError(`unexpected argument ${a}`);
  }
  const token = process.env.NOVAMESH_ADMIN_TOKEN;
  if (!token) throw new UsageError("set NOVAMESH_ADMIN_TOKEN");
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  try {
    const channel = clientCredentials(plaintext ? { plaintext, ca } : { ca });
    return { address: address ?? (process.env.NOVAMESH_CONTROLLER || "127.0.0.1:8774"), metadata, ...channel };
  } catch (err) {
    if (err instanceof TlsConfigError) throw new UsageError(err.message);
    throw err;
  }
}

/**
 * Runs `main` when `moduleUrl` is the script node was started with: exit 0
 * when it resolves, 2 with `usage` after a UsageError, 1 after any other.
 */
export function runScript(moduleUrl: string, name: string, usage: string, main: () => Promise<void>): void {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return;
  main().then(
    () => process.exit(0),
    (err: Error) => {
      console.error(`${name}: ${err.message}${err instanceof UsageError ? `\nusage: ${usage}` : ""}`);
      process.exit(err instanceof UsageError ? 2 : 1);
    },
  );
}
