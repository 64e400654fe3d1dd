/**
 * Executes ops through the driver, at most once per op id.
 *
 * - A redelivered op whose outcome is journaled is not run again: its
 *   outcome is returned (`replayed: true`) to be re-reported.
 * - An op journaled `started` but not `finished` (the agent died during the
 *   driver call) is reconciled: the driver is asked about the instance and
 *   the op runs only if it still needs to (`reconciled: true`; per kind, see
 *   `HANDLERS` in handlers.ts).
 * - Ops of one server run one after another in arrival order; different
 *   servers run in parallel, up to `concurrency`.
 * - An abort op is not queued behind its server's ops: it aborts the op it
 *   names if that op is queued or running here (see {@link OpExecutor.abortOp}).
 * - Long ops (live migration) report progress through `onProgress`,
 *   throttled; best effort.
 * - An op whose `deadline` has passed is not started (nor, after a restart,
 *   run again): it finishes with a non-retryable "DEADLINE_EXCEEDED".
 * - An invalid op message is answered "INVALID_OP" and not run.
 * - Volume ops, and the export and unexport of a volume for an attachment,
 *   run on the host's volume backend, in the same journal and queue, one
 *   volume's in order (volume-executor.ts); attaching and detaching a
 *   volume on an instance are driver ops like the others.
 */
import { join } from "node:path";
import type { NetworkDriver } from "../network/driver.js";
import type { PortSpec } from "../network/types.js";
import { plugPorts, unplugIfGone } from "./network-steps.js";
import type { Logger } from "pino";
import { withLogContext } from "../../controller/log-context.js";
import { inChildSpan } from "../../controller/tracing.js";
import type { Driver } from "../drivers/driver.js";
import { DriverError, InstanceNotFoundError } from "../drivers/errors.js";
import type { PowerState, SnapshotInfo } from "../drivers/types.js";
import type { ImageStore } from "../drivers/libvirt/image-store.js";
import type { VolumeBackend } from "../volume/backend.js";
import { isInvalidOp, isVolumeOp, type AgentOp, type DriverOpKind, type IncomingOp, type InvalidOp } from "./agent-op.js";
import { handlerOf, RUN, SKIP, type Reconciliation, type RunResult } from "./handlers.js";
import { OpJournal, outcomeOf, type FinishedEntry } from "./journal.js";
import { KeyedQueue } from "../keyed-queue.js";
import { ExecutorClosedError, finalFailure, pastDeadline, toFailure, type Execution, type OpFailure, type OpOutcome, type VolumeResult } from "./outcome.js";
import { ProgressRelay, type OpProgressEvent } from "./progress.js";
import { VolumeOps } from "./volume-executor.js";

export { ExecutorClosedError, type Execution } from "./outcome.js";

/** Options of {@link OpExecutor.open}. */
export interface OpExecutorOptions {
  /** The hypervisor. */
  readonly driver: Driver;
  /** The host's network: plugs the ports of instances it creates (none: instances with ports are refused). */
  readonly network?: NetworkDriver;
  /** The host's volume backend, which runs volume ops (none: they fail "NO_VOLUME_BACKEND"); see volume-executor.ts. */
  readonly volumes?: VolumeBackend;
  /** Where the images volumes are made from come from. */
  readonly images?: ImageStore;
  /** The agent's state directory; the journal is `<stateDir>/ops-journal.jsonl`. */
  readonly stateDir: string;
  /** Ops of different servers run in parallel up to this many (default 8). */
  readonly concurrency?: number;
  /** Finished ops the journal remembers (default 10,000). */
  readonly journalMaxOps?: number;
  /** fsync the journal (default true). */
  readonly fsync?: boolean;
  /** Logger (default: none). */
  readonly logger?: Logger;
  /**
   * Called with the progress of long ops (live migration): at most once per
   * `progressIntervalMs` per op, except that 100 % always is. Must not throw.
   */
  readonly onProgress?: (progress: OpProgressEvent) => void;
  /** Least time between two progress events of one op, ms (default 1,000). */
  readonly progressIntervalMs?: number;
}

/** An op run through the driver (every kind but abort). */
type DriverOp = AgentOp<DriverOpKind>;

/** An op accepted and not yet finished (not abort ops). */
interface OpControl {
  readonly op: DriverOp;
  /** Signal of the op's driver calls: fires when an abort op aborts the op, or the executor closes. */
  readonly abort: AbortController;
  /** "aborted": aborted while queued; the abort op finishes it. */
  phase: "queued" | "running" | "aborted";
  /** The abort op that aborted it. */
  abortedBy?: string;
  /** Settled by the abort op when it finishes the op before its turn. */
  readonly early: Deferred<Execution>;
}

