import type { TaskState } from "../domain/states.js";
import { stepDeadline } from "../domain/tasks.js";
import { setActionProgress, setActionStep } from "../store/actions.js";
import { DEADLOCK_RETRIES, withTx } from "../store/db.js";
import { getInstance, updateInstance } from "../store/instances.js";
import { getOp } from "../store/ops.js";
import type { ConductorContext } from "./context.js";
import { RESULT_RULES } from "./flows/index.js";

/**
 * Records a host's progress report on the op's action (its operation) and,
 * when the op reached its next step, moves the server's task to it (only
 * forward, only while the op is still the server's current work). The step
 * gets its own deadline from now (its configured timeout, never earlier than
 * the task's deadline so far), shown on the operation too.
 */
export async function recordOpProgress(
  ctx: ConductorContext,
  p: { opId: string; percent: number; message: string; stage: TaskState | null },
  fromHost: string,
): Promise<void> {
  await withTx(
    ctx.pool,
    async (conn) => {
      const op = await getOp(conn, p.opId);
      // Only the host the op was sent to speaks of it.
      if (!op || op.state !== "PENDING" || op.host !== fromHost) return;
      if (!p.stage) return setActionProgress(conn, op.actionId, p.percent, p.message);
      const steps = RESULT_RULES[op.kind].steps ?? [];
      const inst = await getInstance(conn, op.instanceUuid, { lock: true });
      const from = inst?.taskState ? steps.indexOf(inst.taskState) : -1;
      const to = steps.indexOf(p.stage);
      if (!inst || from < 0 || to <= from) return;
      const taskDeadline = stepDeadline(ctx.taskTimeouts, p.stage, inst.taskDeadline);
      await updateInstance(conn, inst.uuid, { taskState: p.stage, taskDeadline });
      await setActionStep(conn, op.actionId, { message: p.message, deadline: taskDeadline });
    },
    { deadlockRetries: DEADLOCK_RETRIES },
  );
}
