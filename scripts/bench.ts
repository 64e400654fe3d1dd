/**
 * novamesh's benchmark (npm run bench): for each host count, a controller
 * and that many fake hosts (up to --hosts-per-process in one agent process)
 * on this machine's MariaDB and NATS, then
 *
 *   - how long until every host is UP, and whether the controller lived;
 *   - idle reporting: CPU of each process and ListFlavors latency meanwhile;
 *   - creates one at a time: create→ACTIVE;
 *   - a burst of creates, --in-flight at a time: accepted/s, ACTIVE/s,
 *     CreateServer latency, create→ACTIVE, CPU per boot of each process,
 *     the controller's event-loop lag;
 *   - reads (ListFlavors, GetServer, ListServers) and the burst's deletes.
 *
 * It prints tables and writes every figure as JSON (--out). It asserts
 * nothing: it measures, for comparing one change with another.
 *
 * Creates go round --projects tenants (each a member token; quotas far
 * above the run's needs, but counted).
 *
 *   npm run bench -- [--hosts 10,1000] [--burst 2000] [--in-flight 32] [--serial 50] [--projects 16]
 *                    [--idle 20] [--report-interval 10] [--hosts-per-process 5000]
 *                    [--reads 2000] [--up-timeout 180] [--out FILE] [--keep] [--profile DIR]
 *                    [--mysql URL] [--nats URL]
 *
 * --mysql is MariaDB's server URL without a database (default: this
 * machine's, over its Unix socket when it has one, as the all-in-one uses
 * it; NOVAMESH_BENCH_MYSQL), --nats the NATS server's.
 *
 * --profile DIR writes V8 CPU profiles of the controller and agent processes
 * there (open them in Chrome's DevTools); --keep keeps their logs.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { Role } from "../gen/novamesh/compute/v1/identity.js";
import { Image, ImageVisibility } from "../gen/novamesh/compute/v1/image.js";
import { clients } from "../test/clients.js";
import type { Clients } from "../test/clients.js";
import { BenchCloud, REPO, cpuByRole, cpuDelta, dbCounters, listenerPid, rssMiB, type Roles } from "./bench/processes.js";
import { Tracker, allUp, burst, deletes, lagSampler, probeWhileIdle, reads, serial } from "./bench/measure.js";
import { printRun } from "./bench/report.js";

/** MariaDB on this machine: over its Unix socket where there is one (as the all-in-one does), else TCP. */
function defaultMysql(): string {
  const socket = "/run/mysqld/mysqld.sock";
  return existsSync(socket) ? `mysql://root@localhost:3306/?socketPath=${encodeURIComponent(socket)}` : "mysql://root@127.0.0.1:3306";
}

