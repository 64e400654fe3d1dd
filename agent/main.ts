/**
 * The agent's command line entry: `tsx agent/main.ts --help`.
 * Runs one agent, or with `--hosts N` N fake agents sharing one NATS
 * connection. SIGINT/SIGTERM stop gracefully; a second signal exits at once.
 */
import { join, resolve } from "node:path";
import { connect, type NatsConnection } from "nats";
import { pino, type Logger } from "pino";
import { Agent } from "./agent.js";
import { agentHelp, agentInstances, parseAgentCli, UsageError, type AgentCliConfig } from "./cli-options.js";
import type { Driver } from "./drivers/driver.js";
import { FakeDriver } from "./drivers/fake/fake-driver.js";
import { DirectoryImageStore, type ImageStore } from "./drivers/libvirt/image-store.js";
import { JetStreamImageStore } from "./drivers/libvirt/jetstream-image-store.js";
import { LibvirtDriver } from "./drivers/libvirt/libvirt-driver.js";

/** The driver `config` asks for, for one agent. */
function makeDriver(config: AgentCliConfig, host: string, stateDir: string, nats: NatsConnection | undefined, logger: Logger): Driver {
  if (config.driver === "libvirt") {
    const { imageBucket, imageDir } = config.libvirt;
    const imageStore: ImageStore =
      imageBucket !== undefined && nats
        ? new JetStreamImageStore({ nats, bucket: imageBucket })
        : new DirectoryImageStore(resolve(imageDir ?? join(stateDir, "images")));
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
  const logger = pino({ name: "novamesh-agent", level: config.logLevel });
  const instances = agentInstances(config);
  let shared: NatsConnection | undefined;
  if (instances.length > 1 || config.libvirt.imageBucket !== undefined) {
    shared = await connect({
      servers: config.natsUrl.split(","),
      name: `novamesh-agents-${config.host}`,
      maxReconnectAttempts: -1,
      ...(config.natsCa ? { tls: { caFile: config.natsCa } } : {}),
    });
  }
  const agents = instances.map(
    ({ host, stateDir }) =>
      new Agent({
        driver: makeDriver(config, host, stateDir, shared, logger),
        controller: config.controller,
        token: config.token,
        natsUrl: config.natsUrl,
        natsCa: config.natsCa,
        nats: shared,
        host,
        zone: config.zone,
        allocation: config.allocation,
        stateDir,
        reportIntervalSeconds: config.reportIntervalSeconds,
        concurrency: config.concurrency,
        logger,
      }),
  );

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
        .then(() => shared?.drain())
        .finally(resolve);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  await Promise.all(agents.map((a) => a.start()));
  logger.info(
    { agents: agents.length, driver: config.driver, ...(config.driver === "libvirt" ? { uri: config.libvirt.uri } : {}), controller: config.controller, nats: config.natsUrl },
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
