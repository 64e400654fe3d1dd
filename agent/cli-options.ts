/**
 * The agent's command line: every flag with its `NOVAMESH_*` variable and
 * default, in one table that drives both parsing and `--help`.
 * Precedence: flag, then environment variable, then default.
 */
import { parseTraceTarget, type TraceTarget } from "../controller/tracing.js";
import type { HostAllocation } from "../gen/novamesh/agent/v1/agent.js";
import { hostname } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseFaults, type Faults } from "./drivers/fake/faults.js";
import type { ClientTls } from "./tls.js";
import { VOLUME_FLAGS, volumeConfigOf, type VolumeCliConfig } from "./volume/cli.js";

interface FlagSpec {
  readonly env?: string;
  readonly type: "string" | "boolean";
  readonly default?: () => string;
  readonly help: string;
}

/** Every flag, in the order `--help` lists them. */
export const AGENT_FLAGS = {
  controller: { env: "NOVAMESH_CONTROLLER", type: "string", default: () => "127.0.0.1:8774", help: "controller gRPC address (host:port)" },
  "tls-ca": { env: "NOVAMESH_AGENT_TLS_CA", type: "string", help: "PEM file of the CA the controller's certificate must chain to (default: the system's CAs)" },
  "tls-cert": { env: "NOVAMESH_AGENT_TLS_CERT", type: "string", help: "PEM file of this agent's client certificate, for a controller's --agent-listen (with --tls-key)" },
  "tls-key": { env: "NOVAMESH_AGENT_TLS_KEY", type: "string", help: "PEM file of the client certificate's private key" },
  "tls-server-name": { env: "NOVAMESH_AGENT_TLS_SERVER_NAME", type: "string", help: "name the controller's certificate must carry when it is not the host of --controller" },
  plaintext: { env: "NOVAMESH_PLAINTEXT", type: "boolean", help: "connect without TLS, to a controller run with --plaintext (development only)" },
  token: { env: "NOVAMESH_AGENT_TOKEN", type: "string", default: () => "", help: "agent token, sent as 'authorization: Bearer <token>'" },
  nats: { env: "NOVAMESH_NATS_URL", type: "string", default: () => "nats://127.0.0.1:4222", help: "NATS server URL(s), comma separated" },
  "nats-ca": { env: "NOVAMESH_NATS_CA", type: "string", help: "CA certificate (PEM) that nats-server's TLS certificate must chain to" },
  host: { env: "NOVAMESH_HOST", type: "string", default: () => hostname(), help: "host name this agent reports" },
  zone: { env: "NOVAMESH_ZONE", type: "string", default: () => "nova", help: "availability zone of the host" },
  driver: { env: "NOVAMESH_DRIVER", type: "string", default: () => "fake", help: "hypervisor driver: fake (simulated) or libvirt" },
  "state-dir": { env: "NOVAMESH_STATE_DIR", type: "string", help: "state directory (op journal, fake domains); default ./.state/agent-<host>" },
  "report-interval": { env: "NOVAMESH_REPORT_INTERVAL", type: "string", help: "seconds between resource reports; default: what the controller says" },
  concurrency: { env: "NOVAMESH_AGENT_CONCURRENCY", type: "string", default: () => "8", help: "ops of different servers run in parallel up to this many" },
  hosts: { env: "NOVAMESH_AGENT_HOSTS", type: "string", default: () => "1", help: "run N fake agents in this process, named <host>-1..N, each with its own state dir" },
  "libvirt-uri": { env: "NOVAMESH_LIBVIRT_URI", type: "string", default: () => "qemu:///system", help: "libvirt driver: connection URI (test:///<node.xml> for libvirt's test hypervisor)" },
  "instances-path": { env: "NOVAMESH_INSTANCES_PATH", type: "string", help: "libvirt driver: instance disks and the base image cache; default <state-dir>/instances" },
  "image-dir": { env: "NOVAMESH_IMAGE_DIR", type: "string", help: "libvirt driver and volume hosts: a local directory as the image store (image <id> is the file <dir>/<id>; snapshots are written there) instead of the controller, which is the default" },
  "live-migration-uri": { env: "NOVAMESH_LIVE_MIGRATION_URI", type: "string", help: "libvirt driver: libvirt URI other hosts' libvirtds reach this one at for live migration, e.g. qemu+tcp://<this host>/system (without it the host cannot live-migrate)" },
  "live-migration-inbound-addr": { env: "NOVAMESH_LIVE_MIGRATION_INBOUND_ADDR", type: "string", help: "libvirt driver: address qemu receives live migrations on; default the host of --live-migration-uri" },
  "network-driver": { env: "NOVAMESH_NETWORK_DRIVER", type: "string", help: "network driver: linux (bridges, VXLAN, dnsmasq, nftables) or fake; default linux with the libvirt driver, fake with the fake one" },
  "tunnel-ip": { env: "NOVAMESH_TUNNEL_IP", type: "string", help: "this host's underlay address for VXLAN networks (without it the host cannot carry them)" },
  "network-namespace": { env: "NOVAMESH_NETWORK_NAMESPACE", type: "string", help: "linux network driver: an existing named network namespace (ip netns) that is this host's network, where the hypervisor's taps and bridges are; every ip, bridge, nft and dnsmasq command runs in it (a host simulated in a namespace); default the agent's own" },
  "network-host-tag": { env: "NOVAMESH_NETWORK_HOST_TAG", type: "string", help: "linux network driver: 1-4 lowercase letters or digits in the names of this agent's DHCP namespaces and nftables table, so two agents on one kernel never clash; default derived from the host name" },
  ...VOLUME_FLAGS,
  "cpu-allocation-ratio": { env: "NOVAMESH_CPU_ALLOCATION_RATIO", type: "string", help: "vCPU overcommit of this host (default: the controller's)" },
  "ram-allocation-ratio": { env: "NOVAMESH_RAM_ALLOCATION_RATIO", type: "string", help: "memory overcommit of this host (default: the controller's)" },
  "disk-allocation-ratio": { env: "NOVAMESH_DISK_ALLOCATION_RATIO", type: "string", help: "disk overcommit of this host (default: the controller's)" },
  "reserved-host-memory-mb": { env: "NOVAMESH_RESERVED_HOST_MEMORY_MB", type: "string", help: "memory kept for this host itself, MiB (default: the controller's)" },
  "reserved-host-cpus": { env: "NOVAMESH_RESERVED_HOST_CPUS", type: "string", help: "vCPUs kept for this host itself (default: the controller's)" },
  "reserved-host-disk-gb": { env: "NOVAMESH_RESERVED_HOST_DISK_GB", type: "string", help: "disk kept for this host itself, GiB (default: the controller's)" },
  vcpus: { env: "NOVAMESH_FAKE_VCPUS", type: "string", default: () => "16", help: "fake driver: physical CPUs" },
  "memory-mb": { env: "NOVAMESH_FAKE_MEMORY_MB", type: "string", default: () => "32768", help: "fake driver: memory in MiB" },
  "disk-gb": { env: "NOVAMESH_FAKE_DISK_GB", type: "string", default: () => "500", help: "fake driver: local disk in GiB" },
  "fake-delay-ms": { env: "NOVAMESH_FAKE_DELAY_MS", type: "string", default: () => "0", help: "fake driver: delay of every mutating call" },
  "fake-faults": { env: "NOVAMESH_FAKE_FAULTS", type: "string", help: `fake driver: faults as JSON (see agent/drivers/fake/faults.ts), e.g. '{"spawn":{"error":"boom","retryable":true,"failTimes":2},"liveMigrate":[{"serverId":"<id>","delayMs":2000}],"ignoreAcpi":true}'` },
  "log-level": { env: "NOVAMESH_LOG_LEVEL", type: "string", default: () => "info", help: "pino log level: trace, debug, info, warn, error" },
  trace: { env: "NOVAMESH_TRACE", type: "string", help: "export trace spans: otlp:<collector URL, like http://127.0.0.1:4318/v1/traces> or file:<path> (JSON lines); default: not traced" },
  "metrics-listen": { env: "NOVAMESH_AGENT_METRICS_LISTEN", type: "string", help: "serve Prometheus metrics over plain HTTP (GET /metrics) at host:port, e.g. 127.0.0.1:9181 (port 0: any; the log says which); default: not served" },
  help: { type: "boolean", help: "print this help" },
} as const satisfies Record<string, FlagSpec>;

