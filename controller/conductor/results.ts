/**
 * Applies op results: the dispatcher from an op's kind to its flow's
 * result rule (conductor/flows/).
 */
import type { OpOutcome } from "../domain/ops.js";
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
  await withTx(
    ctx.pool,
    async (conn) => {
      const op = await lockOp(conn, outcome.opId);
      if (!op && (await applyVolumeOpResult(conn, ctx, outcome, fromHost))) return;
      if (!op) {
        ctx.log.warn({ op_id: outcome.opId }, "result for an unknown op ignored");
        return;
      }
      const fields = { op_id: op.opId, request_id: op.requestId, server_id: op.instanceUuid, host: op.host, op: op.kind };
      if (op.host !== fromHost) {
        ctx.log.warn({ ...fields, from_host: fromHost }, "result from another host than the op's refused");
        throw permissionDenied(`op ${op.opId} was sent to another host; only that host may report its result`);
      }
      if (op.state === "DONE") return;
      // The result's span continues the trace the op was sent in; ops a flow sends next are its children.
      await inTrace(op.traceParent, `result ${op.kind}`, { attributes: { "novamesh.op_id": op.opId, "novamesh.server_id": op.instanceUuid, "novamesh.host": op.host } }, () =>
        applyResult(conn, ctx, op, outcome, fields),
      );
    },
    { deadlockRetries: DEADLOCK_RETRIES },
  );
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
