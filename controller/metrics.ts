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
}

/** Latency buckets of API calls and placements, in seconds (1 ms to 10 s). */
const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

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

  constructor(scrape: () => Promise<ScrapedState>) {
    // The process's CPU, memory, heap, GC and event-loop lag; prom-client's gauges of active handles,
    // requests and resources end in _total, which Prometheus keeps for counters: left out.
    collectDefaultMetrics({ register: this.registry });
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(name);
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
