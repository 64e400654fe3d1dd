/**
 * Controller configuration: every option, its flag, its NOVAMESH_* variable
 * and its default, documented in one place (also printed by `--help`).
 */

import { parseTraceTarget } from "./tracing.js";
import type { LimitsConfig } from "./api/limits.js";
import { DEFAULT_LIMITS } from "./api/limits.js";
import { ALGORITHMS, DEFAULT_MULTIPLIERS, type Algorithm, type PipelineOptions, type WeigherMultipliers } from "./scheduler/pipeline.js";
export interface ControllerConfig {
  /** gRPC listen address (`--listen`, NOVAMESH_LISTEN). */
  readonly listen: string;
  /** The server certificate (PEM, with its chain) of both listeners (`--tls-cert`, NOVAMESH_TLS_CERT). */
  readonly tlsCert: string;
  /** Its private key (PEM; `--tls-key`, NOVAMESH_TLS_KEY). */
  readonly tlsKey: string;
  /**
   * CA (PEM) whose client certificates the public listener requires
   * (`--tls-client-ca`, NOVAMESH_TLS_CLIENT_CA); empty: no client certificate asked.
   */
  readonly tlsClientCa: string;
  /**
   * Serve without TLS, for development only (`--plaintext`, NOVAMESH_PLAINTEXT=1);
   * without it the controller needs `--tls-cert` and `--tls-key`.
   */
  readonly plaintext: boolean;
  /**
   * A second listener for agents only (`--agent-listen`, NOVAMESH_AGENT_LISTEN):
   * it serves AgentService (and health) and requires a client certificate
   * signed by `--agent-client-ca` naming the host the agent says Hello as.
   * When set, the public listener does not offer AgentService.
   */
  readonly agentListen: string;
  /**
   * Where Prometheus scrapes the controller's metrics, "host:port"
   * (`--metrics-listen`, NOVAMESH_METRICS_LISTEN; plain HTTP, GET /metrics);
   * empty: not served.
   */
  readonly metricsListen: string;
  /**
   * Where the controller's trace spans go (`--trace`, NOVAMESH_TRACE):
   * `otlp:<collector URL, like http://127.0.0.1:4318/v1/traces>` or
   * `file:<path>` (JSON lines); empty: not traced.
   */
  readonly trace: string;
  /** CA (PEM) of the agents' client certificates (`--agent-client-ca`, NOVAMESH_AGENT_CLIENT_CA). */
  readonly agentClientCa: string;
  /** MySQL URL (`--database-url`, NOVAMESH_DATABASE_URL; `?socketPath=` for a Unix socket); the database is created if missing. */
  readonly databaseUrl: string;
  /** NATS server URL (`--nats`, NOVAMESH_NATS_URL). */
  readonly natsUrl: string;
  /**
   * NATS credentials file of the controller's own user (`--nats-creds`,
   * NOVAMESH_NATS_CREDS); empty connects without credentials.
   */
  readonly natsCreds: string;
  /**
   * Seed file of the NATS account's signing key (`--nats-signing-key`,
   * NOVAMESH_NATS_SIGNING_KEY): with it the controller gives each agent a
   * NATS user of its own, allowed only its host's subjects, and refuses a
   * Hello without the agent's NATS key. Needs `natsCreds`.
   */
  readonly natsSigningKey: string;
  /** CA file nats-server's TLS certificate must chain to (`--nats-ca`, NOVAMESH_NATS_CA); empty: the system's CAs. */
  readonly natsCa: string;
  /** Seconds an agent's NATS user JWT is valid; agents renew at half of it (NOVAMESH_NATS_AGENT_TTL). */
  readonly natsAgentTtlSeconds: number;
  /** JetStream stream holding compute ops (`--ops-stream`, NOVAMESH_OPS_STREAM). */
  readonly opsStream: string;
  /** Subject prefix of compute ops; a host's ops go to `<prefix>.<host>` (NOVAMESH_OPS_SUBJECT_PREFIX). */
  readonly opsSubjectPrefix: string;
  /**
   * JetStream object store bucket of image bytes (`--image-bucket`,
   * NOVAMESH_IMAGE_BUCKET). Only controllers open it: hosts get and put
   * image bytes through AgentService.
   */
  readonly imageBucket: string;
  /**
   * Secret of the admin token (`--admin-token`, NOVAMESH_ADMIN_TOKEN): the
   * controller makes it the one configuration admin token at start, and
   * revokes the token of a previous secret. Every controller of a deployment
   * has the same one; to rotate it, set the new secret on every controller
   * and restart them.
   */
  readonly adminToken: string;
  /** Project the admin token belongs to (NOVAMESH_ADMIN_PROJECT). */
  readonly adminProject: string;
  /** Seconds between agent resource reports (NOVAMESH_REPORT_INTERVAL). */
  readonly reportIntervalSeconds: number;
  /** A host is down when its last report is older than this many seconds (NOVAMESH_SERVICE_DOWN_TIME). */
  readonly serviceDownTimeSeconds: number;
  /** Default vCPU overcommit ratio of new hosts (NOVAMESH_CPU_ALLOCATION_RATIO). */
  readonly cpuAllocationRatio: number;
  /** Default memory overcommit ratio of new hosts (NOVAMESH_RAM_ALLOCATION_RATIO). */
  readonly ramAllocationRatio: number;
  /** Default disk overcommit ratio of new hosts (NOVAMESH_DISK_ALLOCATION_RATIO). */
  readonly diskAllocationRatio: number;
  /** Memory kept for the host itself, MiB (NOVAMESH_RESERVED_HOST_MEMORY_MB). */
  readonly reservedHostMemoryMb: number;
  /** vCPUs kept for the host itself (NOVAMESH_RESERVED_HOST_CPUS). */
  readonly reservedHostCpus: number;
  /** Disk kept for the host itself, GiB (NOVAMESH_RESERVED_HOST_DISK_GB). */
  readonly reservedHostDiskGb: number;
  /** Host ordering: filter-weigh, least-loaded, chance or zone (NOVAMESH_SCHEDULER_ALGORITHM). */
  readonly schedulerAlgorithm: string;
  /** Choose at random among the best N hosts (NOVAMESH_HOST_SUBSET_SIZE). */
  readonly hostSubsetSize: number;
  /** Most instances a host takes; 0 for no limit (NOVAMESH_MAX_INSTANCES_PER_HOST). */
  readonly maxInstancesPerHost: number;
  /** Hosts that pass the filters scored per placement, at most; 0 scores every host (NOVAMESH_SCHEDULER_MAX_SCORED_HOSTS). */
  readonly schedulerMaxScoredHosts: number;
  /** Weigher multipliers, "ram=1,vcpu=1,disk=1,soft_affinity=1,soft_anti_affinity=1,build_failure=1000000,num_instances=0" (NOVAMESH_WEIGHER_MULTIPLIERS); unnamed ones keep their defaults. */
  readonly weigherMultipliers: string;
  /** Spawn attempts before a build fails (NOVAMESH_MAX_ATTEMPTS). */
  readonly maxAttempts: number;
  /** Seconds a guest gets to shut down cleanly on stop and before a move (NOVAMESH_POWER_OFF_TIMEOUT). */
  readonly powerOffTimeoutSeconds: number;
  /** Seconds a guest gets to finish a soft reboot before its host reboots it hard (NOVAMESH_SOFT_REBOOT_TIMEOUT). */
  readonly softRebootTimeoutSeconds: number;
  /**
   * Task deadlines overriding the defaults of controller/domain/states.ts:
   * `SPAWNING=600,PAUSING=60`, `*=N` for every task not named (NOVAMESH_TASK_TIMEOUTS).
   */
  readonly taskTimeouts: string;
  /**
   * How long a volume may stay CREATING, DELETING or EXTENDING before it is
   * put in ERROR: `CREATING=900,DELETING=300`, `*=N` for every status not
   * named (NOVAMESH_VOLUME_TIMEOUTS).
   */
  readonly volumeTimeouts: string;
  /**
   * Volumes a pool takes, as a multiple of its capacity (Cinder's
   * max_over_subscription_ratio; thin pools may hold more than they have;
   * NOVAMESH_VOLUME_OVERSUBSCRIPTION_RATIO).
   */
  readonly volumeOversubscriptionRatio: number;
  /** Seconds between passes of the task reaper (NOVAMESH_REAPER_INTERVAL). */
  readonly reaperIntervalSeconds: number;
  /**
   * Seconds after start before the reaper's first pass, so agents reconnect and
   * report results held while no controller ran (NOVAMESH_REAPER_GRACE).
   */
  readonly reaperGraceSeconds: number;
  /** Finished resizes are confirmed automatically after this many seconds; 0 never (NOVAMESH_RESIZE_CONFIRM_WINDOW). */
  readonly resizeConfirmWindowSeconds: number;
  /**
   * A resize may choose the server's own host (Nova's allow_resize_to_same_host;
   * NOVAMESH_ALLOW_RESIZE_TO_SAME_HOST). Cold migrations always leave it.
   */
  readonly allowResizeToSameHost: boolean;
  /** VNIs vxlan networks get, first and last (NOVAMESH_VNI_MIN, NOVAMESH_VNI_MAX). */
  readonly vniMin: number;
  readonly vniMax: number;
  /** Requests per second a member token may make; 0 for no limit (NOVAMESH_RATE_LIMIT). */
  readonly rateLimit: number;
  /** Requests a member token may make at once before the rate applies (NOVAMESH_RATE_BURST). */
  readonly rateBurst: number;
  /** Requests per second an admin token may make; 0 (the default) for no limit (NOVAMESH_ADMIN_RATE_LIMIT). */
  readonly adminRateLimit: number;
  /** Requests an admin token may make at once before its rate applies (NOVAMESH_ADMIN_RATE_BURST). */
  readonly adminRateBurst: number;
  /** Streams (WatchServers, image data) one token may hold open at once; 0 for no cap (NOVAMESH_MAX_STREAMS_PER_TOKEN). */
  readonly maxStreamsPerToken: number;
  /** Streams this controller serves at once, all tokens together; 0 for no cap (NOVAMESH_MAX_STREAMS). */
  readonly maxStreams: number;
  /** AgentService/Connect streams one token may hold open at once; 0 for no cap (NOVAMESH_MAX_AGENT_STREAMS_PER_TOKEN). */
  readonly maxAgentStreamsPerToken: number;
  /** Agent Hellos handled at once (NOVAMESH_AGENT_HELLO_CONCURRENCY). */
  readonly agentHelloConcurrency: number;
  /** Agent Hellos waiting at most; more are refused with a retry delay (NOVAMESH_AGENT_HELLO_QUEUE). */
  readonly agentHelloQueue: number;
  /** Milliseconds between reads of the change log for other controllers' commits (NOVAMESH_WATCH_POLL_MS). */
  readonly watchPollMs: number;
  /**
   * Changes a WatchServers stream may have waiting for its client; one that
   * falls further behind ends with ABORTED and resumes (NOVAMESH_WATCH_BUFFER).
   */
  readonly watchBuffer: number;
  /** Audit records older than this many days are deleted; 0 keeps them (NOVAMESH_AUDIT_RETENTION_DAYS). */
  readonly auditRetentionDays: number;
  /** Log level: trace, debug, info, warn, error (NOVAMESH_LOG_LEVEL). */
  readonly logLevel: string;
  /**
   * Test hook: commit ops to the outbox but never publish them, as a
   * controller that dies between commit and publish (NOVAMESH_FAULT_HOLD_OUTBOX=1).
   */
  readonly holdOutbox: boolean;
}

