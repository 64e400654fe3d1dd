/**
 * The host's op feed: binds the durable JetStream pull consumer the
 * controller created (`HelloAck.stream` / `HelloAck.consumer`), decodes each
 * message as a protobuf `ComputeOp` and yields it as the agent's own op
 * (an `AgentOp`, an `AgentVolumeOp`, or an `InvalidOp` saying why it
 * cannot be run). A message stays held — kept alive with `working()` so JetStream does not redeliver it — until the
 * agent calls `ack(opId)` (the controller applied the result) or `nak(opId)`
 * (give it back, e.g. at shutdown). Undecodable messages, and messages
 * without the controller's signature, are terminated.
 *
 *   const ops = await OpConsumer.bind({ js, stream, consumer });
 *   for await (const { op } of ops) { … ops.ack(op.opId) … }
 */
import { TRACEPARENT_HEADER } from "../../controller/tracing.js";
import type { ConsumerMessages, JetStreamClient, JsMsg } from "nats";
import type { Logger } from "pino";
import { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import { opSignatureValid } from "./op-signature.js";
import type { IncomingOp } from "../ops/agent-op.js";
import { agentOpFromProto } from "../proto-convert.js";

/** Options of {@link OpConsumer.bind}. */
export interface OpConsumerOptions {
  /** JetStream client of the agent's NATS connection. */
  readonly js: JetStreamClient;
  /** Stream name, from HelloAck. */
  readonly stream: string;
  /** Durable consumer name, from HelloAck. */
  readonly consumer: string;
  /** How often held messages are kept alive with `working()` (default 5,000 ms). */
  readonly workingIntervalMs?: number;
  /** Messages held (received, not acked or naked) before iteration pauses (default 64). */
  readonly maxHeld?: number;
  /** Messages requested per pull (default 16). */
  readonly batch?: number;
  /**
   * Keys one of which must have signed each op (the controller's, from
   * HelloAck); an op without such a signature is terminated, never run.
   * Asked per message, so keys a later HelloAck names apply at once.
   * Default: none (nothing checked).
   */
  readonly trustedKeys?: () => readonly string[];
  /** Logger (default: none). */
  readonly logger?: Logger;
}

/** One op as delivered. */
export interface OpDelivery {
  /** The decoded op, or why it cannot be run. */
  readonly op: IncomingOp;
  /** JetStream delivered it before (the agent may have run it already). */
  readonly redelivered: boolean;
  /** How many times JetStream has delivered it. */
  readonly deliveryCount: number;
  /** Sequence in the stream. */
  readonly streamSequence: number;
  /** The trace the controller sent it in (W3C traceparent header), if any. */
  readonly traceParent?: string;
}

/** See the module comment. */
export class OpConsumer implements AsyncIterable<OpDelivery> {
  private readonly held = new Map<string, JsMsg[]>();
  private readonly roomWaiters: Array<() => void> = [];
  private readonly timer: NodeJS.Timeout;
  private stopping = false;

  private constructor(
    private readonly messages: ConsumerMessages,
    private readonly maxHeld: number,
    workingIntervalMs: number,
    private readonly logger: Logger | undefined,
    private readonly trustedKeys: () => readonly string[],
  ) {
    this.timer = setInterval(() => this.keepAlive(), workingIntervalMs);
    this.timer.unref();
  }

  /**
   * Binds the existing durable consumer and starts pulling. Rejects if the
   * stream or consumer does not exist.
   */
  static async bind(options: OpConsumerOptions): Promise<OpConsumer> {
    const consumer = await options.js.consumers.get(options.stream, options.consumer);
    const messages = await consumer.consume({ max_messages: options.batch ?? 16 });
    const self = new OpConsumer(messages, options.maxHeld ?? 64, options.workingIntervalMs ?? 5_000, options.logger, options.trustedKeys ?? (() => []));
    void self.watchStatus();
    return self;
  }

  /** Messages held now. */
  get heldCount(): number {
    let n = 0;
    for (const msgs of this.held.values()) n += msgs.length;
    return n;
  }

  /** Whether a message of `opId` is held. */
  isHeld(opId: string): boolean {
    return this.held.has(opId);
  }

  /**
   * Ops in delivery order. Ends after {@link stop} (or if the NATS
   * connection closes). Pauses while `maxHeld` messages are held.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<OpDelivery> {
    for await (const msg of this.messages) {
      if (this.stopping) {
        msg.nak();
        continue;
      }
      if (!opSignatureValid(this.trustedKeys(), msg.subject, msg.data, msg.headers)) {
        this.logger?.error({ stream_seq: msg.seq, subject: msg.subject }, "op without the controller's signature refused; terminating it");
        msg.term();
        continue;
      }
      let op: IncomingOp;
      try {
        op = agentOpFromProto(ComputeOp.decode(msg.data));
        if (!op.opId) throw new Error("op_id is empty");
      } catch (err) {
        this.logger?.error({ err, stream_seq: msg.seq, subject: msg.subject }, "undecodable op message; terminating it");
        msg.term();
        continue;
      }
      const list = this.held.get(op.opId) ?? [];
      list.push(msg);
      this.held.set(op.opId, list);
      yield {
        op,
        redelivered: msg.redelivered,
        deliveryCount: msg.info.deliveryCount,
        streamSequence: msg.seq,
        ...(msg.headers?.has(TRACEPARENT_HEADER) ? { traceParent: msg.headers.get(TRACEPARENT_HEADER) } : {}),
      };
      while (!this.stopping && this.heldCount >= this.maxHeld) {
        await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
      }
    }
  }

  /** Acknowledges every held message of `opId`; false if none was held. */
  ack(opId: string): boolean {
    return this.release(opId, (m) => m.ack());
  }

  /** Gives every held message of `opId` back for redelivery after `delayMs`. */
  nak(opId: string, delayMs?: number): boolean {
    return this.release(opId, (m) => m.nak(delayMs));
  }

  /** Gives every held message back (at shutdown). */
  nakAll(delayMs?: number): void {
    for (const opId of [...this.held.keys()]) this.nak(opId, delayMs);
  }

  /**
   * Stops pulling. Iteration ends at its next step; messages received but
   * not yet yielded are given back (nak) as it steps over them. Held
   * messages stay held: ack or nak them afterwards.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of this.roomWaiters.splice(0)) wake();
    // Not close(): its promise settles only once the iterator is stepped,
    // and the caller may not be stepping it any more.
    this.messages.stop();
  }

  /** Stops the keep-alive timer (after {@link stop} and the last ack/nak). */
  close(): void {
    clearInterval(this.timer);
  }

  private release(opId: string, how: (m: JsMsg) => void): boolean {
    const msgs = this.held.get(opId);
    if (!msgs) return false;
    this.held.delete(opId);
    for (const m of msgs) how(m);
    for (const wake of this.roomWaiters.splice(0)) wake();
    return true;
  }

  private keepAlive(): void {
    for (const msgs of this.held.values()) for (const m of msgs) m.working();
  }

  private async watchStatus(): Promise<void> {
    for await (const s of await this.messages.status()) {
      if (s.type === "heartbeats_missed" || s.type === "consumer_not_found" || s.type === "stream_not_found") {
        this.logger?.warn({ event: s.type, data: s.data }, "op consumer status");
      }
    }
  }
}
