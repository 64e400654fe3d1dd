/**
 * The compute agent (Nova's nova-compute): holds the controller stream
 * open, takes this host's ops from JetStream, runs them through the driver
 * exactly once, reports results, progress of long ops and resources, and
 * acks an op's message only after the controller acknowledged its result.
 *
 *   ComputeOp (JetStream) → OpConsumer → AgentOp → OpExecutor → Driver
 *     → OpOutcome → OpResult (ControllerSession) → OpResultAck (controller)
 *     → ack (JetStream)
 *
 * A volume host's volume ops take the same path, as AgentVolumeOps run on
 * its volume backend instead of the driver.
 *
 * Proto is decoded and encoded only at those edges (the consumer and the
 * session, through proto-convert); the executor and the driver see the
 * agent's own types.
 */
import { AgentServiceClient, type HelloAck, type NetworkUpdate } from "../gen/novamesh/agent/v1/agent.js";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { connect, jwtAuthenticator, type NatsConnection } from "nats";
import { newUserNkey } from "../controller/domain/ed25519.js";
import type { Logger } from "pino";
import { connectionHint } from "./tls.js";
import { resolveAgentOptions, type AgentInit, type AgentOptions } from "./agent-options.js";
import { askedRetryDelayMs, backoffDelay, sleepUnlessAborted } from "./backoff.js";
import { bestEffort } from "./best-effort.js";
import { OpConsumer, type OpDelivery } from "./bus/op-consumer.js";
import { QueryResponder } from "./bus/query-responder.js";
import { ExecutorClosedError, OpExecutor } from "./ops/executor.js";
import type { OpOutcome } from "./ops/outcome.js";
import { SpanKind, inTrace } from "../controller/tracing.js";
import { capacityToProto, portSpecFromProto, volumePoolsOf } from "./proto-convert.js";
import { ResourceReporter } from "./reporter/resource-reporter.js";
import { ControllerSession } from "./session/controller-session.js";

export type { AgentInit, AgentOptions } from "./agent-options.js";

/** Where the agent is in its life. */
export type AgentState = "new" | "starting" | "connecting" | "connected" | "stopping" | "stopped";

interface PendingResult {
  readonly outcome: OpOutcome;
  readonly consumer: OpConsumer;
}

/** Delay before a message whose op could not be journaled is redelivered. */
const RETRY_LATER_MS = 5_000;

/** See the module comment. */
export class Agent {
  /** The options in effect. */
  readonly options: AgentOptions;
  private readonly log: Logger;
  /**
   * The agent's AgentService client: its one channel to the controller,
   * shared by the Connect stream and the image transfers of its driver
   * (session/controller-image-store.ts).
   */
  readonly client: AgentServiceClient;
  private readonly stopController = new AbortController();
  private readonly pending = new Map<string, PendingResult>();
  private readonly connectedWaiters: Array<(ack: HelloAck) => void> = [];
  private readonly reporter: ResourceReporter;
  private readonly unsubscribeDriver: (() => void) | undefined;
  private currentState: AgentState = "new";
  private executor: OpExecutor | undefined;
  private nats: NatsConnection | undefined;
  private session: ControllerSession | undefined;
  private consumer: OpConsumer | undefined;
  private queries: QueryResponder | undefined;
  private consumerKey = "";
  private loops: Promise<void>[] = [];
  private stopping: Promise<void> | undefined;
  /** The agent's NATS user key pair: made here, its seed never leaves the process. */
  private readonly natsKey = newUserNkey();
  /** The NATS user JWT the controller gave for natsKey (none: the bus takes no credentials). */
  private natsJwt = "";
  private inboxPrefix = "";
  private renewTimer: NodeJS.Timeout | undefined;
  /** Network updates from the controller, applied one after another. */
  private networkUpdates: Promise<void> = Promise.resolve();
  /** Keys whose signature an op must carry (from HelloAck). */
  private opSigningKeys: readonly string[] = [];

  constructor(init: AgentInit) {
    this.options = resolveAgentOptions(init);
    this.log = this.options.logger.child({ host: this.options.host });
    this.client = new AgentServiceClient(this.options.controller, this.options.credentials, {
      ...this.options.channelOptions,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
    });
    const { metrics, host } = this.options;
    this.reporter = new ResourceReporter(
      this.options.driver,
      (report) => {
        const session = this.session;
        if (!session) return;
        session.send({ body: { $case: "report", report } });
        metrics?.reports.inc({ host });
      },
      this.log,
      this.options.volumes,
    );
    metrics?.watch(host, { inFlight: () => this.executor?.inFlight ?? 0, connected: () => this.currentState === "connected" });
    // Hypervisor events (a guest that shut itself down) are reported at once.
    this.unsubscribeDriver = this.options.driver.onStateChange?.(() => this.reporter.reportSoon());
  }

