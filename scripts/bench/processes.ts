/**
 * The benchmark's processes: a controller and fake-agent processes started
 * as the product runs them (their own processes, a database, ops stream and
 * image bucket of their own), and what each costs: CPU time and resident
 * memory read from /proc, for these and for the MariaDB and NATS servers
 * they talk to.
 */
import { spawn, execFileSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { connect } from "nats";
import { QUOTA_RESOURCES } from "../../controller/domain/quota.js";
import { setDefaultLimits } from "../../controller/store/quotas.js";
import { REPO, freePort, stopAgent } from "../../test/agents.js";

export { REPO };

export interface Services {
  /** mysql://user@host:port, without a database. */
  readonly mysqlUrl: string;
  readonly natsUrl: string;
}

/** How a novamesh program is run: the compiled JavaScript under dist/ (the benchmark builds it first). */
export function programArgs(program: "controller" | "agent"): string[] {
  const built = join(REPO, "dist", program, "main.js");
  if (!existsSync(built)) throw new Error(`${built} is missing: npm run build`);
  return [built];
}

/** One process's CPU seconds (user + system) so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command (which may hold spaces) in parentheses.
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(rest[11]) + Number(rest[12]);
  return ticks / 100;
}

/** Resident memory of a process in MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

/** The pid of whatever listens on 127.0.0.1:`port` (MariaDB, nats-server), or null. */
export function listenerPid(port: number): number | null {
  try {
    const out = execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" });
    const m = /pid=(\d+)/.exec(out);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The processes whose CPU a run accounts, by role. */
export type Roles = Record<string, number[]>;

/** CPU seconds per role, now. */
export function cpuByRole(roles: Roles): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [role, pids] of Object.entries(roles)) {
    out[role] = pids.reduce((sum, pid) => {
      try {
        return sum + cpuSeconds(pid);
      } catch {
        return sum; // gone (a crashed process): its time is lost, the run says it crashed
      }
    }, 0);
  }
  return out;
}

export function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(after).map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)]));
}

/**
 * One benchmark cloud: its database, stream, subjects and image bucket,
 * named after a random id so that runs never collide.
 */
export class BenchCloud {
  readonly id = Math.random().toString(16).slice(2, 10);
  readonly db = `nm_bench_${this.id}`;
  readonly stream = `NMBENCH_${this.id}`;
  readonly prefix = `nmbench_${this.id}.ops`;
  readonly bucket = `nmbench_images_${this.id}`;
  readonly adminToken = `bench-admin-${this.id}`;
  readonly dir: string;
  controller: ChildProcess | null = null;
  readonly agents: ChildProcess[] = [];
  address = "";
  metricsUrl = "";

  constructor(
    readonly services: Services,
    baseDir: string,
    /** Node flags for the controller and agents (--cpu-prof and its directory, to profile them). */
    private readonly nodeFlags: readonly string[] = [],
  ) {
    this.dir = join(baseDir, this.id);
  }

