/**
 * A nats-server of a test's own that refuses anonymous connections
 * (scripts/nats-secure.ts's configuration), on a free port, in a temp dir.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { secureNats } from "../scripts/nats-secure.js";
import { freePort, tempDir } from "./agents.js";
import { eventually } from "./harness.js";

export interface SecureNatsServer {
  readonly url: string;
  /** The CA its TLS certificate chains to (with `tls`). */
  readonly ca: string | undefined;
  readonly creds: string;
  readonly signingKey: string;
  readonly dir: string;
  stop(): Promise<void>;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** A CA and a certificate for 127.0.0.1 and localhost signed by it, made with openssl. */
async function testCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  run(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=novamesh test CA"]);
  run(["req", ...ec, "-keyout", f("nats.key"), "-out", f("nats.csr"), "-subj", "/CN=localhost"]);
  await writeFile(f("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  run(["x509", "-req", "-in", f("nats.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("nats.pem"), "-days", "2", "-extfile", f("san.ext")]);
  return { ca: f("ca.pem"), cert: f("nats.pem"), key: f("nats.key") };
}

/** Starts the server; with `tls`, it requires TLS with a certificate of a CA of its own. */
export async function startSecureNats(name: string, o: { tls?: boolean } = {}): Promise<SecureNatsServer> {
  const dir = await tempDir(`nats-${name}`);
  const port = await freePort();
  const certs = o.tls ? await testCertificates(dir) : undefined;
  const s = await secureNats(dir, { port, tlsCert: certs?.cert, tlsKey: certs?.key });
  const bin = existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";
  const child: ChildProcess = spawn(bin, ["-c", s.config], { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(join(dir, "nats-server.log"));
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  await eventually(() => portOpen(port), { what: `nats-server on ${port} (log: ${dir}/nats-server.log)`, timeoutMs: 10_000 });
  return {
    url: `nats://127.0.0.1:${port}`,
    ca: certs?.ca,
    creds: s.controllerCreds,
    signingKey: s.signingKey,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
