/** The benchmark's figures as a table for people (the JSON file keeps all of them). */
import type { Latency } from "./measure.js";

type Run = Record<string, unknown>;

const f = (v: number | undefined | null, digits = 0) => (v === undefined || v === null || !Number.isFinite(v) ? "–" : v.toFixed(digits));
const ms = (l: Latency | undefined, k: "p50" | "p99" | "max") => (l ? f(l[k], l[k] < 10 ? 1 : 0) : "–");

function table(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join("\n");
}

/** One host count's figures. */
export function printRun(r: Run): void {
  const up = r.up as { seconds: number | null; up: number; controllerAlive: boolean } | undefined;
  const idle = r.idle as { cpuPercent: Record<string, number>; listFlavorsMs: Latency; rssMiB: { controller: number; agents: number[] } } | undefined;
  const serial = r.serial as { toActiveMs: Latency } | undefined;
  const b = r.burst as
    | {
        requested: number;
        accepted: number;
        active: number;
        failed: number;
        stuck: number;
        errors: Record<string, number>;
        acceptedPerSecond: number;
        activePerSecond: number;
        createMs: Latency;
        toActiveMs: Latency;
        eventLoopLagMs: { p99MaxMs: number; maxMs: number };
        cpuMsPerBoot: Record<string, number>;
        controllerAlive: boolean;
        statementsPerBoot: number;
        commitsPerBoot: number;
      }
    | undefined;
  const reads = r.reads as Record<string, { perSecond: number; ms: Latency }> | undefined;
  const d = r.deletes as { perSecond: number; stuck: number } | undefined;
  const rows: [string, string][] = [];
  rows.push(["hosts UP", up ? `${up.up} in ${f(up.seconds, 1)} s, controller ${up.controllerAlive ? "up throughout" : "EXITED"}` : "–"]);
  if (idle) {
    const c = idle.cpuPercent;
    rows.push(["idle CPU % of a core", `controller ${f(c.controller, 1)}, mariadb ${f(c.mariadb, 1)}, agents ${f(c.agents, 1)}, nats ${f(c.nats, 1)}`]);
    rows.push(["idle ListFlavors ms", `p50 ${ms(idle.listFlavorsMs, "p50")}, p99 ${ms(idle.listFlavorsMs, "p99")}`]);
    rows.push(["idle RSS MiB", `controller ${f(idle.rssMiB.controller)}, agents ${idle.rssMiB.agents.map((x) => f(x)).join(" + ")}`]);
  }
  if (serial) rows.push(["one at a time: create→ACTIVE ms", `p50 ${ms(serial.toActiveMs, "p50")}, p99 ${ms(serial.toActiveMs, "p99")} (${serial.toActiveMs.n})`]);
  if (b) {
    const errs = Object.entries(b.errors).map(([code, n]) => `${n}× code ${code}`).join(", ");
    rows.push([`burst of ${b.requested}`, `${b.active} ACTIVE, ${b.failed} ERROR, ${b.stuck} not settled${errs ? `, refused: ${errs}` : ""}`]);
    rows.push(["creates accepted/s", f(b.acceptedPerSecond)]);
    rows.push(["servers ACTIVE/s", f(b.activePerSecond)]);
    rows.push(["CreateServer ms", `p50 ${ms(b.createMs, "p50")}, p99 ${ms(b.createMs, "p99")}`]);
    rows.push(["create→ACTIVE ms", `p50 ${ms(b.toActiveMs, "p50")}, p99 ${ms(b.toActiveMs, "p99")}`]);
    const cpu = b.cpuMsPerBoot;
    const total = Object.values(cpu).reduce((a, x) => a + x, 0);
    rows.push(["CPU ms per boot", `${f(total, 1)}: controller ${f(cpu.controller, 1)}, mariadb ${f(cpu.mariadb, 1)}, agents ${f(cpu.agents, 1)}, nats ${f(cpu.nats, 1)}`]);
    rows.push(["SQL per boot", `${f(b.statementsPerBoot, 1)} statements, ${f(b.commitsPerBoot, 1)} commits`]);
    rows.push(["controller event-loop lag ms", `p99 up to ${f(b.eventLoopLagMs.p99MaxMs)}, max ${f(b.eventLoopLagMs.maxMs)}`]);
  }
  if (reads) {
    for (const [name, x] of Object.entries(reads)) rows.push([`${name}`, `${f(x.perSecond)}/s, p50 ${ms(x.ms, "p50")} ms, p99 ${ms(x.ms, "p99")} ms`]);
  }
  if (d) rows.push(["deletes/s", `${f(d.perSecond)}${d.stuck ? ` (${d.stuck} not deleted)` : ""}`]);
  if (r.error) rows.push(["error", String(r.error)]);
  console.log(`\n${r.hosts} hosts\n${table(rows)}\n`);
}
