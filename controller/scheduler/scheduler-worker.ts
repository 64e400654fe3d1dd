import type { Logger } from "pino";
import { dispatchOp } from "../conductor/dispatch.js";
import type { Instance } from "../domain/types.js";
import { status } from "@grpc/grpc-js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { startTask } from "../domain/tasks.js";
import { finishAction, instantEvent, markActionRunning, runningAction } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { select, withTx } from "../store/db.js";
import { getInstance, updateInstance } from "../store/instances.js";
import { openMigration, updateMigration } from "../store/moves.js";
import { claim, moveAllocations } from "../store/nodes.js";
import type { HostCache } from "./host-cache.js";
import type { Pipeline, Placement } from "./pipeline.js";
import { HARD_POLICIES, resourcesOf, type HostState, type RequestSpec } from "./types.js";
import { Pump } from "../pump.js";
import { getImage } from "../store/catalog.js";
import { buildRequestSpec } from "./request-spec.js";

/** Choices made again from a fresh view after every claim was lost, at most. */
const MAX_PLACEMENT_ROUNDS = 3;

export interface SchedulerWorkerOptions {
  readonly subjectPrefix: string;
  readonly serviceDownTimeSeconds: number;
  readonly maxAttempts: number;
  /** Instances locked and placed per transaction. */
  readonly batch: number;
  /** Poll for work left by other controllers or a crash, ms. */
  readonly pollMs: number;
  /** How long each task may run. */
  readonly taskTimeouts: TaskTimeouts;
  /** Seconds a guest gets to shut down cleanly before a move. */
  readonly powerOffTimeoutSeconds: number;
}

/**
 * Places instances waiting in task SCHEDULING (builds) or RESIZE_PREP
 * (resizes and cold migrations). Any number of controllers run
 * this at once: rows are taken with SELECT … FOR UPDATE SKIP LOCKED, choosing
 * is in memory, and the claim is a conditional UPDATE in the same transaction
 * as the spawn op's outbox row.
 */
export class SchedulerWorker {
  private readonly pump: Pump;
  /** Claims made by the batch being placed (uncommitted until it ends). */
  private batchClaims: { host: string; resources: RequestSpec["resources"] }[] = [];

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

  /**
   * Claims the best candidate that still has room: a lost claim means the
   * view was stale (another scheduler or a report got there first), so the
   * next candidate is tried.
   */
  private async claimBest(conn: PoolConnection, placement: Placement, spec: RequestSpec): Promise<{ host: HostState | null; lost: string[] }> {
    const upSince = new Date(Date.now() - this.opts.serviceDownTimeSeconds * 1000);
    const lost: string[] = [];
    for (const host of placement.candidates) {
      if (await claim(conn, host.id, spec.instanceUuid, spec.resources, upSince)) {
        this.hosts.consume(host.host, spec.resources);
        this.batchClaims.push({ host: host.host, resources: spec.resources });
        return { host, lost };
      }
      lost.push(host.host);
      this.hosts.invalidate();
    }
    return { host: null, lost };
  }

  /**
   * The request spec of an instance being placed: its zone, flavor extra
   * specs, image properties, group (whose row scheduleBatch locked, so
   * members are placed one at a time) and hints.
   */
  private async specOf(
    conn: PoolConnection,
    inst: Instance,
    r: { resources: RequestSpec["resources"]; ignoreHosts: readonly string[]; imageId: string; extraSpecs?: Readonly<Record<string, string>> },
  ): Promise<RequestSpec> {
    const image = await getImage(conn, r.imageId, undefined);
    return buildRequestSpec(
      conn,
      {
        instanceUuid: inst.uuid,
        resources: r.resources,
        ignoreHosts: r.ignoreHosts,
        availabilityZone: inst.availabilityZone,
        flavorExtraSpecs: r.extraSpecs ?? inst.extraSpecs,
        imageProperties: image?.properties ?? {},
        serverGroupId: inst.serverGroupId,
        schedulerHints: inst.schedulerHints,
      },
    );
  }

