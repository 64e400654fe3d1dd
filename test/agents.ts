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

/** A path for a test's temp dir (not created yet). */
export function tempDirPath(name: string): string {
  return join(tmpdir(), `novamesh-test-${name}-${process.pid}-${Date.now()}`);
}

export async function tempDir(name: string): Promise<string> {
  const dir = tempDirPath(name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Starts `agent/main.ts` as its own process (so tests can kill it for real).
 * `connection`: the flags for reaching the controller (default --plaintext).
 */
export function spawnAgent(o: { controller: string; token: string; args: string[]; logFile: string; nats?: string; connection?: string[] }): ChildProcess {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", join(REPO, "agent/main.ts"), "--controller", o.controller, "--token", o.token, "--nats", o.nats ?? NATS_URL, ...(o.connection ?? ["--plaintext"]), ...o.args],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NOVAMESH_LOG_LEVEL: process.env.NOVAMESH_TEST_LOG ?? "info" } },
  );
  const log = createWriteStream(o.logFile, { flags: "a" });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return child;
}

/** Stops a process with `signal`, and SIGKILL if it has not exited `graceMs` later. */
export async function stopAgent(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
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

/** A fake domain as its state file keeps it (what tests read of it). */
export interface FakeDomainView {
  instance: { image: { id: string } };
  powerState: string;
  /** How many times it was started (spawn, power on, reboot, rebuild). */
  boots: number;
  incoming?: unknown;
  migratedTo?: string;
  volumes?: { attachmentId: string; device: string; sizeBytes?: number; connection: { host: string; port: number; exportName: string } }[];
}

/**
 * The fake hypervisor's domains in a state file (what the host itself runs),
 * by server id; none if the file does not exist yet.
 */
export async function fakeDomains(statePath: string): Promise<Record<string, FakeDomainView>> {
  let text: string;
  try {
    text = await readFile(statePath, "utf8");
  } catch {
    return {};
  }
  return (JSON.parse(text) as { domains: Record<string, FakeDomainView> }).domains;
}

/** Size of a fake host. */
export interface Capacity {
  vcpus: number;
  memoryMb: number;
  diskGb: number;
}

/** What most tests give a fake host. */
export const DEFAULT_CAPACITY: Capacity = { vcpus: 8, memoryMb: 16384, diskGb: 200 };

/** One agent process: one host, or with `hosts` > 1 that many (`<host>-1` … `<host>-N`). */
export interface AgentSpec {
  /** --host: the host's name, or the prefix of the names of its `hosts`. */
  host: string;
  hosts?: number;
  /** The fake driver's faults (--fake-faults). */
  faults?: object;
  /** Each fake host's size; null leaves the agent's own defaults. Default: DEFAULT_CAPACITY. */
  capacity?: Capacity | null;
  /** Driver flags in place of the fake driver's (`--driver fake`, capacity and faults). */
  driverArgs?: string[];
  /** Once up, the hosts' compute services are disabled for this reason. */
  disabled?: string;
  /** The agent's token. Default: the environment's admin token (which may speak for any host). */
  token?: string;
  /** The agent's NATS URL. Default: the machine's (NATS_URL). */
  nats?: string;
  /** The CA nats-server's TLS certificate chains to (--nats-ca). */
  natsCa?: string;
  /** More agent flags, after all others. */
  extraArgs?: string[];
}

/**
 * A fake volume host: one pool `pool` of `gb` GiB, and no room for servers
 * (it is storage only); `zone`: its availability zone; `extra`: more agent
 * flags (such as --fake-volume-faults).
 */
export function fakeVolumeHost(host: string, o: { gb?: number; zone?: string; extra?: readonly string[] } = {}): AgentSpec {
  return {
    host,
    driverArgs: [
      "--driver", "fake", "--vcpus", "1", "--memory-mb", "64", "--disk-gb", "1",
      ...(o.zone ? ["--zone", o.zone] : []),
      "--volume-backend", "fake", "--volume-pools", `pool:${o.gb ?? 20}G`, ...(o.extra ?? []),
    ],
  };
}

/** An export the fake volume backend of a volume host serves (its state file). */
export interface FakeExport {
  readonly volumeId: string;
  readonly attachmentId: string;
  readonly client: string;
  readonly exportName: string;
}

/** The exports the fake volume backend of `host` (started by a stack in `dir`) serves now. */
export async function fakeExports(dir: string, host: string): Promise<FakeExport[]> {
  return (JSON.parse(await readFile(join(dir, host, "volumes", "volumes.json"), "utf8")) as { exports: FakeExport[] }).exports;
}

/** The compute hosts an agent process runs. */
export function hostNames(spec: AgentSpec): string[] {
  const n = spec.hosts ?? 1;
  return n === 1 ? [spec.host] : Array.from({ length: n }, (_, i) => `${spec.host}-${i + 1}`);
}

function driverArgs(spec: AgentSpec): string[] {
  if (spec.driverArgs) return spec.driverArgs;
  const c = spec.capacity === undefined ? DEFAULT_CAPACITY : spec.capacity;
  return [
    "--driver", "fake",
    ...(c ? ["--vcpus", String(c.vcpus), "--memory-mb", String(c.memoryMb), "--disk-gb", String(c.diskGb)] : []),
    ...(spec.faults ? ["--fake-faults", JSON.stringify(spec.faults)] : []),
  ];
}

/**
 * Agents of one test environment, one process per spec. Every host keeps its
 * state in `<dir>/<host name>` and an agent process logs to `<dir>/<host>.log`.
 */
export class Hosts {
  /** Agent processes by their spec's `host`. */
  readonly procs = new Map<string, ChildProcess>();
  private readonly specs = new Map<string, AgentSpec>();
  constructor(
    private readonly env: TestEnv,
    private readonly address: () => string,
    readonly dir: string,
  ) {}

  /** Starts an agent process (again, after a stop: its log is appended to). */
  start(spec: AgentSpec): ChildProcess {
    const multi = (spec.hosts ?? 1) > 1;
    const child = spawnAgent({
      controller: this.address(),
      token: spec.token ?? this.env.adminToken,
      nats: spec.nats,
      connection: this.env.agentConnection(),
      logFile: join(this.dir, `${spec.host}.log`),
      args: ["--host", spec.host, ...(multi ? ["--hosts", String(spec.hosts)] : []), ...(spec.natsCa ? ["--nats-ca", spec.natsCa] : []), "--state-dir", multi ? this.dir : join(this.dir, spec.host), ...driverArgs(spec), ...(spec.extraArgs ?? [])],
    });
    this.procs.set(spec.host, child);
    this.specs.set(spec.host, spec);
    return child;
  }

  /** Starts the agent process for `host` (a spec's `host`) again, as it was started, with `over`. */
  restart(host: string, over: Partial<AgentSpec> = {}): ChildProcess {
    const spec = this.specs.get(host);
    if (!spec) throw new Error(`no agent was started for ${host}`);
    return this.start({ ...spec, ...over });
  }

  /** Stops the agent process started for `host` (a spec's `host`). */
  async stop(host: string, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.procs.get(host);
    if (child) await stopAgent(child, signal);
  }

  /** The fake hypervisor's domains on `host`. */
  domains(host: string) {
    return fakeDomains(join(this.dir, host, "fake-domains.json"));
  }

  /** The fake driver's call log of `host`. */
  calls(host: string) {
    return driverCalls(join(this.dir, host, "fake-domains.json"));
  }

  async stopAll(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    for (const p of this.procs.values()) await stopAgent(p, signal);
  }
}