export const DEFAULT_CONFIG: ControllerConfig = {
  listen: "127.0.0.1:8774",
  tlsCert: "",
  tlsKey: "",
  tlsClientCa: "",
  plaintext: false,
  agentListen: "",
  metricsListen: "",
  trace: "",
  agentClientCa: "",
  databaseUrl: "mysql://root@127.0.0.1:3306/novamesh",
  natsUrl: "nats://127.0.0.1:4222",
  natsCreds: "",
  natsSigningKey: "",
  natsCa: "",
  natsAgentTtlSeconds: 3600,
  opsStream: "NOVAMESH_OPS",
  opsSubjectPrefix: "novamesh.ops",
  imageBucket: "novamesh-images",
  adminToken: "",
  adminProject: "admin",
  reportIntervalSeconds: 10,
  serviceDownTimeSeconds: 60,
  cpuAllocationRatio: 4.0,
  ramAllocationRatio: 1.0,
  diskAllocationRatio: 1.0,
  reservedHostMemoryMb: 0,
  reservedHostCpus: 0,
  reservedHostDiskGb: 0,
  schedulerAlgorithm: "filter-weigh",
  hostSubsetSize: 1,
  schedulerMaxScoredHosts: 100,
  maxInstancesPerHost: 0,
  weigherMultipliers: "",
  maxAttempts: 3,
  powerOffTimeoutSeconds: 60,
  softRebootTimeoutSeconds: 120,
  taskTimeouts: "",
  volumeTimeouts: "",
  volumeOversubscriptionRatio: 1,
  reaperIntervalSeconds: 5,
  reaperGraceSeconds: 20,
  resizeConfirmWindowSeconds: 86400,
  allowResizeToSameHost: false,
  vniMin: 1000,
  vniMax: 16777215,
  rateLimit: DEFAULT_LIMITS.ratePerSecond,
  rateBurst: DEFAULT_LIMITS.rateBurst,
  adminRateLimit: DEFAULT_LIMITS.adminRatePerSecond,
  adminRateBurst: DEFAULT_LIMITS.adminRateBurst,
  maxStreamsPerToken: DEFAULT_LIMITS.maxStreamsPerToken,
  maxStreams: DEFAULT_LIMITS.maxStreams,
  maxAgentStreamsPerToken: DEFAULT_LIMITS.maxAgentStreamsPerToken,
  // A Hello costs three statements and one or two JetStream API requests:
  // 32 at once keep the database pool and the JetStream API busy without
  // making either time out, and about 1,000 finish within an agent's
  // 10 s HelloAck timeout.
  agentHelloConcurrency: 32,
  agentHelloQueue: 1000,
  watchPollMs: 250,
  watchBuffer: 1000,
  auditRetentionDays: 90,
  logLevel: "info",
  holdOutbox: false,
};