/** What a finished op is journaled with, beside its power state and times. */
interface Ending {
  readonly failure?: OpFailure;
  readonly snapshot?: SnapshotInfo;
  readonly volume?: VolumeResult;
  readonly note?: string;
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The code of a failure of a `kind` op when the driver threw something that names none. */
function failureCode(kind: DriverOpKind): string {
  return `${kind.toUpperCase()}_FAILED`;
}

/** The answer to an op message that cannot be run (not journaled: nothing ran). */
function invalidOutcome(op: InvalidOp): OpOutcome {
  const now = new Date();
  const volume = op.volumeId === undefined ? {} : { volumeId: op.volumeId };
  return { opId: op.opId, serverId: op.serverId, ...volume, failure: finalFailure("INVALID_OP", op.problem), startTime: now, finishTime: now };
}

/** See the module comment. */
export class OpExecutor {
  private readonly queue: KeyedQueue;
  private readonly inFlightOps = new Map<string, Promise<Execution>>();
  private readonly controls = new Map<string, OpControl>();
  private readonly progress: ProgressRelay;
  private readonly abort = new AbortController();
  private readonly volumeOps: VolumeOps;
  private closed = false;

  private constructor(
    private readonly driver: Driver,
    private readonly journal: OpJournal,
    options: OpExecutorOptions,
    private readonly logger: Logger | undefined,
    private readonly network: NetworkDriver | undefined = options.network,
  ) {
    this.queue = new KeyedQueue(options.concurrency ?? 8);
    this.progress = new ProgressRelay(options.onProgress, options.progressIntervalMs ?? 1_000, logger);
    const { volumes, images, stateDir } = options;
    this.volumeOps = new VolumeOps({ volumes, images, journal, queue: this.queue, stateDir, signal: this.abort.signal, logger });
  }

  /** Opens the journal in `stateDir`. */
  static async open(options: OpExecutorOptions): Promise<OpExecutor> {
    const journal = await OpJournal.open(join(options.stateDir, "ops-journal.jsonl"), {
      maxOps: options.journalMaxOps,
      fsync: options.fsync,
      logger: options.logger,
    });
    const executor = new OpExecutor(options.driver, journal, options, options.logger);
    await executor.volumeOps.open();
    return executor;
  }

  /** Ops accepted and not yet finished. */
  get inFlight(): number {
    return this.inFlightOps.size;
  }

  /**
   * Executes `op` (see the module comment). Rejects only when the outcome
   * could not be made durable (journal write failed) or the executor closed:
   * the op should then be redelivered later. Driver failures resolve with an
   * outcome carrying the failure.
   */
  execute(op: IncomingOp): Promise<Execution> {
    if (this.closed) return Promise.reject(new ExecutorClosedError(op.opId));
    const running = this.inFlightOps.get(op.opId);
    if (running) return running.then((e) => ({ ...e, joined: true }));
    const known = this.journal.get(op.opId)?.finished;
    if (known) return Promise.resolve({ outcome: outcomeOf(known), replayed: true, reconciled: false });
    if (isInvalidOp(op)) return Promise.resolve({ outcome: invalidOutcome(op), replayed: false, reconciled: false });
    const run = isVolumeOp(op) ? this.volumeOps.execute(op) : op.kind === "abort" ? this.abortOp(op) : this.enqueue(op);
    const execution = run.finally(() => {
      this.inFlightOps.delete(op.opId);
      this.controls.delete(op.opId);
      this.progress.forget(op.opId);
    });
    this.inFlightOps.set(op.opId, execution);
    return execution;
  }

