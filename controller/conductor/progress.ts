import type { TaskState } from "../domain/states.js";
import { TASK_STEPS } from "../domain/states.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { stepDeadline } from "../domain/tasks.js";
import type { Pool } from "../store/db.js";
import { DEADLOCK_RETRIES, select, withTx } from "../store/db.js";
import { setActionProgress, setActionStep } from "../store/actions.js";
import { getInstance, updateInstance } from "../store/instances.js";

/**
 * Records a host's progress report on the op's action (its operation) and,
 * when the op reached its next step, moves the server's task to it (only
 * forward, only while the op is still the server's current work). The step
 * gets its own deadline from now (its configured timeout, never earlier than
 * the task's deadline so far), shown on the operation too. Returns whether
 * the server changed.
 */
export async function recordOpProgress(
  pool: Pool,
  p: { opId: string; percent: number; message: string; stage: TaskState | null },
  taskTimeouts: TaskTimeouts,
): Promise<boolean> {
  return withTx(pool, async (conn) => {
    const rows = await select<{ action_id: number; state: string; kind: string; instance_uuid: string }>(
      conn,
      "SELECT action_id, state, kind, instance_uuid FROM compute_ops WHERE op_id = ?",
      [p.opId],
    );
    const op = rows[0];
    if (!op || op.state !== "PENDING") return false;
    if (!p.stage) {
      await setActionProgress(conn, Number(op.action_id), p.percent, p.message);
      return false;
    }
    const steps = TASK_STEPS[op.kind] ?? [];
    const inst = await getInstance(conn, op.instance_uuid, { lock: true });
    const from = inst?.taskState ? steps.indexOf(inst.taskState) : -1;
    const to = steps.indexOf(p.stage);
    if (!inst || from < 0 || to <= from) return false;
    const taskDeadline = stepDeadline(taskTimeouts, p.stage, inst.taskDeadline);
    await updateInstance(conn, inst.uuid, { taskState: p.stage, taskDeadline });
    await setActionStep(conn, Number(op.action_id), { message: p.message, deadline: taskDeadline });
    return true;
  }, { deadlockRetries: DEADLOCK_RETRIES });
}