type Spec = { key: keyof ControllerConfig; flag: string; env: string; kind: "string" | "number" | "boolean" };

const SPECS: readonly Spec[] = [
  { key: "listen", flag: "--listen", env: "NOVAMESH_LISTEN", kind: "string" },
  { key: "tlsCert", flag: "--tls-cert", env: "NOVAMESH_TLS_CERT", kind: "string" },
  { key: "tlsKey", flag: "--tls-key", env: "NOVAMESH_TLS_KEY", kind: "string" },
  { key: "tlsClientCa", flag: "--tls-client-ca", env: "NOVAMESH_TLS_CLIENT_CA", kind: "string" },
  { key: "plaintext", flag: "--plaintext", env: "NOVAMESH_PLAINTEXT", kind: "boolean" },
  { key: "agentListen", flag: "--agent-listen", env: "NOVAMESH_AGENT_LISTEN", kind: "string" },
  { key: "metricsListen", flag: "--metrics-listen", env: "NOVAMESH_METRICS_LISTEN", kind: "string" },
  { key: "trace", flag: "--trace", env: "NOVAMESH_TRACE", kind: "string" },
  { key: "agentClientCa", flag: "--agent-client-ca", env: "NOVAMESH_AGENT_CLIENT_CA", kind: "string" },
  { key: "databaseUrl", flag: "--database-url", env: "NOVAMESH_DATABASE_URL", kind: "string" },
  { key: "natsUrl", flag: "--nats", env: "NOVAMESH_NATS_URL", kind: "string" },
  { key: "natsCreds", flag: "--nats-creds", env: "NOVAMESH_NATS_CREDS", kind: "string" },
  { key: "natsSigningKey", flag: "--nats-signing-key", env: "NOVAMESH_NATS_SIGNING_KEY", kind: "string" },
  { key: "natsCa", flag: "--nats-ca", env: "NOVAMESH_NATS_CA", kind: "string" },
  { key: "natsAgentTtlSeconds", flag: "--nats-agent-ttl", env: "NOVAMESH_NATS_AGENT_TTL", kind: "number" },
  { key: "opsStream", flag: "--ops-stream", env: "NOVAMESH_OPS_STREAM", kind: "string" },
  { key: "opsSubjectPrefix", flag: "--ops-subject-prefix", env: "NOVAMESH_OPS_SUBJECT_PREFIX", kind: "string" },
  { key: "imageBucket", flag: "--image-bucket", env: "NOVAMESH_IMAGE_BUCKET", kind: "string" },
  { key: "adminToken", flag: "--admin-token", env: "NOVAMESH_ADMIN_TOKEN", kind: "string" },
  { key: "adminProject", flag: "--admin-project", env: "NOVAMESH_ADMIN_PROJECT", kind: "string" },
  { key: "reportIntervalSeconds", flag: "--report-interval", env: "NOVAMESH_REPORT_INTERVAL", kind: "number" },
  { key: "serviceDownTimeSeconds", flag: "--service-down-time", env: "NOVAMESH_SERVICE_DOWN_TIME", kind: "number" },
  { key: "cpuAllocationRatio", flag: "--cpu-allocation-ratio", env: "NOVAMESH_CPU_ALLOCATION_RATIO", kind: "number" },
  { key: "ramAllocationRatio", flag: "--ram-allocation-ratio", env: "NOVAMESH_RAM_ALLOCATION_RATIO", kind: "number" },
  { key: "diskAllocationRatio", flag: "--disk-allocation-ratio", env: "NOVAMESH_DISK_ALLOCATION_RATIO", kind: "number" },
  { key: "reservedHostMemoryMb", flag: "--reserved-host-memory-mb", env: "NOVAMESH_RESERVED_HOST_MEMORY_MB", kind: "number" },
  { key: "reservedHostCpus", flag: "--reserved-host-cpus", env: "NOVAMESH_RESERVED_HOST_CPUS", kind: "number" },
  { key: "reservedHostDiskGb", flag: "--reserved-host-disk-gb", env: "NOVAMESH_RESERVED_HOST_DISK_GB", kind: "number" },
  { key: "schedulerAlgorithm", flag: "--scheduler-algorithm", env: "NOVAMESH_SCHEDULER_ALGORITHM", kind: "string" },
  { key: "hostSubsetSize", flag: "--host-subset-size", env: "NOVAMESH_HOST_SUBSET_SIZE", kind: "number" },
  { key: "schedulerMaxScoredHosts", flag: "--scheduler-max-scored-hosts", env: "NOVAMESH_SCHEDULER_MAX_SCORED_HOSTS", kind: "number" },
  { key: "maxInstancesPerHost", flag: "--max-instances-per-host", env: "NOVAMESH_MAX_INSTANCES_PER_HOST", kind: "number" },
  { key: "weigherMultipliers", flag: "--weigher-multipliers", env: "NOVAMESH_WEIGHER_MULTIPLIERS", kind: "string" },
  { key: "maxAttempts", flag: "--max-attempts", env: "NOVAMESH_MAX_ATTEMPTS", kind: "number" },
  { key: "powerOffTimeoutSeconds", flag: "--power-off-timeout", env: "NOVAMESH_POWER_OFF_TIMEOUT", kind: "number" },
  { key: "softRebootTimeoutSeconds", flag: "--soft-reboot-timeout", env: "NOVAMESH_SOFT_REBOOT_TIMEOUT", kind: "number" },
  { key: "taskTimeouts", flag: "--task-timeouts", env: "NOVAMESH_TASK_TIMEOUTS", kind: "string" },
  { key: "volumeTimeouts", flag: "--volume-timeouts", env: "NOVAMESH_VOLUME_TIMEOUTS", kind: "string" },
  { key: "volumeOversubscriptionRatio", flag: "--volume-oversubscription-ratio", env: "NOVAMESH_VOLUME_OVERSUBSCRIPTION_RATIO", kind: "number" },
  { key: "reaperIntervalSeconds", flag: "--reaper-interval", env: "NOVAMESH_REAPER_INTERVAL", kind: "number" },
  { key: "reaperGraceSeconds", flag: "--reaper-grace", env: "NOVAMESH_REAPER_GRACE", kind: "number" },
  { key: "resizeConfirmWindowSeconds", flag: "--resize-confirm-window", env: "NOVAMESH_RESIZE_CONFIRM_WINDOW", kind: "number" },
  { key: "allowResizeToSameHost", flag: "--allow-resize-to-same-host", env: "NOVAMESH_ALLOW_RESIZE_TO_SAME_HOST", kind: "boolean" },
  { key: "vniMin", flag: "--vni-min", env: "NOVAMESH_VNI_MIN", kind: "number" },
  { key: "vniMax", flag: "--vni-max", env: "NOVAMESH_VNI_MAX", kind: "number" },
  { key: "rateLimit", flag: "--rate-limit", env: "NOVAMESH_RATE_LIMIT", kind: "number" },
  { key: "rateBurst", flag: "--rate-burst", env: "NOVAMESH_RATE_BURST", kind: "number" },
  { key: "adminRateLimit", flag: "--admin-rate-limit", env: "NOVAMESH_ADMIN_RATE_LIMIT", kind: "number" },
  { key: "adminRateBurst", flag: "--admin-rate-burst", env: "NOVAMESH_ADMIN_RATE_BURST", kind: "number" },
  { key: "maxStreamsPerToken", flag: "--max-streams-per-token", env: "NOVAMESH_MAX_STREAMS_PER_TOKEN", kind: "number" },
  { key: "maxStreams", flag: "--max-streams", env: "NOVAMESH_MAX_STREAMS", kind: "number" },
  { key: "maxAgentStreamsPerToken", flag: "--max-agent-streams-per-token", env: "NOVAMESH_MAX_AGENT_STREAMS_PER_TOKEN", kind: "number" },
  { key: "agentHelloConcurrency", flag: "--agent-hello-concurrency", env: "NOVAMESH_AGENT_HELLO_CONCURRENCY", kind: "number" },
  { key: "agentHelloQueue", flag: "--agent-hello-queue", env: "NOVAMESH_AGENT_HELLO_QUEUE", kind: "number" },
  { key: "watchPollMs", flag: "--watch-poll-ms", env: "NOVAMESH_WATCH_POLL_MS", kind: "number" },
  { key: "watchBuffer", flag: "--watch-buffer", env: "NOVAMESH_WATCH_BUFFER", kind: "number" },
  { key: "auditRetentionDays", flag: "--audit-retention-days", env: "NOVAMESH_AUDIT_RETENTION_DAYS", kind: "number" },
  { key: "logLevel", flag: "--log-level", env: "NOVAMESH_LOG_LEVEL", kind: "string" },
  { key: "holdOutbox", flag: "--fault-hold-outbox", env: "NOVAMESH_FAULT_HOLD_OUTBOX", kind: "boolean" },
];

