/**
 * The agent's command line entry: `tsx agent/main.ts --help`.
 * Runs one agent, or with `--hosts N` N fake agents sharing one NATS
 * connection. SIGINT/SIGTERM stop gracefully; a second signal exits at once.
 */
import { join, resolve } from "node:path";
import type { AgentServiceClient } from "../gen/novamesh/agent/v1/agent.js";
import { connect, type NatsConnection } from "nats";
import { pino, type Logger } from "pino";
import { loggerOptions } from "../controller/log-context.js";
import { serveMetrics } from "../controller/metrics.js";
import { startTracing } from "../controller/tracing.js";
import { AgentMetrics } from "./metrics.js";
import type { AddressInfo } from "node:net";
import { Agent } from "./agent.js";
import { agentHelp, agentInstances, parseAgentCli, UsageError, type AgentCliConfig } from "./cli-options.js";
import type { Driver } from "./drivers/driver.js";
import { makeNetworkDriver, type NetworkDriver } from "./network/index.js";
import { FakeDriver } from "./drivers/fake/fake-driver.js";
import { DirectoryImageStore, type ImageStore } from "./drivers/libvirt/image-store.js";
import { LibvirtDriver } from "./drivers/libvirt/libvirt-driver.js";
import { ControllerImageStore } from "./session/controller-image-store.js";
import { makeVolumes } from "./volume/cli.js";
import { bestEffort } from "./best-effort.js";
import { TlsConfigError, clientCredentials } from "./tls.js";

/**
 * Where one agent gets and puts image bytes: through the controller over
 * `client`, the agent's AgentService client, unless --image-dir names a
 * local directory instead.
 */
function makeImageStore(config: AgentCliConfig, host: string, client: () => AgentServiceClient): ImageStore {
  const { imageDir } = config.libvirt;
  return imageDir !== undefined ? new DirectoryImageStore(resolve(imageDir)) : new ControllerImageStore({ client, token: config.token, host });
}

/** The driver `config` asks for, for one agent (a libvirt host's images come from `imageStore`). */
function makeDriver(config: AgentCliConfig, host: string, stateDir: string, imageStore: ImageStore, logger: Logger): Driver {
  if (config.driver === "libvirt") {
    return new LibvirtDriver({
      hostname: host,
      uri: config.libvirt.uri,
      instancesPath: resolve(config.libvirt.instancesPath ?? join(stateDir, "instances")),
      imageStore,
      liveMigrationUri: config.libvirt.liveMigrationUri,
      liveMigrationInboundAddr: config.libvirt.liveMigrationInboundAddr,
      logger: logger.child({ host, driver: "libvirt" }),
    });
  }
  return new FakeDriver({
    hostname: host,
    capacity: config.fake.capacity,
    faults: config.fake.faults,
    delayMs: config.fake.delayMs,
    statePath: join(stateDir, "fake-domains.json"),
  });
}

/** The network driver `config` asks for, for one agent; its state lives in `<stateDir>/network`. */
function makeNetwork(config: AgentCliConfig, host: string, stateDir: string, logger: Logger): NetworkDriver {
  const { driver, tunnelIp, hostTag, namespace } = config.network;
  if (driver === "linux") {
    return makeNetworkDriver({
      kind: "linux",
      hostname: host,
      hostTag,
      tunnelIp,
      netns: namespace,
      stateDir: resolve(join(stateDir, "network")),
      logger: logger.child({ host, driver: "network" }),
    });
  }
  return makeNetworkDriver({ kind: "fake", tunnelIp, statePath: join(stateDir, "fake-network.json") });
}

async function main(): Promise<number> {
  let config: AgentCliConfig | "help";
  try {
    config = parseAgentCli(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`agent: ${err.message}\nRun with --help for the flags.\n`);
    return 2;
  }
  if (config === "help") {
    process.stdout.write(`${agentHelp()}\n`);
    return 0;
  }
  let channel: ReturnType<typeof clientCredentials>;
  try {
    channel = clientCredentials(config.tls);
  } catch (err) {
    if (!(err instanceof TlsConfigError)) throw err;
    process.stderr.write(`agent: ${err.message}\n`);
    return 2;
  }
  const logger = pino(loggerOptions({ name: "novamesh-agent", level: config.logLevel }));
  if (config.tls.plaintext) logger.warn("--plaintext: connecting to the controller without TLS; the token travels in clear text (development only)");
  const instances = agentInstances(config);
  // Simulated hosts of one process share one NATS connection, made at first
  // use — unless the controller gives each its own NATS user, then none is made.
  let shared: Promise<NatsConnection> | undefined;
  const sharedNats =
    instances.length > 1
      ? () =>
          (shared ??= connect({
            servers: config.natsUrl.split(","),
            name: `novamesh-agents-${config.host}`,
            maxReconnectAttempts: -1,
            ...(config.natsCa ? { tls: { caFile: config.natsCa } } : {}),
          }))
      : undefined;
  const tracing = config.trace ? startTracing("novamesh-agent", config.trace) : undefined;
  const metrics = config.metricsListen !== undefined ? new AgentMetrics() : undefined;
  const agents = instances.map(({ host, stateDir }) => {
    const images = makeImageStore(config, host, () => agent.client);
    const agent: Agent = new Agent({
      driver: makeDriver(config, host, stateDir, images, logger),
      network: makeNetwork(config, host, stateDir, logger),
      volumes: config.volumes ? makeVolumes(config.volumes, stateDir, logger.child({ host, volumes: config.volumes.backend })) : undefined,
      images: config.volumes ? images : undefined,
      controller: config.controller,
      credentials: channel.credentials,
      channelOptions: channel.channelOptions,
      token: config.token,
      natsUrl: config.natsUrl,
      natsCa: config.natsCa,
      nats: sharedNats,
      host,
      zone: config.zone,
      allocation: config.allocation,
      stateDir,
      reportIntervalSeconds: config.reportIntervalSeconds,
      concurrency: config.concurrency,
      logger,
      metrics,
    });
    return agent;
  });

  let stopping = false;
  const done = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, "second signal; exiting now");
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal, agents: agents.length }, "stopping");
      void Promise.allSettled(agents.map((a) => a.stop()))
        .then(() => shared && bestEffort(logger, "draining the shared NATS connection", async () => (await shared!).drain()))
        .then(() => tracing && bestEffort(logger, "flushing trace spans", () => tracing.flush()))
        .finally(resolve);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  if (metrics && config.metricsListen !== undefined) {
    // Bound before the agents start: a port that cannot be had is a mistake in the flags, said at once.
    let served;
    try {
      served = await serveMetrics(config.metricsListen, metrics.registry, logger);
    } catch (err) {
      process.stderr.write(`agent: --metrics-listen ${config.metricsListen}: ${(err as Error).message}\n`);
      return 2;
    }
    const { address, port } = served.address() as AddressInfo;
    logger.info({ metrics: `http://${address.includes(":") ? `[${address}]` : address}:${port}/metrics` }, "metrics served");
  }
  await Promise.all(agents.map((a) => a.start()));
  logger.info(
    { agents: agents.length, driver: config.driver, ...(config.driver === "libvirt" ? { uri: config.libvirt.uri } : {}), controller: config.controller, tls: !config.tls.plaintext, nats: config.natsUrl },
    "agents running",
  );
  await done;
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
