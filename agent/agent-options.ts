/** Options of the Agent: a documented interface, accepted as Partial and merged over defaults. */
import type { HostAllocation } from "../gen/novamesh/agent/v1/agent.js";
import { hostname } from "node:os";
import { join } from "node:path";
import { credentials as grpcCredentials, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import type { NatsConnection } from "nats";
import { pino, type Logger } from "pino";
import { loggerOptions } from "../controller/log-context.js";
import type { AgentMetrics } from "./metrics.js";
import type { Driver } from "./drivers/driver.js";
import type { NetworkDriver } from "./network/driver.js";
import type { ImageStore } from "./drivers/libvirt/image-store.js";
import type { VolumeBackend } from "./volume/backend.js";
import { AGENT_VERSION } from "./version.js";

/** Everything an Agent is configured with. */
export interface AgentOptions {
  /** The hypervisor driver (required). The agent calls `init()` and, at stop, `close()`. */
  readonly driver: Driver;
  /**
   * The host's network driver (none: instances with ports are refused).
   * The agent reconciles it with the hypervisor's instances at start and
   * closes it at stop.
   */
  readonly network?: NetworkDriver;
  /**
   * The host's volume backend when it serves volumes (a volume host): its
   * pools go with the hello and every report, and it runs the volume ops
   * (ops/volume-executor.ts; without it they fail "NO_VOLUME_BACKEND"). The
   * agent closes it at stop (its exports keep serving).
   */
  readonly volumes?: VolumeBackend;
  /** Where a volume host gets the images it makes volumes from (none: such a create fails "NO_IMAGE_STORE"). */
  readonly images?: ImageStore;
  /** gRPC address of the controller, `host:port` (default "127.0.0.1:8774"). */
  readonly controller: string;
  /** Agent token, sent as `authorization: Bearer <token>` (default "": no header). */
  readonly token: string;
  /** gRPC channel credentials (default insecure; the command line builds TLS ones, see agent/tls.ts). */
  readonly credentials: ChannelCredentials;
  /** More gRPC channel options, e.g. the TLS server name (default none). */
  readonly channelOptions: ChannelOptions;
  /** NATS server URL(s), comma separated (default "nats://127.0.0.1:4222"). */
  readonly natsUrl: string;
  /** CA file nats-server's TLS certificate must chain to (default: the system's CAs). */
  readonly natsCa: string | undefined;
  /**
   * Gives a NATS connection to use instead of opening one (shared by many
   * simulated agents in one process), when the controller gives the agent
   * no NATS user of its own. The agent does not drain it at stop.
   */
  readonly nats: (() => Promise<NatsConnection>) | undefined;
  /** Host name sent in Hello (default `os.hostname()`). */
  readonly host: string;
  /** Availability zone sent in Hello (default "nova"). */
  readonly zone: string;
  /** The host's overcommit and reservations sent in Hello; unset fields take the controller's (default none). */
  readonly allocation: HostAllocation;
  /** Directory for the op journal (default "./.state/agent-<host>"). */
  readonly stateDir: string;
  /** Report interval in seconds; overrides HelloAck's (default: HelloAck's, or 10 if it says 0). */
  readonly reportIntervalSeconds: number | undefined;
  /** Ops of different servers run in parallel up to this many (default 8). */
  readonly concurrency: number;
  /** fsync the op journal (default true). */
  readonly fsync: boolean;
  /** First reconnect delay in ms (default 500). */
  readonly reconnectInitialMs: number;
  /** Largest reconnect delay in ms (default 30,000). */
  readonly reconnectMaxMs: number;
  /** How long to wait for HelloAck before reconnecting, ms (default 10,000). */
  readonly helloTimeoutMs: number;
  /** How long `stop()` waits for in-flight ops and their acks, ms (default 30,000). */
  readonly stopTimeoutMs: number;
  /** How often held op messages are kept alive with `working()`, ms (default 5,000). */
  readonly workingIntervalMs: number;
  /** Least time between two progress messages of one op (live migration), ms (default 1,000). */
  readonly progressIntervalMs: number;
  /** Version sent in Hello (default the agent's). */
  readonly version: string;
  /** JSON logger (default pino to stdout at "info"). */
  readonly logger: Logger;
  /** The process's metrics, which this host's ops, reports and session are counted in (default: none). */
  readonly metrics: AgentMetrics | undefined;
}

/** What `new Agent()` takes: a driver and any other options. */
export type AgentInit = Partial<AgentOptions> & Pick<AgentOptions, "driver">;

/** Fills in defaults. */
export function resolveAgentOptions(init: AgentInit): AgentOptions {
  const defined = Object.fromEntries(Object.entries(init).filter(([, v]) => v !== undefined)) as AgentInit;
  const host = defined.host ?? hostname();
  return {
    controller: "127.0.0.1:8774",
    token: "",
    credentials: grpcCredentials.createInsecure(),
    channelOptions: {},
    natsUrl: "nats://127.0.0.1:4222",
    natsCa: undefined,
    nats: undefined,
    host,
    zone: "nova",
    allocation: {},
    stateDir: join(".state", `agent-${host}`),
    reportIntervalSeconds: undefined,
    concurrency: 8,
    fsync: true,
    reconnectInitialMs: 500,
    reconnectMaxMs: 30_000,
    helloTimeoutMs: 10_000,
    stopTimeoutMs: 30_000,
    workingIntervalMs: 5_000,
    progressIntervalMs: 1_000,
    version: AGENT_VERSION,
    logger: pino(loggerOptions({ name: "novamesh-agent" })),
    metrics: undefined,
    ...defined,
  };
}
