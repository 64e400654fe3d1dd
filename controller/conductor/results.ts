/**
 * Applies op results: the dispatcher from an op's kind to its flow's
 * result rule (conductor/flows/).
 */
import type { OpOutcome } from "../domain/ops.js";
import type { ApiError } from "../errors.js";
import { permissionDenied } from "../errors.js";
import { finishOpEvent } from "../store/actions.js";
import type { PoolConnection } from "../store/db.js";
import { DEADLOCK_RETRIES, afterCommit, withTx } from "../store/db.js";
import { getInstance } from "../store/instances.js";
import { finishOp, lockOp, type OpRecord } from "../store/ops.js";
import { inTrace } from "../tracing.js";
import type { ConductorContext } from "./context.js";
import { Tx } from "./context.js";
import { ResultContext } from "./flow.js";
import { RESULT_RULES } from "./flows/index.js";
import { applyVolumeOpResult } from "./volumes/results.js";

/**
 * Applies an op result exactly once: the op row is locked and marked DONE in
 * the same transaction as the state change, so a re-reported result (agent
 * restart, lost ack) changes nothing the second time. A result that comes
 * after its task was ended (deleted, timed out, taken over) changes only the
 * op's own record. A transaction InnoDB rolls back to break a deadlock runs
 * again (it is all in the database), so a deadlock costs no reconnect.
 * Only the host the op was sent to may report it: a result from any other
 * is PERMISSION_DENIED and changes nothing.
 */
export async function applyOpResult(ctx: ConductorContext, outcome: OpOutcome, fromHost: string): Promise<void> {
  const refused = await withTx(ctx.pool, (conn) => applyIn(conn, ctx, outcome, fromHost), { deadlockRetries: DEADLOCK_RETRIES });
  if (refused) throw refused;
}

/**
 * One result in the caller's transaction. A result the host may not report
 * is refused before anything is written: the refusal is returned, for the
 * caller to give that host once the transaction ends.
 */
async function applyIn(conn: PoolConnection, ctx: ConductorContext, outcome: OpOutcome, fromHost: string): Promise<ApiError | null> {
  const op = await lockOp(conn, outcome.opId);
  if (!op && (await applyVolumeOpResult(conn, ctx, outcome, fromHost))) return null;
  if (!op) {
    afterCommit(conn, () => ctx.log.warn({ op_id: outcome.opId }, "result for an unknown op ignored"));
    return null;
  }
  const fields = { op_id: op.opId, request_id: op.requestId, server_id: op.instanceUuid, host: op.host, op: op.kind };
  if (op.host !== fromHost) {
    afterCommit(conn, () => ctx.log.warn({ ...fields, from_host: fromHost }, "result from another host than the op's refused"));
    return permissionDenied(`op ${op.opId} was sent to another host; only that host may report its result`);
  }
  if (op.state === "DONE") return null;
  // The result's span continues the trace the op was sent in; ops a flow sends next are its children.
  await inTrace(op.traceParent, `result ${op.kind}`, { attributes: { "novamesh.op_id": op.opId, "novamesh.server_id": op.instanceUuid, "novamesh.host": op.host } }, () =>
    applyResult(conn, ctx, op, outcome, fields),
  );
  return null;
}

/**
 * Applies results that arrive together in one transaction: while one batch
 * commits, the results that come in wait and then go together in the next,
 * up to `maxBatch` (at most `maxConcurrent` batches at once). A result that
 * comes alone is applied at once, with no wait. Each result keeps its own
 * outcome: a refused one is refused alone; a batch that fails as a whole
 * (an error in one result's rule, a deadlock past its retries) is applied
 * again result by result, so one result's failure is its own.
 *
 * The transactions of a result each take the change log's counter, which
 * every change in the cloud passes one at a time: a batch takes it once.
 */
export class ResultBatcher {
  private queue: { outcome: OpOutcome; host: string; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private running = 0;

  constructor(
    private readonly ctx: ConductorContext,
    private readonly o: { maxBatch: number; maxConcurrent: number } = { maxBatch: 64, maxConcurrent: 2 },
  ) {}

  add(outcome: OpOutcome, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ outcome, host, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.queue.length) {
      const batch = this.queue.splice(0, this.o.maxBatch);
      this.running++;
      void this.apply(batch).finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async apply(batch: ResultBatcher["queue"]): Promise<void> {
    if (batch.length > 1) {
      // Host by host (stable: a host's results keep their order), so that batches take hosts' rows in one order.
      batch.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
      try {
        const refusals = await withTx(
          this.ctx.pool,
          async (conn) => {
            const out: (ApiError | null)[] = [];
            for (const b of batch) out.push(await applyIn(conn, this.ctx, b.outcome, b.host));
            return out;
          },
          { deadlockRetries: DEADLOCK_RETRIES },
        );
        batch.forEach((b, i) => (refusals[i] ? b.reject(refusals[i]) : b.resolve()));
        return;
      } catch (err) {
        this.ctx.log.warn({ err, results: batch.length }, "a batch of op results could not be applied together; applying them one by one");
      }
    }
    await Promise.all(batch.map((b) => applyOpResult(this.ctx, b.outcome, b.host).then(b.resolve, b.reject)));
  }
}

/** What a result does, in its transaction: the op and its event finished, then its flow's rule. */
async function applyResult(conn: PoolConnection, ctx: ConductorContext, op: OpRecord, outcome: OpOutcome, fields: Record<string, string>): Promise<void> {
  const e = outcome.error;
  afterCommit(conn, () => {
    ctx.log.info({ ...fields, result: e ? e.code : "ok" }, e ? `op failed: ${e.message}` : "op done");
    ctx.metrics?.opResults.inc({ kind: op.kind, result: e ? e.code : "ok" });
    ctx.metrics?.opDuration.observe({ kind: op.kind }, Math.max(0, Date.now() - op.createdAt.getTime()) / 1000);
  });
  await finishOp(conn, op.opId, e);
  await finishOpEvent(conn, op.opId, {
    result: e ? "Error" : "Success",
    fault: e ? `${e.code}: ${e.message}` : undefined,
    details: outcome.note || undefined,
    finishTime: outcome.finishTime ?? undefined,
  });
  const inst = await getInstance(conn, op.instanceUuid, { lock: true });
  const rule = RESULT_RULES[op.kind];
  if (!inst?.taskState || !rule.tasks.includes(inst.taskState)) return;
  await rule.apply?.(new ResultContext(new Tx(conn, ctx), op, inst, outcome));
}