  /** Where the agent is in its life. */
  get state(): AgentState {
    return this.currentState;
  }

  /** Results sent and not yet acknowledged by the controller. */
  get pendingResults(): number {
    return this.pending.size;
  }

  /**
   * Initialises the driver and the op journal, then connects to the
   * controller (and NATS) in the background, reconnecting with capped
   * exponential backoff until `stop()`. Rejects if the driver or the state
   * directory cannot be initialised.
   */
  async start(): Promise<void> {
    if (this.currentState !== "new") throw new Error(`agent already ${this.currentState}`);
    this.currentState = "starting";
    const { driver, stateDir, concurrency, fsync, progressIntervalMs } = this.options;
    await driver.init();
    const { network } = this.options;
    // The host side of ports whose instance the hypervisor no longer has goes (an agent may have stopped mid-op).
    if (network) await network.reconcile((await driver.report()).instances.map((i) => i.serverId));
    this.executor = await OpExecutor.open({
      driver,
      network,
      volumes: this.options.volumes,
      images: this.options.images,
      stateDir,
      concurrency,
      fsync,
      logger: this.log,
      progressIntervalMs,
      // Best effort: progress while disconnected is dropped, not queued.
      onProgress: (p) => this.session?.sendProgress(p),
    });
    this.currentState = "connecting";
    this.loops.push(this.connectLoop());
    this.log.info({ controller: this.options.controller, state_dir: stateDir }, "agent started");
  }

