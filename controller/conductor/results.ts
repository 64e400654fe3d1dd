import type { Logger } from "pino";
import type { PowerState } from "../domain/states.js";
import type { Fault, Instance } from "../domain/types.js";
import { finishAction, finishOpEvent } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { withTx } from "../store/db.js";
import { getInstance, updateInstance } from "../store/instances.js";
import { releaseAllocations } from "../store/nodes.js";
import type { OpRecord } from "../store/ops.js";
import { finishOp, lockOp } from "../store/ops.js";

/** An op's outcome as the agent reported it (domain form). */
export interface OpOutcome {
  readonly opId: string;
  readonly error: { readonly code: string; readonly message: string; readonly retryable: boolean } | null;
  readonly powerState: PowerState | null;
  readonly startTime: Date | null;
  readonly finishTime: Date | null;
}

export interface ApplyEffects {
  /** The instance went back to SCHEDULING (a reschedule). */
  rescheduled: boolean;
  /** Capacity was released. */
  released: boolean;
}

/**
 * Applies an op result exactly once: the op row is locked and marked DONE in
 * the same transaction as the state change, so a re-reported result (agent
 * restart, lost ack) changes nothing the second time.
 */
export async function applyOpResult(pool: Pool, outcome: OpOutcome, opts: { maxAttempts: number; log: Logger }): Promise<ApplyEffects> {
  return withTx(pool, async (conn) => {
    const effects: ApplyEffects = { rescheduled: false, released: false };
    const op = await lockOp(conn, outcome.opId);
    if (!op) {
      opts.log.warn({ opId: outcome.opId }, "result for an unknown op ignored");
      return effects;
    }
    if (op.state === "DONE") return effects;
    await finishOp(conn, op.opId, outcome.error);
    await finishOpEvent(conn, op.opId, {
      result: outcome.error ? "Error" : "Success",
      fault: outcome.error ? `${outcome.error.code}: ${outcome.error.message}` : undefined,
      finishTime: outcome.finishTime ?? undefined,
    });
    const inst = await getInstance(conn, op.instanceUuid, { lock: true });
    if (!inst) return effects;
    await apply(conn, op, inst, outcome, opts.maxAttempts, effects);
    return effects;
  });
}

function faultOf(e: NonNullable<OpOutcome["error"]>, host: string): Fault {
  return { code: e.code || "OP_FAILED", message: e.message, details: { host }, createdAt: new Date().toISOString() };
}

async function apply(
  conn: PoolConnection,
  op: OpRecord,
  inst: Instance,
  o: OpOutcome,
  maxAttempts: number,
  effects: ApplyEffects,
): Promise<void> {
  const power = o.powerState ?? undefined;
  switch (op.kind) {
    case "spawn": {
      // A delete that arrived during the build owns the instance now.
      if (inst.taskState !== "SPAWNING" || inst.host !== op.host) return;
      if (!o.error) {
        await updateInstance(conn, inst.uuid, { vmState: "ACTIVE", taskState: null, powerState: power ?? "RUNNING", launchedAt: new Date() });
        await finishAction(conn, op.actionId);
        return;
      }
      effects.released = (await releaseAllocations(conn, inst.uuid)) > 0;
      if (o.error.retryable && inst.attempt < maxAttempts) {
        await updateInstance(conn, inst.uuid, { host: null, taskState: "SCHEDULING", powerState: "NOSTATE" });
        effects.rescheduled = true;
        return;
      }
      const fault = faultOf(o.error, op.host);
      const exhausted = o.error.retryable ? `; gave up after ${inst.attempt} attempts` : "";
      await updateInstance(conn, inst.uuid, {
        vmState: "ERROR",
        taskState: null,
        host: null,
        powerState: "NOSTATE",
        fault: { ...fault, message: fault.message + exhausted },
      });
      await finishAction(conn, op.actionId, "Error");
      return;
    }
    case "destroy": {
      if (inst.vmState === "DELETED") return;
      if (o.error) {
        await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault: faultOf(o.error, op.host) });
        await finishAction(conn, op.actionId, "Error");
        return;
      }
      effects.released = (await releaseAllocations(conn, inst.uuid)) > 0;
      await updateInstance(conn, inst.uuid, { vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date() });
      await finishAction(conn, op.actionId);
      return;
    }
    case "power_on":
    case "power_off":
    case "reboot": {
      const expected = op.kind === "power_on" ? ["POWERING_ON"] : op.kind === "power_off" ? ["POWERING_OFF"] : ["REBOOTING", "REBOOTING_HARD"];
      if (!inst.taskState || !expected.includes(inst.taskState)) return;
      if (o.error) {
        // Nova: a failed power action leaves the server as it was, with the fault
        // recorded; a failed reboot leaves it in ERROR.
        if (op.kind === "reboot") {
          await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, powerState: power, fault: faultOf(o.error, op.host) });
        } else {
          await updateInstance(conn, inst.uuid, { taskState: null, powerState: power, fault: faultOf(o.error, op.host) });
        }
        await finishAction(conn, op.actionId, "Error");
        return;
      }
      const vmState = op.kind === "power_off" ? "STOPPED" : "ACTIVE";
      const powerState: PowerState = power ?? (op.kind === "power_off" ? "SHUTDOWN" : "RUNNING");
      await updateInstance(conn, inst.uuid, { vmState, taskState: null, powerState, fault: null });
      await finishAction(conn, op.actionId);
      return;
    }
  }
}
