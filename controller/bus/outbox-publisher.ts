import type { JetStreamClient } from "nats";
import type { Logger } from "pino";
import type { Pool } from "../store/db.js";
import { withTx } from "../store/db.js";
import { claimOutbox, deleteOutbox } from "../store/ops.js";
import { PumpWorker } from "../pump.js";
import type { OpSigner } from "./op-signer.js";
import { SpanKind, TRACEPARENT_HEADER, currentTraceParent, inTrace } from "../tracing.js";

/**
 * Drains the outbox to JetStream. Rows are locked with SKIP LOCKED so several
 * controllers drain in parallel without sending a row twice; each message
 * carries Nats-Msg-Id = op_id, so a re-send after a crash between publish and
 * delete is dropped by JetStream's de-duplication. A row is deleted only after
 * JetStream acknowledged it. Every op is signed (OpSigner): agents run only
 * ops with the deployment's signature.
 */
export class OutboxPublisher extends PumpWorker {
  constructor(
    private readonly pool: Pool,
    private readonly js: JetStreamClient,
    private readonly signer: OpSigner,
    private readonly log: Logger,
    private readonly opts: { pollMs: number; batch: number } = { pollMs: 500, batch: 200 },
  ) {
    super(opts.pollMs);
  }

  protected async step(): Promise<boolean> {
    return (await this.drainOnce()) === this.opts.batch;
  }

  protected failed(err: unknown): boolean {
    this.log.warn({ err }, "outbox drain failed; will retry");
    return false;
  }

  /** Publishes one batch; returns how many rows it sent. */
  async drainOnce(): Promise<number> {
    return withTx(this.pool, async (conn) => {
      const rows = await claimOutbox(conn, this.opts.batch);
      if (rows.length === 0) return 0;
      await Promise.all(
        rows.map((r) =>
          // An op sent in a trace is published in a span of it; the message's traceparent header makes the agent's span its child.
          inTrace(r.traceParent, "publish op", { kind: SpanKind.PRODUCER, attributes: { "novamesh.op_id": r.msgId, "messaging.destination.name": r.subject } }, () => {
            const headers = this.signer.sign(r.subject, r.payload);
            const traceParent = currentTraceParent();
            if (traceParent) headers.set(TRACEPARENT_HEADER, traceParent);
            return this.js.publish(r.subject, r.payload, { msgID: r.msgId, headers });
          }),
        ),
      );
      await deleteOutbox(
        conn,
        rows.map((r) => r.id),
      );
      this.log.debug({ count: rows.length }, "outbox published");
      return rows.length;
    });
  }

}