/** The parsed configuration. */
export interface AgentCliConfig {
  readonly controller: string;
  /** How the controller is reached: TLS (the default) or plaintext. */
  readonly tls: ClientTls;
  readonly token: string;
  readonly natsUrl: string;
  /** CA file nats-server's certificate must chain to (TLS to NATS); undefined: the system's CAs. */
  readonly natsCa: string | undefined;
  readonly host: string;
  readonly zone: string;
  /** Overcommit and reservations of this host (only those given). */
  readonly allocation: HostAllocation;
  readonly driver: "fake" | "libvirt";
  /** Explicit --state-dir, if given. */
  readonly stateDir: string | undefined;
  readonly reportIntervalSeconds: number | undefined;
  readonly concurrency: number;
  readonly hosts: number;
  readonly fake: {
    readonly capacity: { readonly vcpus: number; readonly memoryMb: number; readonly diskGb: number };
    readonly delayMs: number;
    readonly faults: Faults;
  };
  readonly libvirt: {
    readonly uri: string;
    /** Explicit --instances-path, if given. */
    readonly instancesPath: string | undefined;
    /** --image-dir: a local directory as the image store, if given (else images come through the controller). */
    readonly imageDir: string | undefined;
    /** --live-migration-uri: where other hosts live-migrate to this one. */
    readonly liveMigrationUri: string | undefined;
    /** --live-migration-inbound-addr. */
    readonly liveMigrationInboundAddr: string | undefined;
  };
  readonly logLevel: string;
  /** --metrics-listen: where GET /metrics is served; undefined: nowhere. */
  readonly metricsListen: string | undefined;
  /** --trace: where spans go; undefined: not traced. */
  readonly trace: TraceTarget | undefined;
  readonly network: {
    readonly driver: "fake" | "linux";
    /** Underlay address for VXLAN; "" none. */
    readonly tunnelIp: string;
    readonly hostTag: string | undefined;
    /** --network-namespace: the named network namespace the linux driver works in; undefined: the agent's own. */
    readonly namespace: string | undefined;
  };
  /** The volume backend this host serves volumes from; undefined: not a volume host. */
  readonly volumes: VolumeCliConfig | undefined;
}

