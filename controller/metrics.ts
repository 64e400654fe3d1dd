/**
 * The controller's Prometheus metrics (prom-client), on an HTTP port of its
 * own (`--metrics-listen`, `GET /metrics`). Each controller has its own
 * registry (several may run in one process, as in the tests). Counters and
 * histograms are kept as calls and placements happen; what the database
 * knows (the outbox, the hosts) is read when Prometheus scrapes. Names
 * follow Prometheus conventions (`_total`, `_seconds`, base units).
 */
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Logger } from "pino";

/** What a scrape reads from the database. */
export interface ScrapedState {
  /** Messages in the outbox not yet published, and the age of the oldest (s). */
  readonly outboxDepth: number;
  readonly outboxOldestSeconds: number;
  /** Each compute host: seconds since its last report (null: never), whether it counts as up, enabled. */
  readonly hosts: readonly { readonly host: string; readonly reportAgeSeconds: number | null; readonly up: boolean; readonly enabled: boolean }[];
  /** Each host's op consumer in JetStream: ops not yet delivered, and delivered but not yet acknowledged (running). */
  readonly hostOps: readonly { readonly host: string; readonly undelivered: number; readonly unacked: number }[];
}

/** Latency buckets of API calls and placements, in seconds (1 ms to 10 s). */
const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Buckets of ops and builds, in seconds (10 ms to 30 min: a live migration under TCG takes minutes). */
const OPS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly on = { registers: [this.registry] };

  readonly grpcRequests = new Counter({
    name: "novamesh_grpc_requests_total",
    help: "Public and agent API calls answered, by method and gRPC status code.",
    labelNames: ["method", "code"] as const,
    ...this.on,
  });
  readonly grpcDuration = new Histogram({
    name: "novamesh_grpc_request_duration_seconds",
    help: "Time from a call's arrival to its answer, by method (streams: until they end).",
    labelNames: ["method"] as const,
    buckets: LATENCY,
    ...this.on,
  });
  readonly placements = new Counter({
    name: "novamesh_placements_total",
    help: "Servers the scheduler placed or could not, by kind (build: a create or an unshelve; move) and result (placed, no_valid_host).",
    labelNames: ["kind", "result"] as const,
    ...this.on,
  });
  readonly placementDuration = new Histogram({
    name: "novamesh_placement_duration_seconds",
    help: "Time to choose and claim a host for one server (the filters, the weighers and the claims, reloads after lost claims included).",
    buckets: LATENCY,
    ...this.on,
  });
  readonly claimsLost = new Counter({
    name: "novamesh_placement_claims_lost_total",
    help: "Claims of a chosen host that another scheduler or a report got to first (the next candidate is tried).",
    ...this.on,
  });
  readonly noValidHostRejections = new Counter({
    name: "novamesh_no_valid_host_rejections_total",
    help: "Hosts each filter removed in placements that found no host (a NO_VALID_HOST fault's counts), by filter.",
    labelNames: ["filter"] as const,
    ...this.on,
  });

  readonly opResults = new Counter({
    name: "novamesh_op_results_total",
    help: "Op results applied, by op kind and result (ok, or the failure's code).",
    labelNames: ["kind", "result"] as const,
    ...this.on,
  });
  readonly opDuration = new Histogram({
    name: "novamesh_op_duration_seconds",
    help: "Time from an op's queueing (committed with its action) to its result applied, by op kind: the bus, the host's queue and the driver.",
    labelNames: ["kind"] as const,
    buckets: OPS,
    ...this.on,
  });
  readonly createToActive = new Histogram({
    name: "novamesh_server_create_to_active_seconds",
    help: "Time from a CreateServer call to the server ACTIVE (placement, image, spawn), for servers that got there.",
    buckets: OPS,
    ...this.on,
  });
  readonly tasksTimedOut = new Counter({
    name: "novamesh_tasks_timed_out_total",
    help: "Server tasks and volume statuses the reaper ended past their deadline, by task (a TASK_TIMED_OUT fault each).",
    labelNames: ["task"] as const,
    ...this.on,
  });
  readonly hellosRefused = new Counter({
    name: "novamesh_agent_hellos_refused_total",
    help: "Agent hellos refused because too many were being handled (CONTROLLER_BUSY; the agent comes back after the delay it was given).",
    ...this.on,
  });
  readonly unhandledRejections = new Counter({
    name: "novamesh_unhandled_rejections_total",
    help: "Promise rejections nothing handled (a defect, logged at error; the controller keeps running).",
    ...this.on,
  });
  readonly dbConnectionWait = new Histogram({
    name: "novamesh_db_connection_wait_seconds",
    help: "Time a transaction waited for a connection of the controller's MySQL pool (long waits: the pool is too small or the database slow).",
    buckets: LATENCY,
    ...this.on,
  });

  constructor(scrape: () => Promise<ScrapedState>) {
    processMetrics(this.registry);
    // One read of the database per scrape, shared by the gauges below.
    let pending: Promise<ScrapedState> | null = null;
    const state = () => (pending ??= scrape().finally(() => setImmediate(() => (pending = null))));
    new Gauge({
      name: "novamesh_outbox_messages",
      help: "Op messages committed but not yet published to JetStream.",
      ...this.on,
      async collect() {
        this.set((await state()).outboxDepth);
      },
    });
    new Gauge({
      name: "novamesh_outbox_oldest_message_age_seconds",
      help: "Age of the oldest unpublished op message (0 when the outbox is empty).",
      ...this.on,
      async collect() {
        this.set((await state()).outboxOldestSeconds);
      },
    });
    new Gauge({
      name: "novamesh_compute_hosts",
      help: "Compute hosts by state (up: reported within the service-down time) and status (enabled, disabled).",
      labelNames: ["state", "status"] as const,
      ...this.on,
      async collect() {
        this.reset();
        for (const state of ["up", "down"]) for (const status of ["enabled", "disabled"]) this.set({ state, status }, 0);
        for (const h of (await state()).hosts) this.inc({ state: h.up ? "up" : "down", status: h.enabled ? "enabled" : "disabled" });
      },
    });
    for (const [name, help, key] of [
      ["novamesh_host_ops_undelivered", "Ops in JetStream not yet delivered to each host's agent (a backlog: the agent is down, slow or far behind).", "undelivered"],
      ["novamesh_host_ops_unacked", "Ops delivered to each host's agent and not yet acknowledged (running, or lost with an agent until redelivery).", "unacked"],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ["host"] as const,
        ...this.on,
        async collect() {
          this.reset();
          for (const h of (await state()).hostOps) this.set({ host: h.host }, h[key]);
        },
      });
    }
    new Gauge({
      name: "novamesh_compute_host_report_age_seconds",
      help: "Seconds since each compute host's last resource report (hosts that never reported are left out).",
      labelNames: ["host"] as const,
      ...this.on,
      async collect() {
        this.reset();
        for (const h of (await state()).hosts) if (h.reportAgeSeconds !== null) this.set({ host: h.host }, h.reportAgeSeconds);
      },
    });
  }
}

/**
 * The process's CPU, memory, heap, GC and event-loop lag, in `registry`.
 * prom-client's gauges of active handles, requests and resources end in
 * _total, which Prometheus keeps for counters: left out.
 */
export function processMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) registry.removeSingleMetric(name);
}

/**
 * Serves `GET /metrics` on `listen` ("host:port"; port 0 picks one).
 * Resolves the server once it listens; anything but GET /metrics is 404.
 */
export async function serveMetrics(listen: string, registry: Registry, log: Logger): Promise<Server> {
  const at = listen.lastIndexOf(":");
  const host = listen.slice(0, at).replace(/^\[(.*)\]$/, "$1") || "127.0.0.1";
  const port = Number(listen.slice(at + 1));
  const server = createServer((req, res) => {
    if (req.method !== "GET" || (req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: metrics are at GET /metrics\n");
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err: unknown) => {
        log.warn({ err }, "a metrics scrape failed");
        res.writeHead(500, { "content-type": "text/plain" }).end(`scrape failed: ${(err as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
