/**
 * Placement: the scheduler proposes, the conductor commits (Nomad's planner
 * split). The worker takes servers waiting for a host (builds and moves) with SKIP LOCKED, so any number of controllers share the work;
 * asks the scheduler (pure, in memory) for candidates; claims the best one
 * with a conditional UPDATE; and hands the claimed host to the server's
 * flow, all in one transaction with the op that starts the work there.
 */
import { status } from "@grpc/grpc-js";
import type { HostState } from "../domain/placement.js";
import { claimOf } from "../domain/placement.js";
import { PLACEMENT_TASKS } from "../domain/states.js";
import type { Fault, Instance } from "../domain/types.js";
import type { HostCache } from "../scheduler/host-cache.js";
import { noValidHostFault } from "../scheduler/no-valid-host.js";
import type { Pipeline, Placement } from "../scheduler/pipeline.js";
import type { PlacementRequest } from "../scheduler/request-spec.js";
import { requestSpecOf } from "../scheduler/request-spec.js";
import type { RequestSpec } from "../scheduler/types.js";
import { finishAction, instantEvent, runningActions, type RunningAction } from "../store/actions.js";
import { getImage } from "../store/catalog.js";
import type { PoolConnection } from "../store/db.js";
import { withTx } from "../store/db.js";
import { inTrace, spanAttribute } from "../tracing.js";
import { updateInstance } from "../store/instances.js";
import { openMigration, updateMigration } from "../store/moves.js";
import { claim, moveAllocations } from "../store/nodes.js";
import { loadSurroundings, lockPlacementBatch } from "../store/placement.js";
import { PumpWorker } from "../pump.js";
import type { ControllerMetrics } from "../metrics.js";
import type { ConductorContext } from "./context.js";
import { Tx } from "./context.js";
import { operationErrorOfFault } from "./flow.js";
import { MOVE_PLACEMENT, build } from "./flows/index.js";
import { MOVE_WAITING_TASKS, abandonMove } from "./moves.js";

/** Choices made again from a fresh view after every claim was lost, at most. */
const MAX_PLACEMENT_ROUNDS = 3;

export interface PlacementOptions {
  /** Servers locked and placed per transaction. */
  readonly batch: number;
  /** Poll for work left by other controllers or a crash, ms. */
  readonly pollMs: number;
}

export class PlacementWorker extends PumpWorker {
  /** Claims made by the batch being placed (uncommitted until it ends). */
  private batchClaims: { host: string; resources: RequestSpec["resources"] }[] = [];

  constructor(
    private readonly ctx: ConductorContext,
    private readonly hosts: HostCache,
    private readonly pipeline: Pipeline,
    private readonly opts: PlacementOptions,
    private readonly metrics: ControllerMetrics | null = null,
  ) {
    super(opts.pollMs);
  }

  protected async step(): Promise<boolean> {
    return (await this.placeBatch()) === this.opts.batch;
  }

  protected failed(err: unknown): boolean {
    this.hosts.invalidate();
    const code = (err as { code?: string } | null | undefined)?.code;
    if (code === "ER_LOCK_DEADLOCK" || code === "ER_LOCK_WAIT_TIMEOUT") return true;
    this.ctx.log.warn({ err }, "placement pass failed; will retry");
    return false;
  }

  /** Places one batch; returns how many servers it took. */
  async placeBatch(): Promise<number> {
    this.batchClaims = [];
    return withTx(this.ctx.pool, async (conn) => {
      const { servers, bare } = await lockPlacementBatch(conn, this.opts.batch, { buildTasks: PLACEMENT_TASKS, moveTasks: MOVE_WAITING_TASKS });
      const tx = new Tx(conn, this.ctx);
      const builds = servers.filter((inst) => inst.taskState && PLACEMENT_TASKS.includes(inst.taskState));
      const actions = await runningActions(conn, builds.map((inst) => inst.uuid));
      for (const inst of servers) {
        if (builds.includes(inst)) await this.placeBuild(tx, inst, actions.get(inst.uuid) ?? null, bare.has(inst.uuid));
        else await this.placeMove(tx, inst);
      }
      return servers.length;
    });
  }

