import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { connect, credsAuthenticator } from "nats";
import type { NatsConnection } from "nats";
import pino from "pino";
import type { Logger } from "pino";
import { loggerOptions } from "./log-context.js";
import { parseTraceTarget, startTracing } from "./tracing.js";
import { AgentServiceService } from "../gen/novamesh/agent/v1/agent.js";
import { FlavorServiceService } from "../gen/novamesh/compute/v1/flavor.js";
import { HostServiceService } from "../gen/novamesh/compute/v1/host.js";
import { IdentityServiceService } from "../gen/novamesh/compute/v1/identity.js";
import { ImageServiceService } from "../gen/novamesh/compute/v1/image.js";
import { ServerServiceService } from "../gen/novamesh/compute/v1/server.js";
import { OperationServiceService } from "../gen/novamesh/compute/v1/operation.js";
import { operationService } from "./api/operation-service.js";
import { bestEffort } from "./best-effort.js";
import { agentConductor } from "./conductor/agent-conductor.js";
import type { ConductorContext } from "./conductor/context.js";
import { PlacementWorker } from "./conductor/placement.js";
import { Reaper } from "./conductor/reaper.js";
import { ensureOpsStream, hostConsumerBacklog } from "./bus/jetstream.js";
import { onCommitted, onConnectionWait, openPool } from "./store/db.js";
import { loadHostStates } from "./store/placement.js";
import { parseTaskTimeouts, parseVolumeTimeouts } from "./domain/tasks.js";
import { hostService, identityService } from "./api/admin-services.js";
import { agentService } from "./api/agent-service.js";
import { flavorService } from "./api/flavor-service.js";
import { imageService } from "./api/image-service.js";
import { addHealth } from "./api/health.js";
import type { HealthSetter } from "./api/health.js";
import { addReflection } from "./api/reflection.js";
import { tolerant } from "./api/decode.js";
import { Limits } from "./api/limits.js";
import { TokenWatch } from "./api/token-watch.js";
import { NetworkSync } from "./conductor/network-sync.js";
import { serverService } from "./api/server-service.js";
import { ChangeFeed } from "./api/watch.js";
import { OutboxPublisher } from "./bus/outbox-publisher.js";
import { HostQueries } from "./bus/host-queries.js";
import { AgentCredentialIssuer } from "./bus/nats-auth.js";
import { OpSigner } from "./bus/op-signer.js";
import type { ControllerConfig } from "./config.js";
import { DEFAULT_CONFIG, limitsOf, pipelineOptions } from "./config.js";
import { serverTls } from "./tls.js";
import { AggregateServiceService } from "../gen/novamesh/compute/v1/aggregate.js";
import { SchedulerServiceService } from "../gen/novamesh/compute/v1/scheduler.js";
import { ServerGroupServiceService } from "../gen/novamesh/compute/v1/server_group.js";
import { QuotaServiceService } from "../gen/novamesh/compute/v1/quota.js";
import { quotaService } from "./api/quota-service.js";
import { KeypairServiceService } from "../gen/novamesh/compute/v1/keypair.js";
import { keypairService } from "./api/keypair-service.js";
import { NetworkServiceService } from "../gen/novamesh/network/v1/network.js";
import { VolumeServiceService } from "../gen/novamesh/volume/v1/volume.js";
import { SecurityGroupServiceService } from "../gen/novamesh/network/v1/security_group.js";
import { networkService } from "./api/network-service.js";
import { volumeService } from "./api/volume-service.js";
import { securityGroupService } from "./api/security-group-service.js";
import { aggregateService, schedulerService, serverGroupService } from "./api/placement-services.js";
import type { Pool } from "./store/db.js";
import { ImageBytes } from "./store/image-bytes.js";
import { migrate } from "./store/migrations.js";
import { AuditServiceService } from "../gen/novamesh/compute/v1/audit.js";
import { AuditLog, AuditPurger } from "./api/audit-log.js";
import { auditService } from "./api/audit-service.js";
import { ensureAdminToken } from "./store/tokens.js";
import { HostCache } from "./scheduler/host-cache.js";
import type { AddressInfo } from "node:net";
import type { Server as HttpServer } from "node:http";
import { ControllerMetrics, serveMetrics } from "./metrics.js";
import { scrapedState } from "./store/metrics-state.js";
import { Pipeline } from "./scheduler/pipeline.js";

const DESCRIPTOR_SET = fileURLToPath(new URL("../gen/novamesh.binpb", import.meta.url));