  /**
   * Chooses and claims. Every claim lost means the view was stale (other
   * schedulers took the room): the view is reloaded from the database and
   * the choice made again, so a NoValidHost fault describes the hosts as
   * they are, not as this scheduler last saw them.
   */
  private async placeAndClaim(
    conn: PoolConnection,
    spec: RequestSpec,
    eligible: (h: HostState) => boolean,
  ): Promise<{ placement: Placement; host: HostState | null; lostClaims: number; alternates: string[] }> {
    let force = false;
    for (let round = 1; ; round++) {
      const placement = this.pipeline.place([...(await this.view(force))].filter(eligible), spec);
      const { host, lost } = await this.claimBest(conn, placement, spec);
      if (host || lost.length === 0 || round === MAX_PLACEMENT_ROUNDS) {
        // Alternates: the candidates after the chosen one whose claim was not just lost.
        const after = host ? placement.candidates.slice(placement.candidates.indexOf(host) + 1) : [];
        const alternates = after.map((c) => c.host).filter((h) => !lost.includes(h));
        return { placement, host, lostClaims: lost.length, alternates };
      }
      force = true;
    }
  }

  /**
   * The host view. A reload reads what is committed, which lacks this
   * batch's own claims (its transaction is still open): they are applied
   * again, so the scheduler does not choose the hosts it has just filled.
   */
  private async view(force: boolean): Promise<Iterable<HostState>> {
    const before = this.hosts.generation;
    const hosts = await this.hosts.get(force);
    if (this.hosts.generation === before) return hosts;
    for (const c of this.batchClaims) this.hosts.consume(c.host, c.resources);
    return this.hosts.get();
  }

