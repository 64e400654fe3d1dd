/**
 * The controller's transport security: the server credentials of the
 * public listener and of the agent listener, built from the PEM files the
 * configuration names. Every problem is a ConfigError naming the flag.
 */
import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { readPemFile } from "./domain/pem.js";
import * as grpc from "@grpc/grpc-js";
import type { ControllerConfig } from "./config.js";
import { ConfigError, checkTlsSettings } from "./config.js";

/** What the controller listens with. */
export interface ServerTls {
  /** The public listener (`--listen`). */
  readonly public: grpc.ServerCredentials;
  /** The agent listener (`--agent-listen`), when configured: TLS that requires a client certificate from `--agent-client-ca`. */
  readonly agent: grpc.ServerCredentials | null;
  /** Warnings to log at start (plaintext, a certificate out of its validity). */
  readonly warnings: readonly string[];
}

/** Reads a PEM file, or throws a ConfigError naming `flag`. */
function readPem(flag: string, path: string, kind: "certificate" | "private key"): Buffer {
  try {
    return readPemFile(path, kind);
  } catch (err) {
    throw new ConfigError(`${flag}: ${(err as Error).message}`);
  }
}

/** The certificates of a PEM file, parsed (a CA file may hold several). */
function certificates(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString("latin1").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new ConfigError(`${flag}: ${path} holds a certificate that cannot be parsed (${(err as Error).message})`);
  }
}

function validity(flag: string, path: string, cert: X509Certificate, now: Date): string | null {
  if (new Date(cert.validTo) < now) return `${flag}: the certificate in ${path} expired on ${cert.validTo}`;
  if (new Date(cert.validFrom) > now) return `${flag}: the certificate in ${path} is not valid before ${cert.validFrom}`;
  return null;
}

/** Reads the certificate files and builds the listeners' credentials. */
export function serverTls(cfg: ControllerConfig, now = new Date()): ServerTls {
  checkTlsSettings(cfg);
  if (cfg.plaintext) {
    return {
      public: grpc.ServerCredentials.createInsecure(),
      agent: null,
      warnings: ["--plaintext: serving without TLS; tokens travel in clear text (development only)"],
    };
  }
  const warnings: string[] = [];
  const cert = readPem("--tls-cert", cfg.tlsCert, "certificate");
  const key = readPem("--tls-key", cfg.tlsKey, "private key");
  const [leaf] = certificates("--tls-cert", cfg.tlsCert, cert);
  if (!leaf) throw new ConfigError(`--tls-cert: ${cfg.tlsCert} holds no certificate`);
  const w = validity("--tls-cert", cfg.tlsCert, leaf, now);
  if (w) warnings.push(w);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const code = (err as { code?: string }).code ?? "";
    if (/KEY_VALUES_MISMATCH/.test(code)) throw new ConfigError(`--tls-key: the key in ${cfg.tlsKey} does not match the certificate in ${cfg.tlsCert} (--tls-cert)`);
    throw new ConfigError(`--tls-key: ${cfg.tlsKey} cannot be used with ${cfg.tlsCert} (--tls-cert): ${(err as Error).message}`);
  }
  const pair = [{ cert_chain: cert, private_key: key }];
  const clientCa = (flag: string, path: string) => {
    const pem = readPem(flag, path, "certificate");
    if (certificates(flag, path, pem).length === 0) throw new ConfigError(`${flag}: ${path} holds no certificate`);
    return pem;
  };
  const publicCa = cfg.tlsClientCa ? clientCa("--tls-client-ca", cfg.tlsClientCa) : null;
  const agentCa = cfg.agentClientCa ? clientCa("--agent-client-ca", cfg.agentClientCa) : null;
  return {
    public: grpc.ServerCredentials.createSsl(publicCa, pair, publicCa !== null),
    agent: agentCa ? grpc.ServerCredentials.createSsl(agentCa, pair, true) : null,
    warnings,
  };
}
