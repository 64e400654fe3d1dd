import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { headers, nkeys, type MsgHdrs, type NatsConnection } from "nats";
import { OP_SIGNATURE_HEADER, OP_SIGNING_KEY_HEADER, opSignedBytes } from "../../controller/domain/ops.js";
import { testInstance } from "../drivers/test-instance.js";
import { testOp } from "../ops/test-ops.js";
import { createTestOpStream, TimedReader, tryConnect, TEST_NATS_URL, type TestOpStream } from "./nats-test-util.js";
import { OpConsumer, type OpConsumerOptions, type OpDelivery } from "./op-consumer.js";

let nc: NatsConnection | undefined;
before(async () => {
  nc = await tryConnect();
});
after(async () => {
  await nc?.drain();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("OpConsumer (real NATS JetStream)", () => {
  /** A fresh stream and a bound OpConsumer; both are cleaned up afterwards. */
  async function withConsumer(
    options: { ackWaitMs?: number } & Partial<OpConsumerOptions>,
    fn: (s: TestOpStream, consumer: OpConsumer, reader: TimedReader<OpDelivery>) => Promise<void>,
    beforeBind?: (s: TestOpStream) => Promise<void>,
  ): Promise<void> {
    if (!nc) throw new Error(`NATS not reachable at ${TEST_NATS_URL}`);
    const s = await createTestOpStream(nc, options);
    try {
      await beforeBind?.(s);
      const consumer = await OpConsumer.bind({ ...options, js: nc.jetstream(), stream: s.stream, consumer: s.consumer });
      try {
        await fn(s, consumer, new TimedReader(consumer[Symbol.asyncIterator]()));
      } finally {
        await consumer.stop();
        consumer.nakAll();
        consumer.close();
      }
    } finally {
      await s.delete();
    }
  }

  test("yields decoded ops in order and an acked op is not delivered again", async () => {
    const ops = [1, 2, 3].map(() => testOp(testInstance(), { kind: "spawn" }));
    await withConsumer(
      { ackWaitMs: 1_000 },
      async (s, consumer, reader) => {
        const got: OpDelivery[] = [];
        for (let i = 0; i < 3; i++) got.push(await reader.next(2_000));
        assert.deepEqual(got.map((d) => d.op.opId), ops.map((o) => o.opId));
        assert.deepEqual(got[0]!.op, ops[0], "the op arrives as it was sent, instance and arguments");
        assert.equal(got[0]!.redelivered, false);
        for (const op of ops) assert.equal(consumer.ack(op.opId), true);
        assert.equal(consumer.ack(ops[0]!.opId), false, "nothing left to ack");
        await assert.rejects(reader.next(1_500), /nothing within/, "acked ops are not redelivered after ack_wait");
        assert.equal(await s.ackPending(), 0);
      },
      async (s) => {
        for (const op of ops) await s.publish(op);
      },
    );
  });

  test("a held op is kept alive past ack_wait; a naked op is redelivered", async () => {
    const op = testOp(testInstance(), { kind: "spawn" });
    await withConsumer(
      { ackWaitMs: 1_000, workingIntervalMs: 300 },
      async (_s, consumer, reader) => {
        assert.equal((await reader.next(2_000)).op.opId, op.opId);
        await assert.rejects(reader.next(2_500), /nothing within/, "no redelivery while held (2.5 × ack_wait)");
        assert.equal(consumer.nak(op.opId), true);
        const again = await reader.next(2_000);
        assert.equal(again.op.opId, op.opId);
        assert.equal(again.redelivered, true);
        assert.equal(again.deliveryCount, 2);
        consumer.ack(op.opId);
      },
      (s) => s.publish(op),
    );
  });

  test("without keep-alive an unacked op would be redelivered (the test above can fail)", async () => {
    const op = testOp(testInstance(), { kind: "spawn" });
    await withConsumer(
      { ackWaitMs: 1_000, workingIntervalMs: 60_000 },
      async (_s, consumer, reader) => {
        await reader.next(2_000);
        const again = await reader.next(3_000);
        assert.equal(again.redelivered, true);
        consumer.ack(op.opId);
      },
      (s) => s.publish(op),
    );
  });

  test("an undecodable message is terminated and the next op still arrives", async () => {
    const op = testOp(testInstance(), { kind: "destroy" });
    await withConsumer(
      {},
      async (s, consumer, reader) => {
        assert.equal((await reader.next(2_000)).op.opId, op.opId);
        consumer.ack(op.opId);
        await sleep(200);
        assert.equal(await s.ackPending(), 0, "the bad message is not pending either");
      },
      async (s) => {
        await s.publish(new Uint8Array([0xff, 0xff, 0xff, 0x01]));
        await s.publish(op);
      },
    );
  });

  test("iteration pauses at maxHeld and resumes when an op is acked; stop ends it", async () => {
    const ops = [1, 2, 3].map(() => testOp(testInstance(), { kind: "spawn" }));
    await withConsumer(
      { maxHeld: 2 },
      async (_s, consumer, reader) => {
        await reader.next(2_000);
        await reader.next(2_000);
        await assert.rejects(reader.next(300), /nothing within/, "paused with two held");
        consumer.ack(ops[0]!.opId);
        assert.equal((await reader.next(2_000)).op.opId, ops[2]!.opId);
        await consumer.stop();
        assert.equal(await reader.ends(2_000), true);
      },
      async (s) => {
        for (const op of ops) await s.publish(op);
      },
    );
  });

  test("with trusted keys, only ops signed by one of them over their own subject arrive; the rest are terminated", async () => {
    const controllerKey = nkeys.createOperator();
    const otherKey = nkeys.createOperator();
    const signedBy =
      (key: typeof controllerKey, overSubject?: string) =>
      (subject: string, data: Uint8Array): MsgHdrs => {
        const h = headers();
        h.set(OP_SIGNATURE_HEADER, Buffer.from(key.sign(opSignedBytes(overSubject ?? subject, data))).toString("base64url"));
        h.set(OP_SIGNING_KEY_HEADER, key.getPublicKey());
        return h;
      };
    const unsigned = testOp(testInstance(), { kind: "destroy" });
    const forged = testOp(testInstance(), { kind: "destroy" });
    const replayed = testOp(testInstance(), { kind: "destroy" });
    const genuine = testOp(testInstance(), { kind: "destroy" });
    await withConsumer(
      { trustedKeys: () => [controllerKey.getPublicKey()] },
      async (s, consumer, reader) => {
        assert.equal((await reader.next(2_000)).op.opId, genuine.opId, "the first op to arrive is the signed one");
        consumer.ack(genuine.opId);
        await assert.rejects(reader.next(1_000), /nothing within/);
        assert.equal(await s.ackPending(), 0, "the refused ones are terminated, not pending");
      },
      async (s) => {
        await s.publish(unsigned);
        await s.publish(forged, signedBy(otherKey));
        await s.publish(replayed, signedBy(controllerKey, "agenttest.elsewhere.ops.host-b"));
        await s.publish(genuine, signedBy(controllerKey));
      },
    );
  });

  test("binding a consumer that does not exist rejects", async () => {
    if (!nc) throw new Error(`NATS not reachable at ${TEST_NATS_URL}`);
    await assert.rejects(OpConsumer.bind({ js: nc.jetstream(), stream: "NO_SUCH_STREAM_XYZ", consumer: "nope" }));
  });
});