  /** Resolves with the HelloAck once connected (at once if connected now). */
  connected(): Promise<HelloAck> {
    if (this.session?.open) return Promise.resolve(this.session.helloAck);
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /**
   * Stops gracefully: stops taking ops, waits up to `stopTimeoutMs` for
   * in-flight ops and for the controller to acknowledge their results, gives
   * unfinished messages back to JetStream, ends the stream, drains NATS
   * (if the agent opened it) and closes the driver. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const started = this.currentState !== "new";
    this.currentState = "stopping";
    this.stopController.abort();
    const deadline = Date.now() + this.options.stopTimeoutMs;
    this.queries?.stop();
    await this.consumer?.stop();
    if (this.executor && !(await this.executor.idle(deadline - Date.now()))) {
      this.log.warn({ in_flight: this.executor.inFlight }, "ops still running at the stop timeout; they will be redelivered");
    }
    while (this.pending.size > 0 && this.session?.open && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
    }
    await this.executor?.close();
    this.consumer?.nakAll();
    this.consumer?.close();
    this.unsubscribeDriver?.();
    this.reporter.stop();
    await this.session?.close(Math.max(0, Math.min(2_000, deadline - Date.now())));
    await Promise.allSettled(this.loops);
    this.client.close();
    clearTimeout(this.renewTimer);
    const nats = this.nats;
    if (nats) await bestEffort(this.log, "draining the NATS connection", () => nats.drain());
    if (started) await this.options.driver.close();
    const network = this.options.network;
    if (started && network) await bestEffort(this.log, "closing the network driver", () => network.close());
    const volumes = this.options.volumes;
    if (started && volumes) await bestEffort(this.log, "closing the volume backend", () => volumes.close());
    this.currentState = "stopped";
    this.log.info("agent stopped");
  }

  /**
   * The host's network as the controller has it: VXLAN peers, and the ports
   * of instances plugged here with their current rules (instances not
   * plugged here are left to their ops). Failures are logged; the next
   * update tries again.
   */
  private async applyNetwork(u: NetworkUpdate): Promise<void> {
    const { network } = this.options;
    const executor = this.executor;
    if (!network || !executor) return;
    try {
      await network.setPeers(u.tunnelPeers);
    } catch (err) {
      this.log.warn({ err }, "could not set the VXLAN peers the controller sent");
    }
    for (const i of u.instances) {
      await executor.refreshPorts(i.instanceId, i.ports.map(portSpecFromProto)).catch((err: unknown) =>
        this.log.warn({ err, server_id: i.instanceId }, "could not refresh an instance's ports"),
      );
    }
  }

  /** Opens sessions until stop, backing off after failures. */
  private async connectLoop(): Promise<void> {
    const signal = this.stopController.signal;
    let attempt = 0;
    while (!signal.aborted) {
      let reason: unknown;
      let message = "could not connect to the controller";
      try {
        const session = await this.openSession();
        attempt = 0;
        reason = await session.ended;
        message = "controller stream lost";
      } catch (err) {
        reason = err;
      } finally {
        if (this.session && !signal.aborted) this.options.metrics?.sessionsLost.inc({ host: this.options.host });
        this.session = undefined;
        this.reporter.stop();
        if (!signal.aborted) this.currentState = "connecting";
      }
      if (signal.aborted) break;
      // A busy controller says when to come back (spread over its agents); never sooner than the backoff.
      const delay = Math.max(backoffDelay(attempt++, { initialMs: this.options.reconnectInitialMs, maxMs: this.options.reconnectMaxMs }), askedRetryDelayMs(reason) ?? 0);
      const code = (reason as { code?: unknown } | undefined)?.code;
      const level = code === GrpcStatus.UNAUTHENTICATED || code === GrpcStatus.PERMISSION_DENIED ? "error" : "warn";
      const hint = connectionHint(reason);
      this.log[level]({ error: reason instanceof Error ? reason.message : reason, code, ...(hint ? { hint } : {}), retry_in_ms: delay }, message);
      if (!(await sleepUnlessAborted(delay, signal))) break;
    }
  }

  private async openSession(): Promise<ControllerSession> {
    const { driver, host, zone, version, token, helloTimeoutMs, allocation } = this.options;
    const capacity = capacityToProto(await driver.capacity());
    const volumePools = this.options.volumes ? await volumePoolsOf(this.options.volumes, this.log) : [];
    const session = await ControllerSession.open({
      client: this.client,
      token,
      hello: {
        host,
        hypervisorType: driver.hypervisorType,
        version,
        capacity,
        zone,
        migrationUri: driver.migrationUri ?? "",
        architecture: driver.architecture ?? "",
        allocation,
        natsPublicKey: this.natsKey.publicKey,
        tunnelIp: this.options.network?.tunnelIp ?? "",
        volumePools,
      },
      helloTimeoutMs,
      onOpResultAck: (opId) => this.onOpResultAck(opId),
      onNatsCredential: (c) => this.takeNatsCredential(c),
      onNetworkUpdate: (u) => {
        // One update at a time, in the order they came.
        this.networkUpdates = this.networkUpdates.then(() => this.applyNetwork(u));
      },
      logger: this.log,
    });
    if (this.stopController.signal.aborted) {
      await session.close(1_000);
      throw new Error("stopping");
    }
    const ack = session.helloAck;
    this.session = session;
    this.opSigningKeys = ack.opSigningKeys;
    this.inboxPrefix = ack.inboxPrefix;
    if (ack.natsCredential) this.takeNatsCredential(ack.natsCredential);
    else if (this.natsJwt) this.log.warn("the controller gave no NATS credential; keeping the one from before");
    if (!ack.opSigningKeys.length) this.log.warn("the controller names no op-signing key: ops are run without checking their signature");
    this.currentState = "connected";
    const interval = this.options.reportIntervalSeconds ?? (ack.reportIntervalSeconds || 10);
    this.log.info({ stream: ack.stream, consumer: ack.consumer, report_interval_s: interval }, "connected to the controller");
    this.reporter.start(interval);
    for (const { outcome } of this.pending.values()) session.sendResult(outcome);
    this.ensureConsumer(ack);
    void this.ensureQueries(ack);
    for (const wake of this.connectedWaiters.splice(0)) wake(ack);
    return session;
  }

  /**
   * Keeps a NATS user JWT (used at the next NATS connect or reconnect) and
   * asks for the next one when half its life is over.
   */
  private takeNatsCredential(c: { jwt: string; expireTime?: Date | undefined }): void {
    this.natsJwt = c.jwt;
    clearTimeout(this.renewTimer);
    if (!c.expireTime) return;
    const half = Math.max(5_000, (c.expireTime.getTime() - Date.now()) / 2);
    this.renewTimer = setTimeout(() => {
      if (!this.session?.send({ body: { $case: "natsCredentialRequest", natsCredentialRequest: {} } })) return;
      this.log.debug("asked for a fresh NATS credential");
    }, half);
    this.renewTimer.unref();
  }

  private onOpResultAck(opId: string): void {
    const entry = this.pending.get(opId);
    if (!entry) {
      this.log.debug({ op_id: opId }, "OpResultAck for no pending result; ignored");
      return;
    }
    this.pending.delete(opId);
    entry.consumer.ack(opId);
  }

  /** Answers queries on the subject HelloAck named, if not already. */
  private async ensureQueries(ack: HelloAck): Promise<void> {
    if (!ack.querySubject || this.queries?.subject === ack.querySubject) return;
    try {
      const nats = await this.natsConnection();
      if (this.stopController.signal.aborted || this.queries?.subject === ack.querySubject) return;
      this.queries?.stop();
      this.queries = QueryResponder.start(nats, ack.querySubject, this.options.driver, this.log);
    } catch (err) {
      this.log.warn({ err, subject: ack.querySubject }, "could not answer queries; trying again at the next connect");
    }
  }

  /** Starts consuming the stream/consumer HelloAck named, if not already. */
  private ensureConsumer(ack: HelloAck): void {
    const key = `${ack.stream}/${ack.consumer}`;
    if (key === this.consumerKey) return;
    if (!ack.stream || !ack.consumer) {
      this.log.error({ stream: ack.stream, consumer: ack.consumer }, "HelloAck names no stream or consumer; not taking ops");
      return;
    }
    const previous = this.consumer;
    this.consumerKey = key;
    this.consumer = undefined;
    if (previous) void previous.stop();
    this.loops.push(this.consumeLoop(ack.stream, ack.consumer, key));
  }

  /** Binds the consumer and hands its ops to the executor; rebinds after failures. */
  private async consumeLoop(stream: string, consumerName: string, key: string): Promise<void> {
    const signal = this.stopController.signal;
    let attempt = 0;
    while (!signal.aborted && this.consumerKey === key) {
      try {
        const js = (await this.natsConnection()).jetstream();
        const consumer = await OpConsumer.bind({
          js,
          stream,
          consumer: consumerName,
          workingIntervalMs: this.options.workingIntervalMs,
          maxHeld: Math.max(64, 4 * this.options.concurrency),
          trustedKeys: () => this.opSigningKeys,
          logger: this.log,
        });
        if (signal.aborted || this.consumerKey !== key) {
          await consumer.stop();
          break;
        }
        this.consumer = consumer;
        attempt = 0;
        this.log.info({ stream, consumer: consumerName }, "taking ops");
        for await (const delivery of consumer) void this.handle(delivery, consumer);
        if (!signal.aborted) this.log.warn({ stream, consumer: consumerName }, "op consumer ended; binding again");
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err, stream, consumer: consumerName }, "could not bind the op consumer");
      }
      const delay = backoffDelay(attempt++, { initialMs: this.options.reconnectInitialMs, maxMs: this.options.reconnectMaxMs });
      if (!(await sleepUnlessAborted(delay, signal))) break;
    }
  }

  private async handle(delivery: OpDelivery, consumer: OpConsumer): Promise<void> {
    const { opId } = delivery.op;
    try {
      const op = delivery.op;
      const kind = "kind" in op ? op.kind : "invalid";
      const attributes = { "novamesh.op_id": opId, "novamesh.host": this.options.host, "novamesh.server_id": "instance" in op ? op.instance.id : ("serverId" in op ? (op.serverId ?? "") : "") };
      // The op's span continues the controller's (the message's traceparent); the driver's is its child.
      const { outcome, replayed, joined } = await inTrace(delivery.traceParent, `op ${kind}`, { kind: SpanKind.CONSUMER, attributes }, () => this.executor!.execute(op));
      if (replayed) this.log.info({ op_id: opId, delivery: delivery.deliveryCount }, "op already done; re-reporting its result");
      else if (!joined) this.count(kind, outcome);
      this.pending.set(opId, { outcome, consumer });
      this.session?.sendResult(outcome);
    } catch (err) {
      if (err instanceof ExecutorClosedError) {
        consumer.nak(opId);
        return;
      }
      this.log.error({ err, op_id: opId }, "op could not be recorded; it will be redelivered");
      consumer.nak(opId, RETRY_LATER_MS);
    }
  }

  /** An op run to its end, in the process's metrics. */
  private count(kind: string, outcome: OpOutcome): void {
    const m = this.options.metrics;
    if (!m) return;
    const host = this.options.host;
    m.ops.inc({ host, kind, result: outcome.failure ? outcome.failure.code : "ok" });
    m.opDuration.observe({ host, kind }, Math.max(0, outcome.finishTime.getTime() - outcome.startTime.getTime()) / 1000);
  }

  /**
   * The NATS connection: with the controller's credential, one of this
   * agent's own (its JWT is read at each connect and reconnect, so a
   * renewed one takes over by itself); without, the shared one if given.
   */
  private async natsConnection(): Promise<NatsConnection> {
    if (this.nats && !this.nats.isClosed()) return this.nats;
    if (!this.natsJwt && this.options.nats) return this.options.nats();
    const seed = this.natsKey.seed;
    this.nats = await connect({
      servers: this.options.natsUrl.split(","),
      name: `novamesh-agent-${this.options.host}`,
      maxReconnectAttempts: -1,
      ...(this.natsJwt ? { authenticator: jwtAuthenticator(() => this.natsJwt, seed) } : {}),
      ...(this.inboxPrefix ? { inboxPrefix: this.inboxPrefix } : {}),
      ...(this.options.natsCa ? { tls: { caFile: this.options.natsCa } } : {}),
    });
    return this.nats;
  }
}
