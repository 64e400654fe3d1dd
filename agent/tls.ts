/**
 * Client side of the controller's TLS, for the agent and the scripts that
 * call the controller: channel credentials from PEM files (the CA to verify
 * the controller with, and a client certificate for mutual TLS), or
 * plaintext when asked for explicitly. Every problem with a file is a
 * TlsConfigError naming the flag it came from.
 */
import { createSecureContext } from "node:tls";
import { readPemFile } from "../controller/domain/pem.js";
import { credentials, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";

/** How a client reaches the controller. */
export interface ClientTls {
  /** No TLS at all (development: the controller runs with --plaintext). */
  readonly plaintext?: boolean;
  /** PEM file of the CA(s) the controller's certificate must chain to; default the system's roots. */
  readonly ca?: string;
  /** PEM file of a client certificate (mutual TLS; with `key`). */
  readonly cert?: string;
  /** PEM file of the client certificate's private key. */
  readonly key?: string;
  /** The name the controller's certificate must carry, when it is not the address's host. */
  readonly serverName?: string;
  /** The :authority sent (grpcurl's -authority). */
  readonly authority?: string;
  /** TLS without verifying the controller's certificate (grpcurl's -insecure; never for agents). */
  readonly insecure?: boolean;
}

/** The flag each setting came from, for error messages. */
export interface ClientTlsFlags {
  readonly plaintext: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export const AGENT_TLS_FLAGS: ClientTlsFlags = { plaintext: "--plaintext", ca: "--tls-ca", cert: "--tls-cert", key: "--tls-key" };

/**
 * grpc-js gives Node's TLS the target's host as the server name even when it
 * is an IP address (127.0.0.1 here), which Node answers with a DEP0123
 * deprecation warning on every connection. The certificates carry the IP as
 * an IP SAN and are verified against it, so that one warning says nothing to
 * whoever runs an agent or a script; every other warning is printed as ever.
 */
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const code = typeof rest[0] === "object" && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
  if (code === "DEP0123") return;
  (emitWarning as (...a: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

/** A bad TLS setting or file; the message names the flag. */
export class TlsConfigError extends Error {
  override readonly name = "TlsConfigError";
}

function readPem(flag: string, path: string, kind: "certificate" | "private key"): Buffer {
  try {
    return readPemFile(path, kind);
  } catch (err) {
    throw new TlsConfigError(`${flag}: ${(err as Error).message}`);
  }
}

/** Channel credentials and options for `tls`; throws TlsConfigError naming the flag. */
export function clientCredentials(tls: ClientTls, flags: ClientTlsFlags = AGENT_TLS_FLAGS): { credentials: ChannelCredentials; channelOptions: ChannelOptions } {
  const given = ([["ca", tls.ca], ["cert", tls.cert], ["key", tls.key]] as const).filter(([, v]) => v).map(([k]) => flags[k]);
  if (tls.plaintext) {
    if (given.length) throw new TlsConfigError(`${flags.plaintext} connects without TLS; it cannot be combined with ${given.join(", ")}`);
    return { credentials: credentials.createInsecure(), channelOptions: tls.authority ? { "grpc.default_authority": tls.authority } : {} };
  }
  if (Boolean(tls.cert) !== Boolean(tls.key)) throw new TlsConfigError(tls.cert ? `${flags.cert} needs ${flags.key}` : `${flags.key} needs ${flags.cert}`);
  const ca = tls.ca ? readPem(flags.ca, tls.ca, "certificate") : null;
  const cert = tls.cert ? readPem(flags.cert, tls.cert, "certificate") : null;
  const key = tls.key ? readPem(flags.key, tls.key, "private key") : null;
  if (cert && key) {
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      if (/KEY_VALUES_MISMATCH/.test((err as { code?: string }).code ?? "")) throw new TlsConfigError(`${flags.key}: the key in ${tls.key} does not match the certificate in ${tls.cert} (${flags.cert})`);
      throw new TlsConfigError(`${flags.key}: ${tls.key} cannot be used with ${tls.cert} (${flags.cert}): ${(err as Error).message}`);
    }
  }
  const verify = tls.insecure ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {};
  const channelOptions: ChannelOptions = {
    ...(tls.serverName ? { "grpc.ssl_target_name_override": tls.serverName } : {}),
    ...(tls.authority ? { "grpc.default_authority": tls.authority } : {}),
  };
  return { credentials: credentials.createSsl(ca, key, cert, verify), channelOptions };
}

/**
 * What a failed connection's error says about TLS, in words (the TLS
 * library's own are cryptic), or undefined when it is not about TLS.
 */
export function connectionHint(err: unknown): string | undefined {
  const text = err instanceof Error ? err.message : String(err ?? "");
  if (/wrong version number|WRONG_VERSION_NUMBER|packet length too long/i.test(text)) {
    return "the controller does not answer with TLS at this address: if it runs with --plaintext, give the agent --plaintext too (development only)";
  }
  if (/Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID/i.test(text)) {
    return "the controller's certificate does not name the address in --controller: connect by a name it carries, or give that name with --tls-server-name";
  }
  if (/self[- ]signed certificate|unable to (get local issuer|verify)|certificate has expired|CERT_/i.test(text)) {
    return "the controller's certificate was not accepted: give the CA that signed it with --tls-ca";
  }
  if (/certificate required|alert certificate|bad certificate|unknown ca|handshake failure/i.test(text)) {
    return "the controller refused this agent's client certificate (or its lack of one): give --tls-cert and --tls-key signed by the controller's --agent-client-ca";
  }
  return undefined;
}
