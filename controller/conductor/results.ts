/**
 * Applies op results: the dispatcher from an op's kind to its flow's
 * result rule (conductor/flows/).
 */
import type { OpOutcome } from "../domain/ops.js";
import type { ApiError } from "../errors.js";
import { permissionDenied } from "../errors.js";
import type { PoolConnection } from "../store/db.js";
import { DEADLOCK_RETRIES, afterCommit, withTx } from "../store/db.js";
import { getInstance, lockInstances } from "../store/instances.js";
import { finishOp, lockOp, lockOps, type OpRecord } from "../store/ops.js";
import { inTrace } from "../tracing.js";
import { BatchQueue } from "../batch-queue.js";
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
 * caller to give that host once the transaction ends. `locked`: the ops of
 * the caller's batch, read and locked together.
 */
async function applyIn(conn: PoolConnection, ctx: ConductorContext, outcome: OpOutcome, fromHost: string, locked?: Map<string, OpRecord>): Promise<ApiError | null> {
  // An op read with its batch is taken once: a second result of it in the batch reads it as the first left it.
  const prefetched = locked?.get(outcome.opId);
  locked?.delete(outcome.opId);
  const op = prefetched ?? (await lockOp(conn, outcome.opId));
  if (!op) {
    const volume = await applyVolumeOpResult(conn, ctx, outcome, fromHost);
    if (volume === false) afterCommit(conn, () => ctx.log.warn({ op_id: outcome.opId }, "result for an unknown op ignored"));
    return volume === true || volume === false ? null : volume;
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
 * Applies results that arrive together in one transaction (a
 * {@link BatchQueue}: a result that comes alone is applied at once; those
 * that come while batches commit go together in the next, up to
 * `maxBatch`, at most `maxConcurrent` batches at once), host by host so that
 * batches take hosts' rows in one order. A refused result is refused alone;
 * a batch that fails as a whole is applied again result by result. The
 * transactions that apply results all pass the change log's counter, one at
 * a time (store/changes.ts): a batch passes it once.
 */
export class ResultBatcher {
  private readonly queue: BatchQueue<{ outcome: OpOutcome; host: string; subject: string }, void>;

  constructor(ctx: ConductorContext, o: { maxBatch: number; maxConcurrent: number } = { maxBatch: 64, maxConcurrent: 2 }) {
    this.queue = new BatchQueue({
      ...o,
      together: async (items) => {
        // Stable: a host's results keep their order.
        const order = items.map((_, i) => i).sort((a, b) => (items[a]!.host < items[b]!.host ? -1 : items[a]!.host > items[b]!.host ? 1 : 0));
        const refusals = await withTx(
          ctx.pool,
          async (conn) => {
            // The batch's ops and their servers are locked in two reads, not two per result.
            const ops = await lockOps(conn, items.map((r) => r.outcome.opId));
            await lockInstances(conn, [...ops.values()].map((op) => op.instanceUuid));
            const out = new Array<ApiError | null>(items.length);
            for (const i of order) out[i] = await applyIn(conn, ctx, items[i]!.outcome, items[i]!.host, ops);
            return out;
          },
          { deadlockRetries: DEADLOCK_RETRIES },
        );
        return refusals.map((r): PromiseSettledResult<void> => (r ? { status: "rejected", reason: r } : { status: "fulfilled", value: undefined }));
      },
      alone: (r) => applyOpResult(ctx, r.outcome, r.host),
      aloneConcurrency: 8,
      // Two results about one server in a batch would commit as one change: a watcher would miss the state between them.
      keyOf: (r) => r.subject,
      onBatchFailed: (err, n) => ctx.log.warn({ err, results: n }, "a batch of op results could not be applied together; applying them one by one"),
    });
  }

  add(outcome: OpOutcome, host: string, subject: string): Promise<void> {
    return this.queue.add({ outcome, host, subject });
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
  await finishOp(conn, op.opId, e, {
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