/** Public services listed by reflection (the agent protocol is internal). */
const PUBLIC_SERVICES = [
  "novamesh.compute.v1.ServerService",
  "novamesh.compute.v1.OperationService",
  "novamesh.compute.v1.FlavorService",
  "novamesh.compute.v1.ImageService",
  "novamesh.compute.v1.HostService",
  "novamesh.compute.v1.IdentityService",
  "novamesh.compute.v1.ServerGroupService",
  "novamesh.compute.v1.AggregateService",
  "novamesh.compute.v1.SchedulerService",
  "novamesh.compute.v1.AuditService",
  "novamesh.compute.v1.QuotaService",
  "novamesh.compute.v1.KeypairService",
  "novamesh.network.v1.NetworkService",
  "novamesh.network.v1.SecurityGroupService",
  "novamesh.volume.v1.VolumeService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

/**
 * One controller process: gRPC API, scheduler, conductor and outbox
 * publisher. Any number may run against the same MySQL and NATS.
 */
export class Controller {
  readonly config: ControllerConfig;
  readonly log: Logger;
  private pool: Pool | null = null;
  private hostsPool: Pool | null = null;
  private nc: NatsConnection | null = null;
  private server: grpc.Server | null = null;
  private agentServer: grpc.Server | null = null;
  private publisher: OutboxPublisher | null = null;
  private placement: PlacementWorker | null = null;
  private reaper: Reaper | null = null;
  private auditPurger: AuditPurger | null = null;
  private tokenWatch: TokenWatch | null = null;
  private networkSync: NetworkSync | null = null;
  private setHealth: HealthSetter | null = null;
  private changeFeed: ChangeFeed | null = null;
  private metricsServer: HttpServer | null = null;
  /** The controller's metrics (after start). */
  metrics: ControllerMetrics | null = null;
  /** Trace export, when `trace` is set. */
  private tracing: { flush: () => Promise<void> } | null = null;
  /** The port metrics are served on (after start, when `metricsListen` is set; else 0). */
  metricsPort = 0;
  /** The port the gRPC server listens on (after start). */
  port = 0;
  /** The port of the agent listener (after start, when `agentListen` is set; else 0). */
  agentPort = 0;

  constructor(config: Partial<ControllerConfig> = {}, log?: Logger) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.log = log ?? pino(loggerOptions({ level: this.config.logLevel, base: { svc: "novamesh-controller" } }));
  }

  get database(): Pool {
    if (!this.pool) throw new Error("controller not started");
    return this.pool;
  }

  /** The change feed behind WatchServers (after start). */
  get feed(): ChangeFeed {
    if (!this.changeFeed) throw new Error("controller not started");
    return this.changeFeed;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    if (!cfg.adminToken) throw new Error("an admin token is required (--admin-token or NOVAMESH_ADMIN_TOKEN)");
    // Certificates first: a bad one stops the start before anything is opened.
    const tls = serverTls(cfg);
    for (const w of tls.warnings) this.log.warn(w);
    if (cfg.trace) this.tracing = startTracing("novamesh-controller", parseTraceTarget("--trace", cfg.trace));
    const pool = (this.pool = await openPool(cfg.databaseUrl));
    const applied = await migrate(pool);
    if (applied.length) this.log.info({ versions: applied }, "schema migrations applied");
    const revoked = await ensureAdminToken(pool, cfg.adminToken, cfg.adminProject);
    if (revoked) this.log.warn({ revoked }, "the configured admin secret changed: the previous configuration admin token is revoked");

    // The controller's own NATS user; its JWT also names the account agents' users are minted for.
    const creds = cfg.natsCreds ? await readFile(cfg.natsCreds, "utf8").catch((err: unknown) => {
      throw new Error(`--nats-creds: cannot read ${cfg.natsCreds}: ${(err as Error).message}`);
    }) : undefined;
    const nc = (this.nc = await connect({
      servers: cfg.natsUrl,
      name: "novamesh-controller",
      maxReconnectAttempts: -1,
      ...(creds ? { authenticator: credsAuthenticator(new TextEncoder().encode(creds)) } : {}),
      ...(cfg.natsCa ? { tls: { caFile: cfg.natsCa } } : {}),
    }));
    const issuer =
      creds && cfg.natsSigningKey ? await AgentCredentialIssuer.fromCreds(creds, `--nats-creds ${cfg.natsCreds}`, cfg.natsSigningKey, cfg.natsAgentTtlSeconds) : null;
    const signer = await OpSigner.shared(pool);
    const jsm = await nc.jetstreamManager();
    await ensureOpsStream(jsm, cfg.opsStream, cfg.opsSubjectPrefix);
    const js = nc.jetstream();

    // One read of the database (and of JetStream's consumers) per scrape; see ControllerMetrics.
    const hostsPool = (this.hostsPool = await openPool(cfg.databaseUrl, { connectionLimit: 2 }));
    const metrics = (this.metrics = new ControllerMetrics(async () => {
      const state = await scrapedState(hostsPool, cfg.serviceDownTimeSeconds);
      const hostOps = await hostConsumerBacklog(jsm, cfg.opsStream, state.hosts.map((h) => h.host)).catch((err: unknown) => {
        this.log.warn({ err }, "a metrics scrape could not list the hosts' op consumers");
        return [];
      });
      return { ...state, hostOps };
    }));
    onConnectionWait(pool, (seconds) => metrics.dbConnectionWait.observe(seconds));
    const ctx: ConductorContext = {
      pool,
      metrics,
      log: this.log,
      subjectPrefix: cfg.opsSubjectPrefix,
      taskTimeouts: parseTaskTimeouts(cfg.taskTimeouts),
      volumeTimeouts: parseVolumeTimeouts(cfg.volumeTimeouts),
      volumeOversubscriptionRatio: cfg.volumeOversubscriptionRatio,
      serviceDownTimeSeconds: cfg.serviceDownTimeSeconds,
      maxAttempts: cfg.maxAttempts,
      powerOffTimeoutSeconds: cfg.powerOffTimeoutSeconds,
      softRebootTimeoutSeconds: cfg.softRebootTimeoutSeconds,
      allowResizeToSameHost: cfg.allowResizeToSameHost,
    };
    const feed = (this.changeFeed = new ChangeFeed(pool, { pollMs: cfg.watchPollMs, buffer: cfg.watchBuffer, log: this.log }));
    // The scheduler's host view reads through connections of its own (see HostCache).
    const hosts = new HostCache(() => loadHostStates(hostsPool, cfg.serviceDownTimeSeconds), { maxAgeMs: 2000 });
    const publisher = (this.publisher = new OutboxPublisher(pool, js, signer, this.log));
    const pipeline = new Pipeline(pipelineOptions(cfg));
    const placement = (this.placement = new PlacementWorker(ctx, hosts, pipeline, { batch: 20, pollMs: 500 }, metrics));
    this.reaper = new Reaper(ctx, {
      intervalSeconds: cfg.reaperIntervalSeconds,
      graceSeconds: cfg.reaperGraceSeconds,
      resizeConfirmWindowSeconds: cfg.resizeConfirmWindowSeconds,
    });
    // What a commit changed wakes what depends on it.
    onCommitted(pool, (changes) => {
      if (changes.has("hosts")) hosts.invalidate();
      if (changes.has("placements")) placement.kick();
      if (changes.has("outbox") && !cfg.holdOutbox) publisher.kick();
      if (changes.has("servers")) feed.notify();
    });
    this.networkSync = new NetworkSync(pool, this.log);
    const agents = agentConductor(ctx, {
      network: this.networkSync,
      jsm,
      issuer,
      opSigningKeys: [signer.publicKey],
      opsStream: cfg.opsStream,
      reportIntervalSeconds: cfg.reportIntervalSeconds,
      hellos: { concurrency: cfg.agentHelloConcurrency, maxQueued: cfg.agentHelloQueue },
      allocation: {
        cpuAllocationRatio: cfg.cpuAllocationRatio,
        ramAllocationRatio: cfg.ramAllocationRatio,
        diskAllocationRatio: cfg.diskAllocationRatio,
        reservedMemoryMb: cfg.reservedHostMemoryMb,
        reservedVcpus: cfg.reservedHostCpus,
        reservedDiskGb: cfg.reservedHostDiskGb,
      },
    });

    const audit = new AuditLog(pool, this.log);
    this.auditPurger = new AuditPurger(pool, this.log, cfg.auditRetentionDays);
    const tokens = (this.tokenWatch = new TokenWatch(pool, this.log));
    const deps = { pool, log: this.log, audit, limits: new Limits(limitsOf(cfg)), tokens, metrics };
    const server = (this.server = new grpc.Server({ "grpc.keepalive_permit_without_calls": 1, "grpc.max_receive_message_length": 16 * 1024 * 1024 }));
    server.addService(tolerant(ServerServiceService), serverService(deps, ctx, feed, new HostQueries(nc, cfg.opsSubjectPrefix)));
    server.addService(tolerant(OperationServiceService), operationService(deps, ctx, feed));
    server.addService(tolerant(FlavorServiceService), flavorService(deps));
    const imageBytes = new ImageBytes(nc, cfg.imageBucket);
    server.addService(tolerant(ImageServiceService), imageService(deps, imageBytes));
    server.addService(tolerant(HostServiceService), hostService(deps, { serviceDownTimeSeconds: cfg.serviceDownTimeSeconds }));
    server.addService(tolerant(IdentityServiceService), identityService(deps));
    // With an agent listener, agents connect there only (client certificates required).
    if (!tls.agent) server.addService(tolerant(AgentServiceService), agentService(deps, agents, imageBytes));
    server.addService(tolerant(ServerGroupServiceService), serverGroupService(deps));
    server.addService(tolerant(AggregateServiceService), aggregateService(deps));
    server.addService(tolerant(SchedulerServiceService), schedulerService(deps, { pipeline, hosts }));
    server.addService(tolerant(AuditServiceService), auditService(deps));
    server.addService(tolerant(QuotaServiceService), quotaService(deps));
    server.addService(tolerant(KeypairServiceService), keypairService(deps));
    server.addService(tolerant(NetworkServiceService), networkService(deps, { vniMin: cfg.vniMin, vniMax: cfg.vniMax }));
    server.addService(tolerant(SecurityGroupServiceService), securityGroupService(deps));
    server.addService(tolerant(VolumeServiceService), volumeService(deps, ctx));
    addReflection(server, await readFile(DESCRIPTOR_SET), { services: PUBLIC_SERVICES });
    this.setHealth = addHealth(server, { "": "SERVING" });
    this.port = await bind(server, cfg.listen, tls.public);
    if (tls.agent) {
      const agentServer = (this.agentServer = new grpc.Server({ "grpc.keepalive_permit_without_calls": 1 }));
      agentServer.addService(tolerant(AgentServiceService), agentService(deps, agents, imageBytes, { certificateNamesHost: true }));
      const setAgentHealth = addHealth(agentServer, { "": "SERVING" });
      const setPublicHealth = this.setHealth;
      this.setHealth = (service, status) => {
        setPublicHealth(service, status);
        setAgentHealth(service, status);
      };
      this.agentPort = await bind(agentServer, cfg.agentListen, tls.agent);
    }

    if (cfg.metricsListen) {
      const served = (this.metricsServer = await serveMetrics(cfg.metricsListen, metrics.registry, this.log));
      this.metricsPort = (served.address() as AddressInfo).port;
    }
    placement.start();
    this.reaper.start();
    this.auditPurger.start();
    if (cfg.holdOutbox) this.log.warn("fault hook: outbox publishing is held; ops are committed but not sent");
    else publisher.start();
    this.log.info(
      {
        listen: cfg.listen,
        port: this.port,
        tls: !cfg.plaintext,
        ...(cfg.agentListen ? { agentListen: cfg.agentListen, agentPort: this.agentPort } : {}),
        ...(cfg.metricsListen ? { metricsPort: this.metricsPort } : {}),
        stream: cfg.opsStream,
      },
      "controller started",
    );
  }

  /** Graceful stop: refuse new calls, finish workers, drain NATS, close the pool. */
  async stop(): Promise<void> {
    this.setHealth?.("", "NOT_SERVING");
    await Promise.all([this.server, this.agentServer].map((server) => server && shutdown(server)));
    const metricsServer = this.metricsServer;
    if (metricsServer) await new Promise<void>((resolve) => metricsServer.close(() => resolve()));
    this.metricsServer = null;
    await this.placement?.stop();
    await this.reaper?.stop();
    await this.auditPurger?.stop();
    this.tokenWatch?.stop();
    this.networkSync?.stop();
    await this.publisher?.stop();
    const { nc, pool, hostsPool } = this;
    if (nc) await bestEffort(this.log, "draining the NATS connection", () => nc.drain());
    if (pool) await bestEffort(this.log, "closing the database pool", () => pool.end());
    if (hostsPool) await bestEffort(this.log, "closing the host view's database pool", () => hostsPool.end());
    this.hostsPool = null;
    this.server = null;
    this.agentServer = null;
    this.nc = null;
    this.pool = null;
    const tracing = this.tracing;
    if (tracing) await bestEffort(this.log, "flushing trace spans", () => tracing.flush());
  }
}

function bind(server: grpc.Server, address: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => server.bindAsync(address, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

/** Refuses new calls and waits up to 2 s for running ones, then ends them. */
function shutdown(server: grpc.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2000);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