  /** Places one batch; returns how many instances it took. */
  async scheduleBatch(): Promise<number> {
    this.batchClaims = [];
    return withTx(this.pool, async (conn) => {
      const rows = await select<{ uuid: string }>(
        conn,
        // The task_state IN list is what the instances_task index serves;
        // moves also need their migration still waiting for a target.
        `SELECT uuid FROM instances i
         WHERE task_state IN ('SCHEDULING', 'UNSHELVING', 'RESIZE_PREP', 'MIGRATING', 'REBUILDING') AND deleted_at IS NULL
           AND (task_state IN ('SCHEDULING', 'UNSHELVING')
             OR EXISTS (SELECT 1 FROM migrations m WHERE m.instance_uuid = i.uuid AND m.status = 'PRE_MIGRATING'))
         ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
        [this.opts.batch],
      );
      // Hard-policy groups of the batch are locked first, in id order, before any
      // node row is claimed: concurrent batches then take their locks in one order.
      if (rows.length) {
        await select(
          conn,
          `SELECT g.id FROM server_groups g JOIN instances i ON i.server_group_id = g.id
           WHERE i.uuid IN (${rows.map(() => "?").join(",")}) AND g.deleted_at IS NULL AND g.policy IN (?)
           ORDER BY g.id FOR UPDATE`,
          [...rows.map((r) => r.uuid), HARD_POLICIES],
        );
      }
      for (const r of rows) {
        const inst = await getInstance(conn, r.uuid);
        if (inst?.taskState === "SCHEDULING" || inst?.taskState === "UNSHELVING") await this.placeOne(conn, inst);
        else if (inst) await this.placeMove(conn, inst);
      }
      return rows.length;
    });
  }

  /** Places a build, or an unshelve (spawned from the shelved image). */
  private async placeOne(conn: PoolConnection, inst: Instance): Promise<void> {
    const unshelve = inst.vmState === "SHELVED_OFFLOADED";
    const action = await runningAction(conn, inst.uuid);
    if (action === null) {
      this.log.error({ server: inst.uuid }, "instance waiting for a host without a running action; task cleared");
      await updateInstance(conn, inst.uuid, { taskState: null });
      return;
    }
    const spec = await this.specOf(conn, inst, {
      resources: resourcesOf(inst.flavor),
      ignoreHosts: inst.triedHosts,
      imageId: unshelve && inst.shelvedImageId ? inst.shelvedImageId : inst.imageId,
    });
    const { placement, host, lostClaims, alternates } = await this.placeAndClaim(conn, spec, () => true);
    if (host) {
      const attempt = inst.attempt + 1;
      const placed = await updateInstance(conn, inst.uuid, {
        host: host.host,
        ...startTask(this.opts.taskTimeouts, "SPAWNING"),
        attempt,
        triedHosts: [...inst.triedHosts, host.host],
        // Nova's alternates: the next best hosts, for the attempts left.
        alternateHosts: alternates.slice(0, Math.max(0, this.opts.maxAttempts - attempt)),
      });
      await markActionRunning(conn, action.id, placed.taskDeadline);
      await instantEvent(conn, { actionId: action.id, event: "schedule", host: host.host, result: "Success" });
      await dispatchOp(conn, {
        instance: placed,
        host: host.host,
        actionId: action.id,
        requestId: action.requestId,
        args: { kind: "spawn" },
        attempt,
        subjectPrefix: this.opts.subjectPrefix,
        ...(unshelve && inst.shelvedImageId ? { imageId: inst.shelvedImageId } : {}),
      });
      return;
    }
    // Nothing fits: a build fails; an unshelve stays shelved (Nova keeps it
    // SHELVED_OFFLOADED) with the fault.
    const fault = noValidHostFault(placement, lostClaims);
    await updateInstance(conn, inst.uuid, { ...(unshelve ? {} : { vmState: "ERROR" as const }), taskState: null, fault });
    await instantEvent(conn, { actionId: action.id, event: "schedule", result: "Error", fault: fault.message });
    await finishAction(conn, action.id, { error: noValidHostError(fault) });
  }

  /**
   * Chooses and claims the target of a resize or cold migration. The source
   * host is never a candidate. The source's capacity passes to the migration
   * and the target's is claimed for the instance in the same transaction as
   * the op that tells the source to hand the disk over.
   */
  private async placeMove(conn: PoolConnection, inst: Instance): Promise<void> {
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || m.status !== "PRE_MIGRATING") {
      // Cannot happen short of a hand-edited database; never let it block the batch.
      this.log.error({ server: inst.uuid }, "instance waiting for a move target without a pending migration; task cleared");
      await updateInstance(conn, inst.uuid, { taskState: null });
      return;
    }
    const spec = await this.specOf(conn, inst, {
      resources: resourcesOf(m.newFlavor),
      ignoreHosts: m.triedHosts,
      imageId: inst.imageId,
      // A resize is placed by the new flavor's extra specs.
      extraSpecs: m.newFlavor.extraSpecs,
    });
    await moveAllocations(conn, inst.uuid, m.id);
    const { placement, host, lostClaims } = await this.placeAndClaim(conn, spec, (h) => m.requestedHost === null || h.host === m.requestedHost);
    if (host) {
      await updateMigration(conn, m.id, { status: "MIGRATING", targetHost: host.host, triedHosts: [...m.triedHosts, host.host] });
      await instantEvent(conn, { actionId: m.actionId, event: "schedule", host: host.host, result: "Success" });
      const send = (instance: Instance, to: string, args: Parameters<typeof dispatchOp>[1]["args"]) =>
        dispatchOp(conn, { instance, host: to, actionId: m.actionId, requestId: m.requestId, args, subjectPrefix: this.opts.subjectPrefix });
      switch (m.type) {
        case "RESIZE":
        case "MIGRATION": {
          // The source powers off and hands the disk over.
          const moving = await updateInstance(conn, inst.uuid, startTask(this.opts.taskTimeouts, "RESIZE_MIGRATING"));
          await markActionRunning(conn, m.actionId, moving.taskDeadline);
          await send(moving, m.sourceHost, { kind: "migrate_disk", targetHost: host.host, timeoutSeconds: this.opts.powerOffTimeoutSeconds });
          return;
        }
        case "LIVE_MIGRATION":
          // The target prepares; the task (and its deadline) spans the whole move.
          await markActionRunning(conn, m.actionId, inst.taskDeadline);
          await send(inst, host.host, { kind: "pre_live_migration", sourceHost: m.sourceHost });
          return;
        case "EVACUATION": {
          // The new host builds the server from its image.
          const rebuilding = await updateInstance(conn, inst.uuid, { host: host.host, ...startTask(this.opts.taskTimeouts, "REBUILD_SPAWNING") });
          await markActionRunning(conn, m.actionId, rebuilding.taskDeadline);
          await send(rebuilding, host.host, { kind: "rebuild", recreate: true });
          return;
        }
      }
    }
    // Nothing fits: the server stays where and as it was (Nova keeps its
    // vm_state and records the fault).
    await moveAllocations(conn, m.id, inst.uuid);
    const fault = noValidHostFault(placement, lostClaims);
    await updateMigration(conn, m.id, { status: "ERROR" });
    await updateInstance(conn, inst.uuid, { taskState: null, fault });
    await instantEvent(conn, { actionId: m.actionId, event: "schedule", result: "Error", fault: fault.message });
    await finishAction(conn, m.actionId, { error: noValidHostError(fault) });
  }
}

/** The operation error of a NoValidHost fault. */
export function noValidHostError(fault: ReturnType<typeof noValidHostFault>) {
  return { code: status.RESOURCE_EXHAUSTED, reason: fault.code, message: fault.message, metadata: fault.details };
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
