/** Helpers for tests that need the NATS server (NOVAMESH_TEST_NATS_URL, default nats://127.0.0.1:4222). */
import { randomUUID } from "node:crypto";
import { AckPolicy, connect, type MsgHdrs, type NatsConnection } from "nats";
import { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { AgentOp } from "../ops/agent-op.js";
import { computeOpOf } from "../test-compute-op.js";

/** The NATS server tests use. */
export const TEST_NATS_URL = process.env.NOVAMESH_TEST_NATS_URL ?? "nats://127.0.0.1:4222";

/** Connects, or returns undefined if no server answers (tests then skip). */
export async function tryConnect(): Promise<NatsConnection | undefined> {
  try {
    return await connect({ servers: TEST_NATS_URL, timeout: 1_000, reconnect: false });
  } catch {
    return undefined;
  }
}

/** A stream and durable consumer of one's own, as the controller would create them. */
export interface TestOpStream {
  readonly stream: string;
  readonly consumer: string;
  readonly subject: string;
  /** Publishes an op as a ComputeOp with `Nats-Msg-Id` = op id, or raw bytes (with `headers` if given). */
  publish(op: AgentOp | Uint8Array, headers?: (subject: string, data: Uint8Array) => MsgHdrs): Promise<void>;
  /** Messages delivered and not acknowledged. */
  ackPending(): Promise<number>;
  /** Deletes the stream. */
  delete(): Promise<void>;
}

/** Creates a uniquely named stream with one durable pull consumer. */
export async function createTestOpStream(nc: NatsConnection, options: { ackWaitMs?: number } = {}): Promise<TestOpStream> {
  const id = randomUUID().replaceAll("-", "").slice(0, 12);
  const stream = `AGENT_TEST_${id}`;
  const subject = `agenttest.${id}.ops.host-a`;
  const consumer = `host-a-${id}`;
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`agenttest.${id}.ops.>`] });
  await jsm.consumers.add(stream, {
    durable_name: consumer,
    ack_policy: AckPolicy.Explicit,
    filter_subject: subject,
    ack_wait: (options.ackWaitMs ?? 30_000) * 1_000_000,
  });
  const js = nc.jetstream();
  return {
    stream,
    consumer,
    subject,
    async publish(op, headers) {
      const data = op instanceof Uint8Array ? op : ComputeOp.encode(computeOpOf(op)).finish();
      const msgID = op instanceof Uint8Array ? randomUUID() : op.opId;
      await js.publish(subject, data, { msgID, ...(headers ? { headers: headers(subject, data) } : {}) });
    },
    async ackPending() {
      return (await jsm.consumers.info(stream, consumer)).num_ack_pending;
    },
    async delete() {
      await jsm.streams.delete(stream);
    },
  };
}

/**
 * Reads an async iterator with time limits. A read that times out stays
 * pending and is the one the next read waits for, so no value is lost.
 */
export class TimedReader<T> {
  private pending: Promise<IteratorResult<T>> | undefined;

  constructor(private readonly it: AsyncIterator<T>) {}

  /** The next value; rejects with "nothing within <ms> ms" if none comes in time. */
  async next(ms: number): Promise<T> {
    const r = await this.result(ms);
    if (r.done) throw new Error("the iterator ended");
    return r.value;
  }

  /** Resolves true if the iterator ends within `ms`. */
  async ends(ms: number): Promise<boolean> {
    return (await this.result(ms)).done === true;
  }

  private async result(ms: number): Promise<IteratorResult<T>> {
    this.pending ??= this.it.next();
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = await Promise.race([
        this.pending,
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms))),
      ]);
      this.pending = undefined;
      return r;
    } finally {
      clearTimeout(timer);
    }
  }
}