const { values: o } = parseArgs({
  options: {
    hosts: { type: "string", default: "10,1000" },
    burst: { type: "string", default: "2000" },
    "in-flight": { type: "string", default: "32" },
    serial: { type: "string", default: "50" },
    idle: { type: "string", default: "20" },
    "report-interval": { type: "string", default: "10" },
    "hosts-per-process": { type: "string", default: "5000" },
    reads: { type: "string", default: "2000" },
    projects: { type: "string", default: "16" },
    "up-timeout": { type: "string", default: "180" },
    mysql: { type: "string", default: process.env.NOVAMESH_BENCH_MYSQL ?? defaultMysql() },
    nats: { type: "string", default: process.env.NOVAMESH_BENCH_NATS ?? "nats://127.0.0.1:4222" },
    out: { type: "string", default: join("bench-results", `bench-${new Date().toISOString().replace(/[:.]/g, "-")}.json`) },
    keep: { type: "boolean", default: false },
    profile: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (o.help) {
  console.log("usage: npm run bench -- [--hosts 10,1000] [--burst 2000] [--in-flight 32] [--serial 50] [--projects 16] [--idle 20] [--report-interval 10] [--hosts-per-process 5000] [--reads 2000] [--up-timeout 180] [--out FILE] [--keep] [--profile DIR] [--mysql URL] [--nats URL]");
  process.exit(0);
}

function count(name: keyof typeof o, min: number): number {
  const v = Number(o[name]);
  if (!Number.isInteger(v) || v < min) {
    console.error(`bench: --${name} must be a whole number of at least ${min} (got ${JSON.stringify(o[name])})`);
    process.exit(2);
  }
  return v;
}

const hostCounts = String(o.hosts)
  .split(",")
  .map((s) => Number(s.trim()));
if (hostCounts.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error(`bench: --hosts must be a comma-separated list of host counts (got ${JSON.stringify(o.hosts)})`);
  process.exit(2);
}
const cfg = {
  burst: count("burst", 1),
  inFlight: count("in-flight", 1),
  serial: count("serial", 0),
  idle: count("idle", 1),
  reportInterval: count("report-interval", 1),
  perProcess: count("hosts-per-process", 1),
  reads: count("reads", 1),
  projects: count("projects", 1),
  upTimeout: count("up-timeout", 10),
};
const services = { mysqlUrl: String(o.mysql), natsUrl: String(o.nats) };
const say = (s: string) => console.log(`bench: ${s}`);

/** Waits until the controller answers (it migrates its database first). */
async function answering(c: Clients, cloud: BenchCloud): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (!cloud.controllerAlive()) throw new Error(`the controller exited while starting (log: ${cloud.dir}/controller.log)`);
    try {
      await c.flavors.listFlavors({});
      return;
    } catch (err) {
      if (Date.now() - t0 > 60_000) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function run(hosts: number): Promise<Record<string, unknown>> {
  const cloud = new BenchCloud(services, join(tmpdir(), "novamesh-bench"), o.profile ? ["--cpu-prof", `--cpu-prof-dir=${o.profile}`] : []);
  const mysqlPort = Number(new URL(services.mysqlUrl).port || 3306);
  const natsPort = Number(new URL(services.natsUrl.replace(/^nats:/, "http:")).port || 4222);
  const result: Record<string, unknown> = { hosts, settings: { ...cfg, mysql: services.mysqlUrl, nats: services.natsUrl } };
  current = cloud;
  try {
    await cloud.startController([
      "--report-interval", String(cfg.reportInterval),
      "--service-down-time", String(Math.max(60, 3 * cfg.reportInterval)),
      // One admin token serves every simulated host of the run.
      "--max-agent-streams-per-token", "0",
    ]);
    const admin = clients(cloud.address, cloud.adminToken);
    await answering(admin, cloud);
    await cloud.ampleQuotas();
    // Tenants: creates go round the projects, each with a member token of its own.
    const tenants: Clients[] = [];
    for (let i = 0; i < cfg.projects; i++) {
      const t = await admin.identity.createToken({ projectId: `bench-${i}`, role: Role.ROLE_MEMBER, description: "bench" });
      tenants.push(clients(cloud.address, t.secret));
    }
    const image = await admin.images.registerImage({
      image: Image.fromPartial({ name: "bench", visibility: ImageVisibility.IMAGE_VISIBILITY_PUBLIC, diskFormat: "qcow2", containerFormat: "bare" }),
    });
    const boot = { flavorId: "m1.tiny", imageId: image.image!.id };
    const roles: Roles = { controller: [cloud.controller!.pid!], mariadb: [], nats: [], agents: [] };
    const db = listenerPid(mysqlPort);
    const nats = listenerPid(natsPort);
    if (db) roles.mariadb!.push(db);
    else say(`no pid listens on port ${mysqlPort} that this user may see: MariaDB's CPU is left out (run as root)`);
    if (nats) roles.nats!.push(nats);
    else say(`no pid listens on port ${natsPort} that this user may see: NATS's CPU is left out (run as root)`);

    say(`${hosts} hosts: starting them (MariaDB ${new URL(services.mysqlUrl).searchParams.has("socketPath") ? "over its Unix socket" : "over TCP"})`);
    let cpu0 = cpuByRole(roles);
    cloud.startAgents(hosts, cfg.perProcess, cfg.reportInterval);
    roles.agents = cloud.agents.map((a) => a.pid!);
    const up = await allUp(admin, hosts, cfg.upTimeout * 1000, () => cloud.controllerAlive());
    result.up = { seconds: up.seconds, up: up.up, controllerAlive: cloud.controllerAlive(), cpuSeconds: cpuDelta(cpu0, cpuByRole(roles)) };
    if (up.seconds === null) {
      // An error: the logs are kept, and the run fails.
      result.error = `only ${up.up} of ${hosts} hosts UP after ${cfg.upTimeout} s${cloud.controllerAlive() ? "" : "; the controller exited"}`;
      say(`${hosts} hosts: ${result.error} (logs in ${cloud.dir})`);
      return result;
    }
    say(`${hosts} hosts: all UP in ${up.seconds.toFixed(1)} s; idle for ${cfg.idle} s`);

    cpu0 = cpuByRole(roles);
    const idleLatency = await probeWhileIdle(admin, cfg.idle);
    const idleCpu = cpuDelta(cpu0, cpuByRole(roles));
    result.idle = {
      seconds: cfg.idle,
      cpuPercent: Object.fromEntries(Object.entries(idleCpu).map(([k, v]) => [k, (100 * v) / cfg.idle])),
      listFlavorsMs: idleLatency,
      rssMiB: { controller: rssMiB(roles.controller![0]!), agents: roles.agents.map(rssMiB) },
    };

    const tracker = new Tracker(admin);
    tracker.start();
    try {
      if (cfg.serial > 0) {
        say(`${hosts} hosts: ${cfg.serial} creates one at a time`);
        const one = await serial(tenants[0]!, tracker, boot, cfg.serial);
        result.serial = { toActiveMs: one.toActiveMs };
        await deletes(admin, tracker, one.ids, cfg.inFlight);
      }

      say(`${hosts} hosts: a burst of ${cfg.burst} creates, ${cfg.inFlight} in flight`);
      cpu0 = cpuByRole(roles);
      const db0 = await dbCounters(services.mysqlUrl);
      const lag = lagSampler(cloud.metricsUrl);
      const b = await burst(tenants, tracker, boot, cfg.burst, cfg.inFlight, "burst");
      const burstCpu = cpuDelta(cpu0, cpuByRole(roles));
      const db1 = await dbCounters(services.mysqlUrl);
      const { ids, ...figures } = b;
      result.burst = {
        ...figures,
        eventLoopLagMs: await lag.stop(),
        cpuMsPerBoot: Object.fromEntries(Object.entries(burstCpu).map(([k, v]) => [k, (1000 * v) / Math.max(1, b.active)])),
        controllerAlive: cloud.controllerAlive(),
        // Everything the database did meanwhile, reports and watch polls included.
        statementsPerBoot: (db1.statements - db0.statements) / Math.max(1, b.active),
        commitsPerBoot: (db1.commits - db0.commits) / Math.max(1, b.active),
      };

      say(`${hosts} hosts: reads, then the burst's deletes`);
      result.reads = await reads(admin, ids, cfg.reads, cfg.inFlight);
      const d = await deletes(admin, tracker, ids, cfg.inFlight);
      result.deletes = d;
    } finally {
      tracker.stop();
    }
    return result;
  } catch (err) {
    result.error = (err as Error).message;
    say(`${hosts} hosts: ${(err as Error).message} (logs in ${cloud.dir})`);
    return result;
  } finally {
    current = null;
    await cloud.destroy(o.keep || "error" in result || !cloud.controllerAlive()).catch((err: unknown) => {
      result.cleanupError = (err as Error).message;
      say(`${hosts} hosts: cleaning up failed: ${(err as Error).message} (database ${cloud.db}, stream ${cloud.stream}, ${cloud.dir})`);
    });
  }
}

/** The cloud being measured, taken down if the benchmark is interrupted. */
let current: BenchCloud | null = null;
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    // Once: a second signal (Ctrl-C again, or npm and tsx passing theirs on) must not cut the clean-up short.
    if (interrupted) return;
    interrupted = true;
    say(`${signal}: stopping${current ? " and taking the cloud down" : ""}`);
    void (current?.destroy(false) ?? Promise.resolve()).finally(() => process.exit(130));
  });
}

// The programs run as shipped: compiled first (incremental), so the figures are of the code as it is now.
say("compiling (npm run build)");
execFileSync("bash", ["scripts/build.sh"], { cwd: REPO, stdio: ["ignore", "ignore", "inherit"] });
const runs: Record<string, unknown>[] = [];
for (const hosts of hostCounts) {
  const r = await run(hosts);
  runs.push(r);
  printRun(r);
}
const out = String(o.out);
await mkdir(dirname(out), { recursive: true });
await writeFile(out, JSON.stringify({ time: new Date().toISOString(), machine: await machine(), runs }, null, 2));
say(`figures written to ${out}`);
process.exit(runs.some((r) => "error" in r) ? 1 : 0);

async function machine(): Promise<Record<string, unknown>> {
  const os = await import("node:os");
  return { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
}
