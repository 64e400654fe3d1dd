import { randomUUID } from "node:crypto";
import type { PowerState, VmState } from "../domain/states.js";
import type { Instance } from "../domain/types.js";
import { finishAction, insertAction, instantEvent } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import type { Logger } from "pino";
import { DEADLOCK_RETRIES, withTx } from "../store/db.js";
import { getInstance, powerStatesOnHosts, updateInstance } from "../store/instances.js";
import { lockNodesNotLocked, recordReports } from "../store/nodes.js";
import { recordPools } from "../store/volume-pools.js";
import type { ReportedPool } from "../domain/volume.js";

export interface HostReport {
  readonly host: string;
  readonly vcpus: number;
  readonly memoryMb: number;
  readonly diskGb: number;
  readonly freeMemoryMb: number;
  readonly freeDiskGb: number;
  readonly instances: ReadonlyMap<string, PowerState>;
  /** When the agent took the report. */
  readonly time: Date;
  /** Its volume pools now (their set is the hello's; a new name is added). */
  readonly volumePools: readonly ReportedPool[];
}

/**
 * The vm_state a server moves to when its host reports `power` while no
 * task runs (Nova's _sync_power_states, with the hypervisor as the
 * authority): a guest that shut down or crashed on its own is STOPPED, one
 * started, paused or suspended behind the API's back shows as such. A
 * server whose virtual machine vanished from its host is ERROR. Returns
 * null when the vm_state stays.
 */
export function syncedVmState(vm: VmState, power: PowerState): VmState | null {
  if (vm !== "ACTIVE" && vm !== "STOPPED" && vm !== "PAUSED" && vm !== "SUSPENDED") return null;
  const target: VmState | null =
    power === "RUNNING"
      ? "ACTIVE"
      : power === "SHUTDOWN" || power === "CRASHED"
        ? "STOPPED"
        : power === "PAUSED"
          ? "PAUSED"
          : power === "SUSPENDED"
            ? "SUSPENDED"
            : power === "NOSTATE"
              ? "ERROR"
              : null;
  return target === vm ? null : target;
}

/**
 * Applies resource reports: each host's heartbeat and capacity, and the
 * power state of every instance the controller places on it. An instance
 * with a task in flight is left to its task, and so is one that changed
 * after the report was taken (the report may predate an op's result). A
 * change is recorded as a `sync_power_state` action with one event saying
 * what the host reported.
 *
 * Many at once: one transaction records the heartbeats of every host whose
 * row is not locked just now (`SKIP LOCKED`, so the batch never waits while
 * holding other hosts' rows, and never deadlocks with a placement claiming
 * them); a locked host's heartbeat is written on its own, as before. One
 * statement reads every host's servers; only a server whose power state
 * differs takes a transaction of its own. Each report settles on its own:
 * one host's failure is that host's alone. Returns, per report, how many
 * instances changed or why it failed.
 */
export async function applyReports(pool: Pool, reports: readonly HostReport[], log?: Logger): Promise<PromiseSettledResult<number>[]> {
  const hosts = reports.map((r) => r.host);
  const recorded = await withTx(
    pool,
    async (conn) => {
      const free = await lockNodesNotLocked(conn, hosts);
      await recordReports(conn, reports.filter((r) => free.has(r.host)));
      return free;
    },
    { deadlockRetries: DEADLOCK_RETRIES },
  ).catch((err: unknown) => {
    // Every heartbeat is then written on its own below (and fails there, for its host alone, if it must).
    log?.warn({ err, hosts: hosts.length }, "a batch of host reports could not be recorded together; recording them one by one");
    return new Set<string>();
  });
  const onHosts = await powerStatesOnHosts(pool, hosts).catch((err: unknown) => {
    // Each report then reads its own host's servers below (and fails there, for its host alone, if it must).
    log?.warn({ err, hosts: hosts.length }, "the servers of a batch of reporting hosts could not be read together; reading them host by host");
    return null;
  });
  return Promise.allSettled(
    reports.map(async (r) => {
      if (!recorded.has(r.host)) await recordReports(pool, [r]);
      if (r.volumePools.length) await recordPools(pool, r.host, r.volumePools, { replace: false });
      const rows = onHosts ?? (await powerStatesOnHosts(pool, [r.host]));
      return syncPowerStates(pool, r, rows.get(r.host) ?? []);
    }),
  );
}

async function syncPowerStates(pool: Pool, r: HostReport, rows: readonly { uuid: string; powerState: PowerState; taskState: unknown }[]): Promise<number> {
  const stale = rows.filter((row) => row.taskState === null && (r.instances.get(row.uuid) ?? "NOSTATE") !== row.powerState);
  if (stale.length === 0) return 0;
  return withTx(pool, async (conn) => {
    let changed = 0;
    for (const row of stale) {
      // Re-check under the row lock: a task may have started since the read.
      const inst = await getInstance(conn, row.uuid, { lock: true });
      if (!inst || inst.taskState !== null || inst.host !== r.host || inst.deletedAt) continue;
      if (inst.updatedAt.getTime() >= r.time.getTime()) continue;
      const reported = r.instances.get(row.uuid) ?? "NOSTATE";
      if (inst.powerState === reported) continue;
      await syncOne(conn, inst, reported, r.host);
      changed++;
    }
    return changed;
  }, { deadlockRetries: DEADLOCK_RETRIES });
}

/**
 * Gathers reports arriving together (thousands of hosts report every few
 * seconds) and applies them in batches of up to `maxBatch`, waiting at most
 * `maxWaitMs` for a batch to fill: two statements per batch instead of two
 * per report. Each report's promise settles with its own outcome.
 */
export class ReportBatcher {
  private queue: { report: HostReport; resolve: (changed: number) => void; reject: (err: unknown) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly log?: Logger,
    private readonly o: { maxBatch: number; maxWaitMs: number } = { maxBatch: 256, maxWaitMs: 25 },
  ) {}

  add(report: HostReport): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ report, resolve, reject });
      if (this.queue.length >= this.o.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.o.maxWaitMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const batch = this.queue.splice(0, this.o.maxBatch);
    if (this.queue.length) this.timer = setTimeout(() => this.flush(), 0);
    if (!batch.length) return;
    applyReports(
      this.pool,
      batch.map((b) => b.report),
      this.log,
    ).then(
      (results) =>
        results.forEach((res, i) => {
          if (res.status === "fulfilled") batch[i]!.resolve(res.value);
          else batch[i]!.reject(res.reason);
        }),
      (err: unknown) => batch.forEach((b) => b.reject(err)),
    );
  }
}

async function syncOne(conn: PoolConnection, inst: Instance, reported: PowerState, host: string): Promise<void> {
  const vm = syncedVmState(inst.vmState, reported);
  const what = `host ${host} reports power state ${reported} (was ${inst.powerState})${vm ? `; vm_state ${inst.vmState} -> ${vm}` : ""}`;
  const actionId = await insertAction(conn, {
    instanceUuid: inst.uuid,
    requestId: `sync-${randomUUID()}`,
    projectId: inst.projectId,
    action: "sync_power_state",
  });
  await instantEvent(conn, { actionId, event: "power_state_sync", host, result: "Success", details: what });
  await finishAction(conn, actionId);
  const fault =
    vm === "ERROR"
      ? { code: "INSTANCE_VANISHED", message: `the virtual machine is gone from host ${host}`, details: { host }, createdAt: new Date().toISOString() }
      : undefined;
  await updateInstance(conn, inst.uuid, { powerState: reported, ...(vm ? { vmState: vm } : {}), ...(fault ? { fault } : {}) });
}
