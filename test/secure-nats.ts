/**
 * A nats-server of a test's own that refuses anonymous connections
 * (scripts/nats-secure.ts's configuration), on a free port, in a temp dir.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { secureNats } from "../scripts/nats-secure.js";
import { freePort, tempDir } from "./agents.js";
import { eventually } from "./harness.js";

export interface SecureNatsServer {
  readonly url: string;
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

export async function startSecureNats(name: string): Promise<SecureNatsServer> {
  const dir = await tempDir(`nats-${name}`);
  const port = await freePort();
  const s = await secureNats(dir, { port });
  const bin = existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";
  const child: ChildProcess = spawn(bin, ["-c", s.config], { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(join(dir, "nats-server.log"));
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  await eventually(() => portOpen(port), { what: `nats-server on ${port} (log: ${dir}/nats-server.log)`, timeoutMs: 10_000 });
  return {
    url: `nats://127.0.0.1:${port}`,
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