/** A bad flag or variable; main prints it with the help hint and exits 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The `--help` text. */
export function agentHelp(): string {
  const lines = ["Usage: node dist/agent/main.js [flags]   (after npm run build; or: npx tsx agent/main.ts [flags])", "", "Flags (environment variable; default):"];
  for (const [name, spec] of Object.entries(AGENT_FLAGS) as [string, FlagSpec][]) {
    const meta = [spec.env, spec.default ? `default ${JSON.stringify(spec.default())}` : undefined].filter(Boolean).join("; ");
    lines.push(`  --${name.padEnd(16)} ${spec.help}${meta ? ` (${meta})` : ""}`);
  }
  return lines.join("\n");
}

/** Parses flags over environment over defaults; returns "help" for --help. */
export function parseAgentCli(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): AgentCliConfig | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(Object.entries(AGENT_FLAGS).map(([k, s]) => [k, { type: s.type }]));
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return "help";
  const get = (name: keyof typeof AGENT_FLAGS): string | undefined => {
    const spec: FlagSpec = AGENT_FLAGS[name];
    const v = values[name];
    if (typeof v === "string") return v;
    if (spec.env && env[spec.env] !== undefined && env[spec.env] !== "") return env[spec.env];
    return spec.default?.();
  };
  const num = (name: keyof typeof AGENT_FLAGS, min: number): number => {
    const raw = get(name) ?? "";
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n) || n < min) throw new UsageError(`--${name}: expected a number ≥ ${min}, got "${raw}"`);
    return n;
  };
  const positive = (name: keyof typeof AGENT_FLAGS): number => {
    const n = num(name, 0);
    if (n <= 0) throw new UsageError(`--${name}: expected a number > 0`);
    return n;
  };
  const whole = (name: keyof typeof AGENT_FLAGS): number => {
    const n = num(name, 0);
    if (!Number.isInteger(n)) throw new UsageError(`--${name}: expected a whole number`);
    return n;
  };
  const driver = get("driver");
  if (driver !== "fake" && driver !== "libvirt") throw new UsageError(`--driver: unknown driver "${driver}" (known: fake, libvirt)`);
  const hosts = num("hosts", 1);
  if (!Number.isInteger(hosts)) throw new UsageError("--hosts must be an integer");
  if (driver === "libvirt" && hosts !== 1) throw new UsageError("--hosts: the libvirt driver runs one agent per hypervisor");
  let faults: Faults = {};
  const rawFaults = get("fake-faults");
  if (rawFaults) {
    try {
      faults = parseFaults(JSON.parse(rawFaults));
    } catch (err) {
      throw new UsageError(`--fake-faults: ${(err as Error).message}`);
    }
  }
  const liveUri = get("live-migration-uri");
  if (liveUri !== undefined && (!/^[a-z0-9+]+:\/\//.test(liveUri) || liveUri.includes("#"))) {
    throw new UsageError(`--live-migration-uri: "${liveUri}" is not a libvirt URI such as qemu+tcp://host-b/system`);
  }
  const flagOn = (name: "plaintext"): boolean => {
    if (values[name] === true) return true;
    const raw = env[AGENT_FLAGS[name].env];
    return raw === "1" || raw === "true" || raw === "yes";
  };
  const plaintext = flagOn("plaintext");
  const tlsGiven = (["tls-ca", "tls-cert", "tls-key", "tls-server-name"] as const).filter((f) => get(f) !== undefined);
  if (plaintext && tlsGiven.length) throw new UsageError(`--plaintext connects without TLS; it cannot be combined with ${tlsGiven.map((f) => `--${f}`).join(", ")}`);
  if ((get("tls-cert") === undefined) !== (get("tls-key") === undefined)) throw new UsageError(get("tls-cert") !== undefined ? "--tls-cert needs --tls-key" : "--tls-key needs --tls-cert");
  const host = get("host")!;
  if (!/^[A-Za-z0-9._-]{1,255}$/.test(host)) throw new UsageError(`--host: "${host}" is not 1–255 letters, digits, '.', '-', '_'`);
  return {
    controller: get("controller")!,
    tls: plaintext ? { plaintext: true } : { ca: get("tls-ca"), cert: get("tls-cert"), key: get("tls-key"), serverName: get("tls-server-name") },
    token: get("token")!,
    natsUrl: get("nats")!,
    natsCa: get("nats-ca"),
    host,
    zone: get("zone")!,
    allocation: {
      ...(get("cpu-allocation-ratio") !== undefined ? { cpuAllocationRatio: positive("cpu-allocation-ratio") } : {}),
      ...(get("ram-allocation-ratio") !== undefined ? { ramAllocationRatio: positive("ram-allocation-ratio") } : {}),
      ...(get("disk-allocation-ratio") !== undefined ? { diskAllocationRatio: positive("disk-allocation-ratio") } : {}),
      ...(get("reserved-host-memory-mb") !== undefined ? { reservedHostMemoryMb: whole("reserved-host-memory-mb") } : {}),
      ...(get("reserved-host-cpus") !== undefined ? { reservedHostCpus: whole("reserved-host-cpus") } : {}),
      ...(get("reserved-host-disk-gb") !== undefined ? { reservedHostDiskGb: whole("reserved-host-disk-gb") } : {}),
    },
    driver,
    stateDir: get("state-dir"),
    reportIntervalSeconds: get("report-interval") === undefined ? undefined : num("report-interval", 1),
    concurrency: Math.floor(num("concurrency", 1)),
    hosts,
    fake: {
      capacity: { vcpus: num("vcpus", 1), memoryMb: num("memory-mb", 1), diskGb: num("disk-gb", 1) },
      delayMs: num("fake-delay-ms", 0),
      faults,
    },
    libvirt: {
      uri: get("libvirt-uri")!,
      instancesPath: get("instances-path"),
      imageDir: get("image-dir"),
      liveMigrationUri: liveUri,
      liveMigrationInboundAddr: get("live-migration-inbound-addr"),
    },
    logLevel: get("log-level")!,
    metricsListen: listenOf("metrics-listen", get("metrics-listen")),
    trace: traceOf(get("trace")),
    network: networkOf(get, driver),
    volumes: volumeConfigOf(get, (message) => {
      throw new UsageError(message);
    }, hosts),
  };
}

