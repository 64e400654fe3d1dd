import type { Pool } from "../store/db.js";
import { select } from "../store/db.js";
import { setActionProgress } from "../store/actions.js";

/** Records a host's progress report on the op's action (its operation). */
export async function recordOpProgress(pool: Pool, opId: string, percent: number, message: string): Promise<void> {
  const rows = await select<{ action_id: number; state: string }>(pool, "SELECT action_id, state FROM compute_ops WHERE op_id = ?", [opId]);
  const op = rows[0];
  if (!op || op.state !== "PENDING") return;
  await setActionProgress(pool, Number(op.action_id), percent, message);
}