  /** A build (of a new server, or of an offloaded one from its snapshot). */
  private async placeBuild(tx: Tx, inst: Instance, action: RunningAction | null, bare: boolean): Promise<void> {
    if (action === null) {
      this.ctx.log.error({ server_id: inst.uuid }, "instance waiting for a host without a running action; task cleared");
      await updateInstance(tx.conn, inst.uuid, { taskState: null });
      return;
    }
    // The scheduler's span continues the create's (or unshelve's) trace; the spawn it sends is its child.
    await inTrace(action.traceParent, "schedule", { attributes: { "novamesh.server_id": inst.uuid, "novamesh.request_id": action.requestId } }, async () => {
      const spec = await this.specOf(tx.conn, inst, {
        resources: claimOf(inst.flavor, inst),
        ignoreHosts: inst.triedHosts,
        imageId: build.imageOf(inst),
      });
      const { placement, host, lostClaims, alternates } = await this.placeAndClaim(tx, spec, null, "build");
      if (host) {
        spanAttribute("novamesh.host", host.host);
        return build.placed(tx, inst, action, host.host, alternates, { bare });
      }
      const fault = noValidHostFault(placement, lostClaims);
      tx.afterCommit(() => this.ctx.log.info({ request_id: action.requestId, server_id: inst.uuid, reason: fault.code }, fault.message));
      return build.noHost(tx, inst, action, fault);
    });
  }

  /**
   * The target of a move. The source host is never a candidate. The
   * source's capacity passes to the migration and the target's is claimed
   * for the instance in the same transaction as the op that starts the move.
   */
  private async placeMove(tx: Tx, inst: Instance): Promise<void> {
    const { conn } = tx;
    const m = await openMigration(conn, inst.uuid, { lock: true });
    if (!m || m.status !== "PRE_MIGRATING") {
      // Cannot happen short of a hand-edited database; never let it block the batch.
      this.ctx.log.error({ server_id: inst.uuid }, "instance waiting for a move target without a pending migration; task cleared");
      await updateInstance(conn, inst.uuid, { taskState: null });
      return;
    }
    // The source is a tried host from the start; a resize may go back to it where allowed.
    const sameHost = m.type === "RESIZE" && this.ctx.allowResizeToSameHost;
    const spec = await this.specOf(conn, inst, {
      resources: claimOf(m.newFlavor, inst),
      ignoreHosts: sameHost ? m.triedHosts.filter((h) => h !== m.sourceHost) : m.triedHosts,
      imageId: inst.imageId,
      // A resize is placed by the new flavor's extra specs.
      extraSpecs: m.newFlavor.extraSpecs,
    });
    await moveAllocations(conn, inst.uuid, m.id);
    const { placement, host, lostClaims } = await this.placeAndClaim(tx, spec, (h) => m.requestedHost === null || h.host === m.requestedHost, "move");
    /** The move ends before it starts: the server stays where and as it was (Nova keeps its vm_state and records the fault). */
    const abandon = async (fault: Fault, code: status, event: { event: string; host?: string }) => {
      await abandonMove(tx.store, inst, m);
      await updateInstance(conn, inst.uuid, { taskState: null, fault });
      await instantEvent(conn, { actionId: m.actionId, ...event, result: "Error", fault: fault.message });
      await finishAction(conn, m.actionId, { error: operationErrorOfFault(fault, code) });
    };
    if (!host) return abandon(noValidHostFault(placement, lostClaims), status.RESOURCE_EXHAUSTED, { event: "schedule" });
    // The target's DHCP ports on the server's networks: a network with no address left for them ends the move.
    const bound = await tx.store.bindServerPorts(inst, host.host);
    if (bound.failure) {
      // The target's claim goes; the source's returns to the server.
      await tx.store.releaseAllocations(inst.uuid);
      return abandon(bound.failure.fault, bound.failure.status, { event: "allocate_network", host: host.host });
    }
    await updateMigration(conn, m.id, { status: "MIGRATING", targetHost: host.host, triedHosts: [...m.triedHosts, host.host] });
    await instantEvent(conn, { actionId: m.actionId, event: "schedule", host: host.host, result: "Success" });
    return MOVE_PLACEMENT[m.type](tx, inst, m, host.host);
  }

