/**
 * The controller's Prometheus metrics, scraped over HTTP from a live stack
 * after 20 creates: the request counters, the placement histogram, the
 * NO_VALID_HOST rejections by filter, the host gauges and the outbox. The
 * exposition is checked by `promtool check metrics` (Debian's prometheus
 * package, extracted by scripts/setup-promtool.sh) and by a parser here.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { eventually, failure, waitServers } from "./harness.js";
import { stack } from "./stack.js";

const PROMTOOL = process.env.NOVAMESH_PROMTOOL ?? "";
if (!existsSync(PROMTOOL) && process.env.NOVAMESH_PROMTOOL_REQUIRED === "1") throw new Error(`promtool not found at NOVAMESH_PROMTOOL="${PROMTOOL}" (bash scripts/setup-promtool.sh)`);

type Sample = { name: string; labels: Record<string, string>; value: number };

/** Parses the text exposition format strictly: every sample's family has HELP and TYPE, names and values are well formed, no series twice. */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") types.set(meta[2]!, meta[3]!);
      else helps.add(meta[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = Number(m[3] === "+Inf" ? Infinity : m[3]);
    assert.ok(!Number.isNaN(value), `a number: ${line}`);
    const family = [...types.keys()].find((f) => m[1] === f || (types.get(f) === "histogram" && /^(.*)_(bucket|sum|count)$/.exec(m[1]!)?.[1] === f));
    assert.ok(family, `${m[1]} has a TYPE`);
    assert.ok(helps.has(family), `${family} has a HELP`);
    if (types.get(family) === "counter") assert.match(family, /_total$/, `counter ${family} ends in _total`);
    else assert.doesNotMatch(family, /_total$/, `${types.get(family)} ${family} does not end in _total`);
    const key = `${m[1]}{${m[2] ?? ""}}`;
    assert.ok(!seen.has(key), `${key} once`);
    seen.add(key);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

describe("controller metrics", () => {
  const fx = stack({
    name: "metrics",
    members: ["alice"],
    controller: { metricsListen: "127.0.0.1:0", serviceDownTimeSeconds: 30 },
    // One agent process for two hosts, with its own metrics on a port it picks (its log says which).
    agents: ({ id }) => [{ host: `mt${id}`, hosts: 2, extraArgs: ["--metrics-listen", "127.0.0.1:0"] }],
  });
  const { admin, alice, imageId } = fx;
  const scrape = async () => {
    const res = await fetch(`http://127.0.0.1:${fx.ctl.metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return res.text();
  };
  const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);

  test("after 20 creates: 20 CreateServer OK, 20 placements, 20 spawns and builds timed, a NO_VALID_HOST by filter, both hosts up, their op consumers and the outbox drained", async () => {
    await admin.flavors.createFlavor({ flavor: { id: "mt.huge", name: "mt.huge", vcpus: 1024, ramMb: 64, diskGb: 1, description: "", extraSpecs: {} } });
    const before = parse(await scrape()).samples;
    const created = await Promise.all(Array.from({ length: 20 }, (_, i) => alice.servers.createServer({ name: `mt-${i}`, flavorId: "m1.tiny", imageId, requestId: `mt-${i}` })));
    await waitServers(admin, created.map((c) => c.server!.id), (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "20 ACTIVE", 60_000);
    const huge = (await alice.servers.createServer({ name: "mt-huge", flavorId: "mt.huge", imageId, requestId: "mt-huge" })).server!;
    await waitServers(admin, [huge.id], (s) => s.status === ServerStatus.SERVER_STATUS_ERROR, "the huge one ERROR");
    assert.equal((await failure(alice.servers.createServer({ name: "mt-bad", flavorId: "no-such-flavor", imageId }))).code, status.NOT_FOUND);

    const { samples, types } = await eventually(async () => {
      const parsed = parse(await scrape());
      return value(parsed.samples, "novamesh_outbox_messages") === 0 ? parsed : undefined;
    }, { what: "the outbox drained", timeoutMs: 20_000 });
    const delta = (name: string, labels: Record<string, string> = {}) => value(samples, name, labels) - value(before, name, labels);
    assert.equal(delta("novamesh_grpc_requests_total", { method: "CreateServer", code: "OK" }), 21);
    assert.equal(delta("novamesh_grpc_requests_total", { method: "CreateServer", code: "NOT_FOUND" }), 1);
    assert.equal(delta("novamesh_grpc_request_duration_seconds_count", { method: "CreateServer" }), 22);
    assert.equal(types.get("novamesh_grpc_request_duration_seconds"), "histogram");
    assert.equal(delta("novamesh_placements_total", { kind: "build", result: "placed" }), 20);
    assert.equal(delta("novamesh_placements_total", { kind: "build", result: "no_valid_host" }), 1);
    assert.equal(delta("novamesh_placement_duration_seconds_count"), 21);
    assert.equal(delta("novamesh_placement_duration_seconds_bucket", { le: "+Inf" }), 21);
    assert.ok(delta("novamesh_placement_duration_seconds_sum") > 0);
    assert.equal(delta("novamesh_no_valid_host_rejections_total", { filter: "vcpu" }), 2, "both hosts removed by the vCPU filter");
    assert.equal(value(samples, "novamesh_compute_hosts", { state: "up", status: "enabled" }), 2);
    assert.equal(value(samples, "novamesh_compute_hosts", { state: "down" }), 0);
    const ages = samples.filter((s) => s.name === "novamesh_compute_host_report_age_seconds");
    assert.deepEqual(ages.map((s) => s.labels.host).sort(), [...fx.hosts].sort());
    assert.ok(ages.every((s) => s.value >= 0 && s.value < 30), JSON.stringify(ages));
    assert.equal(value(samples, "novamesh_outbox_oldest_message_age_seconds"), 0);
    assert.ok(samples.some((s) => s.name === "nodejs_eventloop_lag_seconds"), "the event loop's lag");
    // The ops: 20 spawns done, each timed from its queueing; 20 builds timed to ACTIVE; the hosts' consumers empty.
    assert.equal(delta("novamesh_op_results_total", { kind: "spawn", result: "ok" }), 20);
    assert.equal(delta("novamesh_op_duration_seconds_count", { kind: "spawn" }), 20);
    assert.ok(delta("novamesh_op_duration_seconds_sum", { kind: "spawn" }) > 0);
    assert.equal(delta("novamesh_server_create_to_active_seconds_count"), 20);
    assert.ok(delta("novamesh_server_create_to_active_seconds_sum") >= delta("novamesh_op_duration_seconds_sum", { kind: "spawn" }), "a build lasts at least its spawn");
    for (const gauge of ["novamesh_host_ops_undelivered", "novamesh_host_ops_unacked"]) {
      const series = samples.filter((x) => x.name === gauge);
      assert.deepEqual(series.map((x) => [x.labels.host, x.value]).sort(), [...fx.hosts].sort().map((h) => [h, 0]), gauge);
    }
    assert.ok(delta("novamesh_db_connection_wait_seconds_count") >= 20, "every transaction's wait for a connection");
    assert.equal(value(samples, "novamesh_tasks_timed_out_total"), 0);

    // Only GET /metrics is served.
    assert.equal((await fetch(`http://127.0.0.1:${fx.ctl.metricsPort}/`)).status, 404);
  });

  /** The agent process's metrics URL, from its log. */
  const agentMetricsUrl = () =>
    eventually(async () => {
      const log = await readFile(join(fx.dir, `${fx.hosts[0]!.replace(/-1$/, "")}.log`), "utf8");
      return log.split("\n").filter((l) => l.includes('"metrics served"')).map((l) => JSON.parse(l).metrics as string).at(-1);
    }, { what: "the agent's metrics URL in its log" });

  test("the agent process: ops by host, kind and result with their time on the host, both hosts connected, reports sent", async () => {
    const url = await agentMetricsUrl();
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const { samples, types } = parse(await res.text());
    // Every server the tests made here was spawned on one of the two hosts (the first test's 20; the huge one never was).
    const spawned = samples.filter((x) => x.name === "novamesh_agent_ops_total" && x.labels.kind === "spawn" && x.labels.result === "ok");
    assert.deepEqual(spawned.map((x) => x.labels.host).sort(), [...fx.hosts].sort(), "both hosts spawned some");
    assert.equal(value(samples, "novamesh_agent_ops_total", { kind: "spawn", result: "ok" }), 20);
    assert.equal(value(samples, "novamesh_agent_op_duration_seconds_count", { kind: "spawn" }), 20);
    assert.equal(types.get("novamesh_agent_op_duration_seconds"), "histogram");
    for (const host of fx.hosts) {
      assert.equal(value(samples, "novamesh_agent_connected", { host }), 1, host);
      assert.equal(value(samples, "novamesh_agent_ops_in_flight", { host }), 0, host);
      assert.ok(value(samples, "novamesh_agent_reports_total", { host }) >= 1, `${host} reported`);
    }
    assert.equal(value(samples, "novamesh_agent_sessions_lost_total"), 0);
    assert.ok(samples.some((x) => x.name === "nodejs_eventloop_lag_seconds"));
    assert.equal((await fetch(url.replace(/\/metrics$/, "/"))).status, 404);
    if (existsSync(PROMTOOL)) assert.equal(execFileSync(PROMTOOL, ["check", "metrics"], { input: await (await fetch(url)).text() }).toString().trim(), "");
  });

  test("promtool check metrics passes on the exposition", { skip: existsSync(PROMTOOL) ? false : "promtool not found (NOVAMESH_PROMTOOL; bash scripts/setup-promtool.sh)" }, async () => {
    const text = await scrape();
    const out = execFileSync(PROMTOOL, ["check", "metrics"], { input: text }).toString();
    assert.equal(out.trim(), "", `promtool: ${out}`);
  });
});