export class ConfigError extends Error {}

function parseValue(spec: Spec, raw: string): string | number | boolean {
  if (spec.kind === "string") return raw;
  if (spec.kind === "boolean") return raw === "" || raw === "1" || raw === "true" || raw === "yes";
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new ConfigError(`${spec.flag}: expected a non-negative number, got ${JSON.stringify(raw)}`);
  return n;
}

/** Builds the configuration: defaults, then environment, then flags. */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ControllerConfig {
  const out: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const spec of SPECS) {
    const v = env[spec.env];
    if (v !== undefined && v !== "") out[spec.key] = parseValue(spec, v);
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const spec = SPECS.find((s) => s.flag === name);
    if (!spec) throw new ConfigError(`unknown flag ${name} (see --help)`);
    if (spec.kind === "boolean" && inline === undefined) {
      out[spec.key] = true;
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new ConfigError(`${name} needs a value`);
    out[spec.key] = parseValue(spec, raw);
  }
  const cfg = out as unknown as ControllerConfig;
  pipelineOptions(cfg); // validates the scheduler settings
  limitsOf(cfg); // and the limits
  if (!Number.isInteger(cfg.watchPollMs) || cfg.watchPollMs < 10) throw new ConfigError("--watch-poll-ms: expected a whole number ≥ 10");
  if (!Number.isInteger(cfg.watchBuffer) || cfg.watchBuffer < 1) throw new ConfigError("--watch-buffer: expected a whole number ≥ 1");
  if (cfg.natsSigningKey && !cfg.natsCreds) throw new ConfigError("--nats-signing-key needs --nats-creds (the controller's own NATS user of the same account)");
  if (!Number.isInteger(cfg.vniMin) || !Number.isInteger(cfg.vniMax) || cfg.vniMin < 1 || cfg.vniMax > 16777215 || cfg.vniMin > cfg.vniMax) {
    throw new ConfigError("--vni-min, --vni-max: expected whole numbers with 1 ≤ min ≤ max ≤ 16777215");
  }
  if (!Number.isInteger(cfg.natsAgentTtlSeconds) || cfg.natsAgentTtlSeconds < 10) throw new ConfigError("--nats-agent-ttl: expected whole seconds ≥ 10");
  if (cfg.trace) {
    try {
      parseTraceTarget("--trace", cfg.trace);
    } catch (err) {
      throw new ConfigError((err as Error).message);
    }
  }
  return cfg;
}

