import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FakeCall } from "../agent/drivers/fake/fake-driver.js";
import { NATS_URL } from "./harness.js";
import type { TestEnv } from "./harness.js";

export const REPO = fileURLToPath(new URL("..", import.meta.url));

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export async function tempDir(name: string): Promise<string> {
  const dir = join(tmpdir(), `novamesh-test-${name}-${process.pid}-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Starts `agent/main.ts` as its own process (so tests can kill it for real). */
export function spawnAgent(o: { controller: string; token: string; args: string[]; logFile: string }): ChildProcess {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO, "agent/main.ts"), "--controller", o.controller, "--token", o.token, "--nats", NATS_URL, ...o.args],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NOVAMESH_LOG_LEVEL: process.env.NOVAMESH_TEST_LOG ?? "info" } },
  );
  const log = createWriteStream(o.logFile, { flags: "a" });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return child;
}

export async function stopAgent(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The fake driver's call log: one entry per mutating driver call that ran. */
export async function driverCalls(statePath: string): Promise<FakeCall[]> {
  let text = "";
  try {
    text = await readFile(`${statePath}.calls.jsonl`, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}

/**
 * The fake hypervisor's domains in a state file (what the host itself runs),
 * by server id; none if the file does not exist yet.
 */
export async function fakeDomains(statePath: string): Promise<Record<string, { instance: { image: { id: string } }; powerState: string; incoming?: unknown; migratedTo?: string }>> {
  let text: string;
  try {
    text = await readFile(statePath, "utf8");
  } catch {
    return {};
  }
  return (JSON.parse(text) as { domains: Record<string, { instance: { image: { id: string } }; powerState: string; incoming?: unknown; migratedTo?: string }> }).domains;
}

/** Agents of one test environment, one process per host, each with its own state dir. */
export class Hosts {
  readonly procs = new Map<string, ChildProcess>();
  constructor(
    private readonly env: TestEnv,
    private readonly address: () => string,
    readonly dir: string,
  ) {}

  start(host: string, faults?: object): ChildProcess {
    const child = spawnAgent({
      controller: this.address(),
      token: this.env.adminToken,
      logFile: join(this.dir, `${host}.log`),
      args: ["--host", host, "--driver", "fake", "--state-dir", join(this.dir, host), "--vcpus", "8", "--memory-mb", "16384", "--disk-gb", "200", ...(faults ? ["--fake-faults", JSON.stringify(faults)] : [])],
    });
    this.procs.set(host, child);
    return child;
  }

  domains(host: string) {
    return fakeDomains(join(this.dir, host, "fake-domains.json"));
  }

  /** The fake driver's call log of `host`. */
  calls(host: string) {
    return driverCalls(join(this.dir, host, "fake-domains.json"));
  }

  async stopAll(): Promise<void> {
    for (const p of this.procs.values()) await stopAgent(p);
  }
}