  /** Starts the controller; resolves once its port is open. `extra`: more flags. */
  async startController(extra: readonly string[] = []): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const port = await freePort();
    const metrics = await freePort();
    this.address = `127.0.0.1:${port}`;
    this.metricsUrl = `http://127.0.0.1:${metrics}/metrics`;
    const args = [
      ...this.nodeFlags,
      ...programArgs("controller"),
      "--listen", this.address, "--plaintext",
      "--metrics-listen", `127.0.0.1:${metrics}`,
      "--database-url", withDatabase(this.services.mysqlUrl, this.db),
      "--nats", this.services.natsUrl,
      "--ops-stream", this.stream, "--ops-subject-prefix", this.prefix, "--image-bucket", this.bucket,
      "--admin-token", this.adminToken,
      "--log-level", "warn",
      ...extra,
    ];
    this.controller = spawnLogged(args, join(this.dir, "controller.log"));
  }

  /**
   * Sets every project's default quota far above what the run uses: limits
   * still counted under the project's quota lock, as for any tenant, but
   * never reached.
   */
  async ampleQuotas(): Promise<void> {
    const conn = await mysql.createConnection(withDatabase(this.services.mysqlUrl, this.db));
    try {
      await setDefaultLimits(conn, Object.fromEntries(QUOTA_RESOURCES.map((r) => [r, 100_000_000])));
    } finally {
      await conn.end();
    }
  }

  /**
   * Starts `count` fake hosts in processes of at most `perProcess` each,
   * named b<process>-1..n; each reports every `reportInterval` seconds.
   */
  startAgents(count: number, perProcess: number, reportInterval: number): string[] {
    const hosts: string[] = [];
    for (let p = 0; count > 0; p++) {
      const n = Math.min(count, perProcess);
      count -= n;
      const prefix = `b${p}`;
      for (let i = 1; i <= n; i++) hosts.push(`${prefix}-${i}`);
      const args = [
        ...this.nodeFlags,
        ...programArgs("agent"),
        "--controller", this.address, "--plaintext", "--token", this.adminToken,
        "--nats", this.services.natsUrl,
        "--host", prefix, "--hosts", String(n),
        "--state-dir", join(this.dir, `agents-${p}`),
        "--report-interval", String(reportInterval),
        // Room for a burst's share of servers on even the fewest hosts.
        "--vcpus", "512", "--memory-mb", String(4 * 1024 * 1024), "--disk-gb", "100000",
        "--concurrency", "32",
        "--log-level", "warn",
      ];
      this.agents.push(spawnLogged(args, join(this.dir, `agents-${p}.log`)));
    }
    return hosts;
  }

  /** Whether the controller process is still running. */
  controllerAlive(): boolean {
    return !!this.controller && this.controller.exitCode === null && this.controller.signalCode === null;
  }

  /** Stops every process, drops the database, the streams and the state directory. */
  async destroy(keepDir: boolean): Promise<void> {
    // A profiled process writes its profile as it exits: it is given longer.
    const graceMs = this.nodeFlags.length ? 120_000 : 15_000;
    await Promise.all([...this.agents, ...(this.controller ? [this.controller] : [])].map((c) => stopAgent(c, "SIGTERM", graceMs)));
    const conn = await mysql.createConnection(this.services.mysqlUrl);
    try {
      await conn.query(`DROP DATABASE IF EXISTS \`${this.db}\``);
    } finally {
      await conn.end();
    }
    const nc = await connect({ servers: this.services.natsUrl });
    try {
      // A stream with thousands of consumers takes JetStream a while to delete.
      const jsm = await nc.jetstreamManager({ timeout: 120_000 });
      for (const name of [this.stream, `OBJ_${this.bucket}`]) {
        await jsm.streams.delete(name).catch((err: { api_error?: { err_code?: number } }) => {
          if (err.api_error?.err_code !== 10059) throw err;
        });
      }
    } finally {
      await nc.close();
    }
    if (!keepDir) await rm(this.dir, { recursive: true, force: true });
  }
}

/** `url` (a server, maybe with ?socketPath=) with the database `db`. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/**
 * MariaDB's statement and commit counters (server-wide: run the benchmark
 * on a database server nothing else uses for exact figures).
 */
export async function dbCounters(mysqlUrl: string): Promise<{ statements: number; commits: number }> {
  const conn = await mysql.createConnection(mysqlUrl);
  try {
    const [rows] = await conn.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_commit')");
    const v = Object.fromEntries((rows as { Variable_name: string; Value: string }[]).map((r) => [r.Variable_name, Number(r.Value)]));
    return { statements: v.Questions ?? 0, commits: v.Com_commit ?? 0 };
  } finally {
    await conn.end();
  }
}

function spawnLogged(args: string[], logFile: string): ChildProcess {
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(logFile, { flags: "a" });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  return child;
}
