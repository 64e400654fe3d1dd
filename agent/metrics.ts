/**
 * An agent process's Prometheus metrics (`--metrics-listen`, GET /metrics):
 * the ops each of its hosts ran, by kind and result, with their time on
 * the host; ops in flight; whether each host's session with the controller
 * is up, sessions lost, resource reports sent; and the process's own
 * figures. One registry per process: a process that simulates many hosts
 * labels them by `host`.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { processMetrics } from "../controller/metrics.js";

/** Buckets of an op's time on the host, in seconds (1 ms to 30 min). */
const OP_SECONDS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/** What the gauges read of one host when Prometheus scrapes. */
export interface HostGauges {
  readonly inFlight: () => number;
  readonly connected: () => boolean;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly on = { registers: [this.registry] };
  private readonly hosts = new Map<string, HostGauges>();

  readonly ops = new Counter({
    name: "novamesh_agent_ops_total",
    help: "Ops this host ran to an end, by kind and result (ok, or the failure's code); results re-reported after a restart are not counted again.",
    labelNames: ["host", "kind", "result"] as const,
    ...this.on,
  });
  readonly opDuration = new Histogram({
    name: "novamesh_agent_op_duration_seconds",
    help: "Time an op ran on this host (its queue behind the server's other ops left out), by kind.",
    labelNames: ["host", "kind"] as const,
    buckets: OP_SECONDS,
    ...this.on,
  });
  readonly reports = new Counter({
    name: "novamesh_agent_reports_total",
    help: "Resource reports this host sent to the controller.",
    labelNames: ["host"] as const,
    ...this.on,
  });
  readonly sessionsLost = new Counter({
    name: "novamesh_agent_sessions_lost_total",
    help: "Times this host's session with the controller ended other than by stopping (it connects again with backoff).",
    labelNames: ["host"] as const,
    ...this.on,
  });

  constructor() {
    processMetrics(this.registry);
    const hosts = this.hosts;
    new Gauge({
      name: "novamesh_agent_ops_in_flight",
      help: "Ops accepted by this host and not yet finished (running, or queued behind an op of the same server).",
      labelNames: ["host"] as const,
      ...this.on,
      collect() {
        this.reset();
        for (const [host, g] of hosts) this.set({ host }, g.inFlight());
      },
    });
    new Gauge({
      name: "novamesh_agent_connected",
      help: "1 while this host's session with the controller is up (its Hello answered), else 0.",
      labelNames: ["host"] as const,
      ...this.on,
      collect() {
        this.reset();
        for (const [host, g] of hosts) this.set({ host }, g.connected() ? 1 : 0);
      },
    });
  }

  /** Adds `host`'s gauges (read at each scrape). */
  watch(host: string, gauges: HostGauges): void {
    this.hosts.set(host, gauges);
  }
}