/**
 * The API's limits from the configuration (see api/limits.ts); stream caps
 * must be whole numbers, a burst of 0 is one second of the rate. Bad values are ConfigErrors
 * naming the flag.
 */
export function limitsOf(cfg: ControllerConfig): LimitsConfig {
  for (const [flag, v] of [["--max-streams-per-token", cfg.maxStreamsPerToken], ["--max-streams", cfg.maxStreams], ["--max-agent-streams-per-token", cfg.maxAgentStreamsPerToken]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${flag}: expected a whole number ≥ 0 (0: no cap)`);
  }
  if (!Number.isInteger(cfg.agentHelloConcurrency) || cfg.agentHelloConcurrency < 1) throw new ConfigError("--agent-hello-concurrency: expected a whole number ≥ 1");
  if (!Number.isInteger(cfg.agentHelloQueue) || cfg.agentHelloQueue < 0) throw new ConfigError("--agent-hello-queue: expected a whole number ≥ 0");
  return {
    ratePerSecond: cfg.rateLimit,
    rateBurst: cfg.rateBurst >= 1 ? cfg.rateBurst : Math.max(1, cfg.rateLimit),
    adminRatePerSecond: cfg.adminRateLimit,
    adminRateBurst: cfg.adminRateBurst >= 1 ? cfg.adminRateBurst : Math.max(1, cfg.adminRateLimit),
    maxStreamsPerToken: cfg.maxStreamsPerToken,
    maxStreams: cfg.maxStreams,
    maxAgentStreamsPerToken: cfg.maxAgentStreamsPerToken,
  };
}

/**
 * Checks the TLS settings without reading files: plaintext or a certificate
 * and key, and an agent listener only with its client CA.
 */
export function checkTlsSettings(cfg: ControllerConfig): void {
  const files = [["--tls-cert", cfg.tlsCert], ["--tls-key", cfg.tlsKey], ["--tls-client-ca", cfg.tlsClientCa], ["--agent-client-ca", cfg.agentClientCa]] as const;
  if (cfg.plaintext) {
    const given = files.filter(([, v]) => v).map(([f]) => f);
    if (given.length) throw new ConfigError(`--plaintext serves without TLS; it cannot be combined with ${given.join(", ")}`);
    if (cfg.agentListen) throw new ConfigError("--agent-listen requires client certificates, so TLS: it cannot be combined with --plaintext");
    return;
  }
  if (!cfg.tlsCert && !cfg.tlsKey) {
    throw new ConfigError(
      "TLS needs a server certificate and key: give --tls-cert and --tls-key (NOVAMESH_TLS_CERT, NOVAMESH_TLS_KEY; bash scripts/certs.sh makes them), or --plaintext (NOVAMESH_PLAINTEXT=1) to serve without TLS for development",
    );
  }
  if (!cfg.tlsCert) throw new ConfigError("--tls-key is given without --tls-cert");
  if (!cfg.tlsKey) throw new ConfigError("--tls-cert is given without --tls-key");
  if (cfg.agentListen && !cfg.agentClientCa) throw new ConfigError("--agent-listen requires --agent-client-ca (the CA that signs the agents' client certificates)");
  if (cfg.agentClientCa && !cfg.agentListen) throw new ConfigError("--agent-client-ca is given without --agent-listen");
}

const MULTIPLIER_KEYS: Record<string, keyof WeigherMultipliers> = {
  ram: "ram",
  vcpu: "vcpu",
  disk: "disk",
  soft_affinity: "softAffinity",
  soft_anti_affinity: "softAntiAffinity",
  build_failure: "buildFailure",
  num_instances: "numInstances",
};

/** The scheduler pipeline's options from the configuration; bad values are ConfigErrors naming the flag. */
export function pipelineOptions(cfg: ControllerConfig): Partial<PipelineOptions> {
  const algorithm = cfg.schedulerAlgorithm as Algorithm;
  if (!ALGORITHMS.includes(algorithm)) {
    throw new ConfigError(`--scheduler-algorithm: ${JSON.stringify(cfg.schedulerAlgorithm)} is not one of ${ALGORITHMS.join(", ")}`);
  }
  if (!Number.isInteger(cfg.hostSubsetSize) || cfg.hostSubsetSize < 1) throw new ConfigError("--host-subset-size: expected an integer ≥ 1");
  if (!Number.isInteger(cfg.schedulerMaxScoredHosts) || cfg.schedulerMaxScoredHosts < 0) throw new ConfigError("--scheduler-max-scored-hosts: expected an integer ≥ 0 (0: score every host)");
  if (!Number.isInteger(cfg.maxInstancesPerHost) || cfg.maxInstancesPerHost < 0) throw new ConfigError("--max-instances-per-host: expected an integer ≥ 0 (0: no limit)");
  for (const [flag, v] of [["--reserved-host-cpus", cfg.reservedHostCpus], ["--reserved-host-disk-gb", cfg.reservedHostDiskGb], ["--reserved-host-memory-mb", cfg.reservedHostMemoryMb]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ConfigError(`${flag}: expected a whole number ≥ 0`);
  }
  for (const [flag, v] of [["--cpu-allocation-ratio", cfg.cpuAllocationRatio], ["--ram-allocation-ratio", cfg.ramAllocationRatio], ["--disk-allocation-ratio", cfg.diskAllocationRatio], ["--volume-oversubscription-ratio", cfg.volumeOversubscriptionRatio]] as const) {
    if (!(v > 0)) throw new ConfigError(`${flag}: expected a number > 0`);
  }
  const multipliers: Partial<Record<keyof WeigherMultipliers, number>> = {};
  for (const part of cfg.weigherMultipliers.split(",").map((p) => p.trim()).filter(Boolean)) {
    const [name, value] = part.split("=").map((x) => x.trim());
    const key = MULTIPLIER_KEYS[name ?? ""];
    const n = Number(value);
    if (!key) throw new ConfigError(`--weigher-multipliers: unknown weigher ${JSON.stringify(name)} (known: ${Object.keys(MULTIPLIER_KEYS).join(", ")})`);
    if (value === undefined || value === "" || !Number.isFinite(n)) throw new ConfigError(`--weigher-multipliers: ${name} needs a number, got ${JSON.stringify(value)}`);
    multipliers[key] = n;
  }
  return { algorithm, hostSubsetSize: cfg.hostSubsetSize, maxScoredHosts: cfg.schedulerMaxScoredHosts, maxInstancesPerHost: cfg.maxInstancesPerHost, multipliers: { ...DEFAULT_MULTIPLIERS, ...multipliers } };
}

export function configHelp(): string {
  const lines = ["novamesh controller", "", "Flags (each also read from its environment variable):"];
  for (const s of SPECS) {
    const def = DEFAULT_CONFIG[s.key];
    lines.push(`  ${s.flag.padEnd(28)} ${s.env.padEnd(34)} default ${JSON.stringify(def)}`);
  }
  return lines.join("\n");
}