  /** Resolves true once no op is in flight, false if `timeoutMs` passes first. */
  async idle(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.inFlightOps.size > 0) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.inFlightOps.values()]),
        new Promise((resolve) => (timer = setTimeout(resolve, remaining))),
      ]);
      clearTimeout(timer);
    }
    return true;
  }

  /**
   * Stops accepting ops, aborts driver calls still running (their ops reject
   * with ExecutorClosedError and stay `started` in the journal, to be
   * reconciled on redelivery — unlike ops aborted by an abort op, which
   * finish "ABORTED") and closes the journal. Call `idle()` first to let
   * them finish.
   */
  async close(): Promise<void> {
    this.closed = true;
    const closed = new Error("executor closed");
    this.abort.abort(closed);
    for (const control of this.controls.values()) control.abort.abort(closed);
    await Promise.allSettled([...this.inFlightOps.values()]);
    await this.journal.close();
  }

  private enqueue(op: DriverOp): Promise<Execution> {
    const control: OpControl = { op, abort: new AbortController(), phase: "queued", early: deferred() };
    this.controls.set(op.opId, control);
    const queued = this.queue.run(op.instance.id, () =>
      withLogContext({ op_id: op.opId, request_id: op.requestId, server_id: op.instance.id }, () => this.run(op, control)),
    );
    return Promise.race([queued, control.early.promise]);
  }

  private async run(op: DriverOp, control: OpControl): Promise<Execution> {
    if (control.phase === "aborted") return control.early.promise;
    if (this.closed) throw new ExecutorClosedError(op.opId);
    const record = this.journal.get(op.opId);
    if (record?.finished) return { outcome: outcomeOf(record.finished), replayed: true, reconciled: false };
    control.phase = "running";
    const serverId = op.instance.id;
    const startTime = new Date();
    const reconciled = record?.started !== undefined;
    // op_id, request_id and server_id come with the log context (see controller/log-context.ts).
    const log = this.logger?.child({ op: op.kind });
    const signal = control.abort.signal; // fired by an abort op, or by close()
    let plan: Reconciliation = RUN;
    if (reconciled) {
      plan = await this.reconcile(op);
      log?.warn({ action: plan.action }, "op was interrupted by a restart; reconciled with the hypervisor");
    }
    let failure: OpFailure | undefined;
    let result: RunResult = {};
    const late = plan.action !== "skip" ? pastDeadline(op.deadline, startTime) : undefined;
    if (late) {
      failure = late;
      plan = SKIP;
    } else if (!reconciled) {
      await this.journal.append({ t: "started", opId: op.opId, serverId, kind: op.kind, time: startTime.toISOString() });
    }
    if (plan.action !== "skip") {
      log?.info({ action: plan.action, attempt: op.attempt }, "op started");
      const call = { signal, opId: op.opId };
      try {
        if (signal.aborted) throw new DriverError("ABORTED", "aborted before the driver was called");
        if (plan.action === "power_on") await this.driver.powerOn({ instanceId: serverId }, call);
        else {
          result = await inChildSpan(`driver ${op.kind}`, { attributes: { "novamesh.driver": this.driver.hypervisorType } }, async () => {
            const plugged = await plugPorts(op, this.network);
            return handlerOf(op.kind).run(plugged, { driver: this.driver, call, progress: this.progress.sinkOf(op.opId, serverId), network: this.network });
          });
        }
      } catch (err) {
        if (this.closed) throw new ExecutorClosedError(op.opId);
        const cause = toFailure(err, failureCode(op.kind));
        failure =
          control.abortedBy !== undefined ? finalFailure("ABORTED", `aborted by op ${control.abortedBy}: ${cause.message}`) : cause;
      }
      // Ports of an instance no longer on this host are unplugged; one that fails is logged and left to the next reconcile.
      await unplugIfGone(op, this.driver, this.network, call).catch((err: unknown) =>
        log?.warn({ err }, "could not unplug the ports of an instance gone from this host"),
      );
    }
    const note = [plan.note, result.note].filter((n) => n !== undefined && n !== "").join("; ");
    const outcome = await this.finish(op.opId, serverId, startTime, {
      failure,
      ...(result.snapshot && !failure ? { snapshot: result.snapshot } : {}),
      ...(result.volume && !failure ? { volume: result.volume } : {}),
      note,
    });
    if (failure) log?.warn({ err: failure, note }, "op failed");
    else log?.info({ action: plan.action, note }, "op finished");
    return { outcome, replayed: false, reconciled };
  }

  /**
   * Plugs again, with what the controller now says of them (new rules, new
   * remote-group members), those of `ports` that are plugged here, in the
   * instance's queue so it never races an op of the instance. Which ports
   * an instance has is its ops' business: an update computed before a
   * detach and read after it must not plug the removed port back, nor one
   * computed before an attach plug the new port ahead of its op.
   */
  refreshPorts(instanceId: string, ports: readonly PortSpec[]): Promise<void> {
    const network = this.network;
    if (!network || this.closed) return Promise.resolve();
    return this.queue.run(instanceId, async () => {
      const current = (await network.plugged()).get(instanceId);
      if (!current) return;
      const plugged = new Set(current.map((p) => p.id));
      const fresh = ports.filter((p) => plugged.has(p.id));
      if (fresh.length > 0) await network.plug(instanceId, fresh);
    });
  }

  /**
   * What an interrupted op still needs, judged by the hypervisor (see
   * `HANDLERS`). A failure to ask rejects (the op is retried later).
   */
  private async reconcile(op: DriverOp): Promise<Reconciliation> {
    const rule = handlerOf(op.kind).reconcile;
    if (rule === "run_again") return RUN;
    const state = await this.driver.powerState({ instanceId: op.instance.id }, { signal: this.abort.signal }).catch((err: unknown) => {
      if (err instanceof InstanceNotFoundError) return undefined;
      throw err;
    });
    return rule(state, op);
  }

  /**
   * An abort op: aborts `targetOpId` if it is queued or running here.
   * Running: its driver call's signal fires and the op finishes (journaled)
   * with a non-retryable "ABORTED" — unless it completes first. Queued: it
   * finishes "ABORTED" at once, without calling the driver. The abort op
   * waits for the target to finish and succeeds with the note "aborted",
   * "op finished before the abort took effect", "already finished" or "op
   * not running" (unknown here, e.g. it ran before a restart and was never
   * redelivered). A target of another server is an INVALID_OP.
   */
  private async abortOp(op: AgentOp<"abort">): Promise<Execution> {
    const serverId = op.instance.id;
    const { targetOpId } = op;
    const startTime = new Date();
    const control = this.controls.get(targetOpId);
    let failure: OpFailure | undefined;
    let note: string | undefined;
    if (control && control.op.instance.id !== serverId) {
      failure = finalFailure("INVALID_OP", `op ${targetOpId} is for server ${control.op.instance.id}, not ${serverId}`);
    } else if (control) {
      control.abortedBy ??= op.opId;
      control.abort.abort(new DriverError("ABORTED", `aborted by op ${op.opId}`));
      if (control.phase === "queued") {
        control.phase = "aborted";
        void this.finishAbortedWhileQueued(control);
      }
      let target: Execution;
      try {
        target = await (this.inFlightOps.get(targetOpId) ?? control.early.promise);
      } catch (err) {
        if (err instanceof ExecutorClosedError) throw new ExecutorClosedError(op.opId);
        throw err;
      }
      note = target.outcome.failure?.code === "ABORTED" ? "aborted" : "op finished before the abort took effect";
    } else if (this.journal.get(targetOpId)?.finished) {
      note = "already finished";
    } else {
      note = "op not running";
    }
    if (this.closed) throw new ExecutorClosedError(op.opId);
    const outcome = await this.finish(op.opId, serverId, startTime, { failure, note });
    this.logger?.info({ op_id: op.opId, server_id: serverId, op: "abort", target_op_id: targetOpId, note, err: failure }, "abort op finished");
    return { outcome, replayed: false, reconciled: false };
  }

  /** Finishes an op aborted before its turn: "ABORTED", driver not called. */
  private async finishAbortedWhileQueued(control: OpControl): Promise<void> {
    const { op } = control;
    try {
      const failure = finalFailure("ABORTED", `aborted by op ${control.abortedBy ?? "?"} before it started`);
      const outcome = await this.finish(op.opId, op.instance.id, new Date(), { failure });
      this.logger?.info({ op_id: op.opId, server_id: op.instance.id, op: op.kind }, "op aborted before it started");
      control.early.resolve({ outcome, replayed: false, reconciled: false });
    } catch (err) {
      control.early.reject(err);
    }
  }

  /** Journals how an op ended, with the instance's power state now; resolves once it is on disk. */
  private async finish(opId: string, serverId: string, startTime: Date, ending: Ending): Promise<OpOutcome> {
    const powerState = await this.currentPowerState(serverId);
    const entry: FinishedEntry = {
      t: "finished",
      opId,
      serverId,
      ...(ending.failure ? { error: ending.failure } : {}),
      ...(powerState === undefined ? {} : { powerState }),
      ...(ending.snapshot ? { snapshot: ending.snapshot } : {}),
      ...(ending.volume ? { volume: ending.volume } : {}),
      ...(ending.note ? { note: ending.note } : {}),
      startTime: startTime.toISOString(),
      finishTime: new Date().toISOString(),
    };
    await this.journal.append(entry);
    return outcomeOf(entry);
  }

  /** The instance's power state now: NOSTATE if gone, undefined if the driver cannot say. */
  private async currentPowerState(instanceId: string): Promise<PowerState | undefined> {
    try {
      return await this.driver.powerState({ instanceId });
    } catch (err) {
      if (err instanceof InstanceNotFoundError) return "NOSTATE";
      this.logger?.warn({ err, server_id: instanceId }, "could not read power state after op");
      return undefined;
    }
  }
}