function traceOf(raw: string | undefined): TraceTarget | undefined {
  if (raw === undefined) return undefined;
  try {
    return parseTraceTarget("--trace", raw);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** A host:port to listen on (port 0: any), or undefined. */
function listenOf(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]*):(\d{1,5})$/.exec(raw);
  if (!m || Number(m[2]) > 65535) throw new UsageError(`--${name}: expected host:port (such as 127.0.0.1:9181), got "${raw}"`);
  return raw;
}

/** The network driver's settings. */
function networkOf(get: (name: keyof typeof AGENT_FLAGS) => string | undefined, driver: "fake" | "libvirt"): AgentCliConfig["network"] {
  const kind = get("network-driver") ?? (driver === "libvirt" ? "linux" : "fake");
  if (kind !== "fake" && kind !== "linux") throw new UsageError(`--network-driver: unknown driver "${kind}" (known: linux, fake)`);
  const tunnelIp = get("tunnel-ip") ?? "";
  if (tunnelIp && !/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(tunnelIp)) throw new UsageError(`--tunnel-ip: "${tunnelIp}" is not an IPv4 address`);
  const hostTag = get("network-host-tag");
  if (hostTag !== undefined && !/^[a-z0-9]{1,4}$/.test(hostTag)) throw new UsageError(`--network-host-tag: "${hostTag}" is not 1-4 lowercase letters or digits`);
  const namespace = get("network-namespace") || undefined;
  // A name `ip netns` accepts: one path component under /run/netns.
  if (namespace !== undefined && (!/^[A-Za-z0-9_.-]{1,64}$/.test(namespace) || namespace === "." || namespace === "..")) {
    throw new UsageError(`--network-namespace: "${namespace}" is not a network namespace name (letters, digits, '.', '-', '_')`);
  }
  if (namespace !== undefined && kind !== "linux") throw new UsageError("--network-namespace: only the linux network driver works in a namespace");
  return { driver: kind, tunnelIp, hostTag, namespace };
}

/** Host names and state dirs of the agents `config` asks for. */
export function agentInstances(config: AgentCliConfig): { host: string; stateDir: string }[] {
  if (config.hosts === 1) {
    return [{ host: config.host, stateDir: config.stateDir ?? join(".state", `agent-${config.host}`) }];
  }
  return Array.from({ length: config.hosts }, (_, i) => {
    const host = `${config.host}-${i + 1}`;
    return { host, stateDir: config.stateDir ? join(config.stateDir, host) : join(".state", `agent-${host}`) };
  });
}