  /** The request spec of a server being placed (its group's row is locked by the batch). */
  private async specOf(
    conn: PoolConnection,
    inst: Instance,
    r: { resources: RequestSpec["resources"]; ignoreHosts: readonly string[]; imageId: string; extraSpecs?: Readonly<Record<string, string>> },
  ): Promise<RequestSpec> {
    const image = await getImage(conn, r.imageId, undefined);
    const request: PlacementRequest = {
      instanceUuid: inst.uuid,
      resources: r.resources,
      ignoreHosts: r.ignoreHosts,
      availabilityZone: inst.availabilityZone,
      flavorExtraSpecs: r.extraSpecs ?? inst.extraSpecs,
      imageProperties: image?.properties ?? {},
    };
    return requestSpecOf(request, await loadSurroundings(conn, { instanceUuid: inst.uuid, serverGroupId: inst.serverGroupId, schedulerHints: inst.schedulerHints }));
  }

  /**
   * Chooses and claims. Every claim lost means the view was stale (other
   * schedulers took the room): the view is reloaded from the database and
   * the choice made again, so a NoValidHost fault describes the hosts as
   * they are, not as this scheduler last saw them.
   */
  private async placeAndClaim(
    tx: Tx,
    spec: RequestSpec,
    eligible: ((h: HostState) => boolean) | null,
    kind: "build" | "move",
  ): Promise<{ placement: Placement; host: HostState | null; lostClaims: number; alternates: string[] }> {
    const started = performance.now();
    let force = false;
    let lostClaims = 0;
    for (let round = 1; ; round++) {
      const view = await this.view(force);
      // The last round scores every host: claims on a whole sample were lost, so the sample may have been the problem.
      const placement = this.pipeline.place(eligible ? view.filter(eligible) : view, spec, { scoreAll: round === MAX_PLACEMENT_ROUNDS });
      const { host, lost } = await this.claimBest(tx, placement, spec);
      lostClaims += lost.length;
      if (host || lost.length === 0 || round === MAX_PLACEMENT_ROUNDS) {
        this.measure(kind, host !== null, placement, lostClaims, started);
        // Alternates: the candidates after the chosen one whose claim was not just lost.
        const after = host ? placement.candidates.slice(placement.candidates.indexOf(host) + 1) : [];
        const alternates = after.map((c) => c.host).filter((h) => !lost.includes(h));
        return { placement, host, lostClaims: lost.length, alternates };
      }
      force = true;
    }
  }

  /** One placement's figures: its result, time and lost claims, and for a NO_VALID_HOST the hosts each filter removed. */
  private measure(kind: "build" | "move", placed: boolean, placement: Placement, lostClaims: number, started: number): void {
    const m = this.metrics;
    if (!m) return;
    m.placements.inc({ kind, result: placed ? "placed" : "no_valid_host" });
    m.placementDuration.observe((performance.now() - started) / 1000);
    if (lostClaims) m.claimsLost.inc(lostClaims);
    if (!placed) for (const [filter, n] of Object.entries(placement.rejections)) m.noValidHostRejections.inc({ filter }, n);
  }

  /**
   * Claims the best candidate that still has room: a lost claim means the
   * view was stale (another scheduler or a report got there first), so the
   * next candidate is tried.
   */
  private async claimBest(tx: Tx, placement: Placement, spec: RequestSpec): Promise<{ host: HostState | null; lost: string[] }> {
    const upSince = tx.upSince();
    const lost: string[] = [];
    for (const host of placement.candidates) {
      if (await claim(tx.conn, host.id, spec.instanceUuid, spec.resources, upSince)) {
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
   * The host view. A reload reads what is committed, which lacks this
   * batch's own claims (its transaction is still open): they are applied
   * again, so the scheduler does not choose the hosts it has just filled.
   */
  private async view(force: boolean): Promise<readonly HostState[]> {
    const before = this.hosts.generation;
    const hosts = await this.hosts.get(force);
    if (this.hosts.generation === before) return hosts;
    for (const c of this.batchClaims) this.hosts.consume(c.host, c.resources);
    return this.hosts.get();
  }
}
