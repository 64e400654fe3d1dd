import type { Logger } from "pino";
import { dispatchOp } from "../conductor/dispatch.js";
import type { Instance } from "../domain/types.js";
import { findAction, finishAction, instantEvent } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { select, withTx } from "../store/db.js";
import { getInstance, updateInstance } from "../store/instances.js";
import { claim } from "../store/nodes.js";
import type { HostCache } from "./host-cache.js";
import type { Pipeline, Placement } from "./pipeline.js";
import type { RequestSpec } from "./types.js";
import { Pump } from "../pump.js";

export interface SchedulerWorkerOptions {
  readonly subjectPrefix: string;
  readonly serviceDownTimeSeconds: number;
  readonly maxAttempts: number;
  /** Instances locked and placed per transaction. */
  readonly batch: number;
  /** Poll for work left by other controllers or a crash, ms. */
  readonly pollMs: number;
}

/**
 * Places instances waiting in task SCHEDULING. Any number of controllers run
 * this at once: rows are taken with SELECT … FOR UPDATE SKIP LOCKED, choosing
 * is in memory, and the claim is a conditional UPDATE in the same transaction
 * as the spawn op's outbox row.
 */
export class SchedulerWorker {
  private readonly pump: Pump;

  constructor(
    private readonly pool: Pool,
    private readonly hosts: HostCache,
    private readonly pipeline: Pipeline,
    private readonly log: Logger,
    private readonly opts: SchedulerWorkerOptions,
    private readonly onDispatched: () => void,
  ) {
    this.pump = new Pump(
      async () => {
        const n = await this.scheduleBatch();
        if (n > 0) this.onDispatched();
        return n === this.opts.batch;
      },
      {
        pollMs: opts.pollMs,
        onError: (err) => {
          this.hosts.invalidate();
          const code = (err as { code?: string }).code;
          if (code === "ER_LOCK_DEADLOCK" || code === "ER_LOCK_WAIT_TIMEOUT") return true;
          this.log.warn({ err }, "scheduling pass failed; will retry");
          return false;
        },
      },
    );
  }

  start(): void {
    this.pump.start();
  }

  kick(): void {
    this.pump.kick();
  }

  stop(): Promise<void> {
    return this.pump.stop();
  }

  /** Places one batch; returns how many instances it took. */
  async scheduleBatch(): Promise<number> {
    return withTx(this.pool, async (conn) => {
      const rows = await select<{ uuid: string }>(
        conn,
        `SELECT uuid FROM instances WHERE task_state = 'SCHEDULING' AND deleted_at IS NULL
         ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
        [this.opts.batch],
      );
      for (const r of rows) {
        const inst = await getInstance(conn, r.uuid);
        if (inst) await this.placeOne(conn, inst);
      }
      return rows.length;
    });
  }

  private async placeOne(conn: PoolConnection, inst: Instance): Promise<void> {
    const action = await findAction(conn, inst.uuid, inst.requestId);
    if (!action) throw new Error(`instance ${inst.uuid} has no create action`);
    const spec: RequestSpec = {
      instanceUuid: inst.uuid,
      resources: { vcpus: inst.flavor.vcpus, memoryMb: inst.flavor.ramMb, diskGb: inst.flavor.diskGb },
      ignoreHosts: new Set(inst.triedHosts),
    };
    const placement = this.pipeline.place(await this.hosts.get(), spec);
    const upSince = new Date(Date.now() - this.opts.serviceDownTimeSeconds * 1000);
    let lostClaims = 0;
    for (const host of placement.candidates) {
      if (!(await claim(conn, host.id, inst.uuid, spec.resources, upSince))) {
        // The view was stale: another scheduler (or a report) got there first.
        lostClaims++;
        this.hosts.invalidate();
        continue;
      }
      this.hosts.consume(host.host, spec.resources);
      const attempt = inst.attempt + 1;
      const placed = await updateInstance(conn, inst.uuid, {
        host: host.host,
        taskState: "SPAWNING",
        attempt,
        triedHosts: [...inst.triedHosts, host.host],
      });
      await instantEvent(conn, { actionId: action.id, event: "schedule", host: host.host, result: "Success" });
      await dispatchOp(conn, {
        instance: placed,
        host: host.host,
        actionId: action.id,
        requestId: inst.requestId,
        args: { kind: "spawn" },
        attempt,
        subjectPrefix: this.opts.subjectPrefix,
      });
      return;
    }
    const fault = noValidHostFault(placement, lostClaims);
    await updateInstance(conn, inst.uuid, { vmState: "ERROR", taskState: null, fault });
    await instantEvent(conn, { actionId: action.id, event: "schedule", result: "Error", fault: fault.message });
    await finishAction(conn, action.id, "Error");
  }
}

/** A NoValidHost fault that says how many hosts each filter removed. */
export function noValidHostFault(p: Placement, lostClaims: number) {
  const parts = Object.entries(p.rejections)
    .sort((a, b) => b[1] - a[1])
    .map(([f, n]) => `${f}: ${n}`);
  if (lostClaims) parts.push(`claim_conflict: ${lostClaims}`);
  const details: Record<string, string> = { hosts_considered: String(p.considered) };
  for (const [f, n] of Object.entries(p.rejections)) details[`filter.${f}`] = String(n);
  if (lostClaims) details["claim_conflict"] = String(lostClaims);
  const why = p.considered === 0 ? "no compute hosts are registered" : `${p.considered} hosts considered; removed by ${parts.join(", ")}`;
  return {
    code: "NO_VALID_HOST",
    message: `No valid host was found: ${why}`,
    details,
    createdAt: new Date().toISOString(),
  };
}
