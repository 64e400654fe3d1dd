import type { PowerState } from "../domain/states.js";
import type { Pool } from "../store/db.js";
import { select, withTx } from "../store/db.js";
import { updateInstance } from "../store/instances.js";
import { recordReport } from "../store/nodes.js";

export interface HostReport {
  readonly host: string;
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  readonly freeMemoryMb: number;
  readonly freeDiskGb: number;
  readonly instances: ReadonlyMap<string, PowerState>;
}

/**
 * Applies a resource report: the heartbeat and capacity, and the power state
 * of every instance the controller places on this host. The hypervisor is the
 * authority on power state; an instance with a task in flight is left to its
 * task, and one the host no longer has reads NOSTATE. Returns how many
 * instances changed.
 */
export async function applyReport(pool: Pool, r: HostReport): Promise<number> {
  await recordReport(pool, r.host, r);
  const rows = await select<{ uuid: string; power_state: PowerState; task_state: string | null }>(
    pool,
    "SELECT uuid, power_state, task_state FROM instances WHERE host = ? AND deleted_at IS NULL AND vm_state <> 'BUILDING'",
    [r.host],
  );
  const stale = rows.filter((row) => row.task_state === null && (r.instances.get(row.uuid) ?? "NOSTATE") !== row.power_state);
  if (stale.length === 0) return 0;
  return withTx(pool, async (conn) => {
    let changed = 0;
    for (const row of stale) {
      // Re-check under the row lock: a task may have started since the read.
      const [cur] = await select<{ task_state: string | null; power_state: string }>(
        conn,
        "SELECT task_state, power_state FROM instances WHERE uuid = ? FOR UPDATE",
        [row.uuid],
      );
      const reported = r.instances.get(row.uuid) ?? "NOSTATE";
      if (!cur || cur.task_state !== null || cur.power_state === reported) continue;
      await updateInstance(conn, row.uuid, { powerState: reported });
      changed++;
    }
    return changed;
  });
}
