/**
 * Executes ComputeOps through the driver, at most once per op id.
 *
 * - A redelivered op whose outcome is journaled is not run again: its
 *   result is returned (`replayed: true`) to be re-reported.
 * - An op journaled `started` but not `finished` (the agent died during the
 *   driver call) is reconciled: the driver is asked about the instance and
 *   the op runs only if it still needs to (`reconciled: true`; per kind, see
 *   {@link OpExecutor.reconcile}).
 * - Ops of one server run one after another in arrival order; different
 *   servers run in parallel, up to `concurrency`.
 * - An abort op is not queued behind its server's ops: it aborts the op it
 *   names if that op is queued or running here (see {@link OpExecutor.abortOp}).
 * - Long ops (live migration) report progress through `onProgress`,
 *   throttled; best effort.
 * - An op whose `deadline` has passed is not started (nor, after a restart,
 *   run again): it finishes with a non-retryable "DEADLINE_EXCEEDED".
 */
import { join } from "node:path";
import type { Logger } from "pino";
import type { OpResult } from "../../gen/novamesh/agent/v1/agent.js";
import type { ComputeOp, RebootOp } from "../../gen/novamesh/agent/v1/ops.js";
import { DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS, type CallOptions, type Driver } from "../drivers/driver.js";
import { DriverError, InstanceNotFoundError, SoftRebootTimeoutError } from "../drivers/errors.js";
import type { PowerState, SnapshotInfo } from "../drivers/types.js";
import { instanceSpecFromProto, opErrorToProto, powerStateToProto, snapshotInfoToProto } from "../proto-convert.js";
import { OpJournal, type FinishedEntry, type OpFailure, type OpKind } from "./journal.js";
import { KeyedQueue } from "./keyed-queue.js";

/** Progress of a running op, as passed to {@link OpExecutorOptions.onProgress}. */
export interface OpProgressEvent {
  /** The op. */
  readonly opId: string;
  /** Its server. */
  readonly serverId: string;
  /** Percent done, 0–100. */
  readonly percent: number;
  /** What is happening. */
  readonly message: string;
  /**
   * The task step the op reached, when it moved on (such as
   * "REBUILD_SPAWNING"); undefined: the same step.
   */
  readonly stage?: OpStage;
}

/** Task steps an op reports reaching (see agent.proto, OpProgress.task_state). */
export type OpStage = "REBUILD_SPAWNING" | "IMAGE_UPLOADING" | "SHELVING_IMAGE_UPLOADING" | "SHELVING_OFFLOADING";

/** Options of {@link OpExecutor.open}. */
export interface OpExecutorOptions {
  /** The hypervisor. */
  readonly driver: Driver;
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

/** The outcome of {@link OpExecutor.execute}. */
export interface Execution {
  /** The result to report to the controller. */
  readonly result: OpResult;
  /** The result came from the journal; the driver was not called. */
  readonly replayed: boolean;
  /** The op had been started by a previous process and was reconciled. */
  readonly reconciled: boolean;
}

/** The executor closed before the op finished; the op did not complete and must be redelivered. */
export class ExecutorClosedError extends Error {
  constructor(opId: string) {
    super(`op executor closed before op ${opId} finished`);
    this.name = "ExecutorClosedError";
  }
}

/** What an interrupted op still needs: its driver call, nothing, or (a half-made spawn) a power on. */
interface Reconciliation {
  readonly action: "run" | "skip" | "powerOn";
  /** Said in the result (e.g. what could not be recovered). */
  readonly note?: string;
}

/** What a driver call produced beyond success. */
interface Outcome {
  readonly snapshot?: SnapshotInfo;
  readonly note?: string;
}

/** An op accepted and not yet finished (not abort ops). */
interface OpControl {
  readonly op: ComputeOp;
  /** Signal of the op's driver calls: fires when an abort op aborts the op, or the executor closes. */
  readonly abort: AbortController;
  /** "aborted": aborted while queued; the abort op finishes it. */
  phase: "queued" | "running" | "aborted";
  /** The abort op that aborted it. */
  abortedBy?: string;
  /** Settled by the abort op when it finishes the op before its turn. */
  readonly early: Deferred<Execution>;
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

/** Every case of ComputeOp.op; `OpKind` must list exactly these. */
type ProtoOpKind = NonNullable<ComputeOp["op"]>["$case"];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const OP_KINDS_MATCH_PROTO: Same<OpKind, ProtoOpKind> = true;
void OP_KINDS_MATCH_PROTO;

const RUN: Reconciliation = { action: "run" };
const SKIP: Reconciliation = { action: "skip" };

function failureCode(kind: OpKind): string {
  return `${kind.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_FAILED`;
}

/** See the module comment. */
export class OpExecutor {
  private readonly queue: KeyedQueue;
  private readonly inFlightOps = new Map<string, Promise<Execution>>();
  private readonly controls = new Map<string, OpControl>();
  private readonly lastProgress = new Map<string, { time: number; percent: number; message: string }>();
  private readonly abort = new AbortController();
  private readonly progressIntervalMs: number;
  private readonly onProgress: ((progress: OpProgressEvent) => void) | undefined;
  private closed = false;

  private constructor(
    private readonly driver: Driver,
    private readonly journal: OpJournal,
    options: OpExecutorOptions,
    private readonly logger: Logger | undefined,
  ) {
    this.queue = new KeyedQueue(options.concurrency ?? 8);
    this.onProgress = options.onProgress;
    this.progressIntervalMs = options.progressIntervalMs ?? 1_000;
  }

  /** Opens the journal in `stateDir`. */
  static async open(options: OpExecutorOptions): Promise<OpExecutor> {
    const journal = await OpJournal.open(join(options.stateDir, "ops-journal.jsonl"), {
      maxOps: options.journalMaxOps,
      fsync: options.fsync,
    });
    return new OpExecutor(options.driver, journal, options, options.logger);
  }

  /** Ops accepted and not yet finished. */
  get inFlight(): number {
    return this.inFlightOps.size;
  }

  /**
   * Executes `op` (see the module comment). Rejects only when the outcome
   * could not be made durable (journal write failed) or the executor closed:
   * the op should then be redelivered later. Driver failures resolve with a
   * result carrying the error.
   */
  execute(op: ComputeOp): Promise<Execution> {
    if (this.closed) return Promise.reject(new ExecutorClosedError(op.opId));
    const running = this.inFlightOps.get(op.opId);
    if (running) return running;
    const known = this.journal.get(op.opId)?.finished;
    if (known) return Promise.resolve({ result: toResult(known), replayed: true, reconciled: false });
    const invalid = validate(op);
    if (invalid) return Promise.resolve({ result: invalid, replayed: false, reconciled: false });
    const execution = (op.op!.$case === "abort" ? this.abortOp(op) : this.enqueue(op)).finally(() => {
      this.inFlightOps.delete(op.opId);
      this.controls.delete(op.opId);
      this.lastProgress.delete(op.opId);
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

  private enqueue(op: ComputeOp): Promise<Execution> {
    const control: OpControl = { op, abort: new AbortController(), phase: "queued", early: deferred() };
    this.controls.set(op.opId, control);
    const queued = this.queue.run(op.instance!.id, () => this.run(op, control));
    return Promise.race([queued, control.early.promise]);
  }

  private async run(op: ComputeOp, control: OpControl): Promise<Execution> {
    if (control.phase === "aborted") return control.early.promise;
    if (this.closed) throw new ExecutorClosedError(op.opId);
    const record = this.journal.get(op.opId);
    if (record?.finished) return { result: toResult(record.finished), replayed: true, reconciled: false };
    control.phase = "running";
    const kind = op.op!.$case;
    const serverId = op.instance!.id;
    const startTime = new Date();
    const reconciled = record?.started !== undefined;
    const log = this.logger?.child({ op_id: op.opId, request_id: op.requestId, server_id: serverId, op: kind });
    const signal = control.abort.signal; // fired by an abort op, or by close()
    let plan: Reconciliation = RUN;
    if (reconciled) {
      plan = await this.reconcile(op);
      log?.warn({ action: plan.action }, "op was interrupted by a restart; reconciled with the hypervisor");
    }
    let error: OpFailure | undefined;
    let outcome: Outcome = {};
    if (plan.action !== "skip" && op.deadline !== undefined && startTime.getTime() > op.deadline.getTime()) {
      // The controller has given up on the op: it must not start (again).
      error = {
        code: "DEADLINE_EXCEEDED",
        message: `not started: the op's deadline ${op.deadline.toISOString()} had passed`,
        retryable: false,
      };
      plan = SKIP;
    } else if (!reconciled) {
      await this.journal.append({ t: "started", opId: op.opId, serverId, kind, time: startTime.toISOString() });
    }
    if (plan.action !== "skip") {
      try {
        if (signal.aborted) throw new DriverError("ABORTED", "aborted before the driver was called");
        if (plan.action === "powerOn") await this.driver.powerOn({ instanceId: serverId }, { signal, opId: op.opId });
        else outcome = await this.call(op, { signal, opId: op.opId });
      } catch (err) {
        if (this.closed) throw new ExecutorClosedError(op.opId);
        const e = DriverError.from(err, failureCode(kind));
        error =
          control.abortedBy !== undefined
            ? { code: "ABORTED", message: `aborted by op ${control.abortedBy}: ${e.message}`, retryable: false }
            : { code: e.code, message: e.message, retryable: e.retryable };
      }
    }
    const note = [plan.note, outcome.note].filter((n) => n !== undefined && n !== "").join("; ");
    const finished: FinishedEntry = {
      t: "finished",
      opId: op.opId,
      serverId,
      ...(error ? { error } : {}),
      ...withPowerState(await this.currentPowerState(serverId)),
      ...(outcome.snapshot && !error ? { snapshot: outcome.snapshot } : {}),
      ...(note ? { note } : {}),
      startTime: startTime.toISOString(),
      finishTime: new Date().toISOString(),
    };
    await this.journal.append(finished);
    if (error) log?.warn({ err: error, note }, "op failed");
    else log?.info({ action: plan.action, note }, "op finished");
    return { result: toResult(finished), replayed: false, reconciled };
  }

  /** Calls the driver for `op` (not an abort op). */
  private async call(op: ComputeOp, call: CallOptions): Promise<Outcome> {
    const instanceId = op.instance!.id;
    const instance = () => instanceSpecFromProto(op.instance!);
    const d = this.driver;
    const o = op.op!;
    switch (o.$case) {
      case "spawn":
        await d.spawn({ instance: instance() }, call);
        return {};
      case "destroy":
      case "revertMigration": // target side of a revert: the new copy goes
        await d.destroy({ instanceId }, call);
        return {};
      case "powerOn":
        await d.powerOn({ instanceId }, call);
        return {};
      case "powerOff":
        await d.powerOff({ instanceId, timeoutSeconds: o.powerOff.timeoutSeconds }, call);
        return {};
      case "reboot":
        return this.reboot(instanceId, o.reboot, call);
      case "pause":
        await d.pause({ instanceId }, call);
        return {};
      case "unpause":
        await d.unpause({ instanceId }, call);
        return {};
      case "suspend":
        await d.suspend({ instanceId }, call);
        return {};
      case "resume":
        await d.resume({ instanceId }, call);
        return {};
      case "snapshot":
        return {
          snapshot: await d.snapshot(
            {
              instanceId,
              imageId: o.snapshot.imageId,
              imageName: o.snapshot.imageName,
              onUploading: () => this.stage(op, "IMAGE_UPLOADING", "storing the snapshot"),
            },
            call,
          ),
        };
      case "shelve": {
        // Nova's order: power off (clean first), snapshot the stopped disk, remove from the host.
        const { imageId, imageName, timeoutSeconds } = o.shelve;
        await d.powerOff({ instanceId, timeoutSeconds }, call);
        const snapshot = imageId
          ? await d.snapshot({ instanceId, imageId, imageName, onUploading: () => this.stage(op, "SHELVING_IMAGE_UPLOADING", "storing the snapshot") }, call)
          : undefined;
        this.stage(op, "SHELVING_OFFLOADING", "removing the server from this host");
        await d.destroy({ instanceId }, call);
        return snapshot ? { snapshot } : {};
      }
      case "rebuild":
        if (o.rebuild.recreate && !(await this.exists(instanceId, call))) {
          this.stage(op, "REBUILD_SPAWNING", "creating the server from its image");
          await d.spawn({ instance: instance() }, call);
          return { note: "the instance was not on this host; created it" };
        }
        await d.rebuild({ instance: instance(), onSpawning: () => this.stage(op, "REBUILD_SPAWNING", "creating the server from its image") }, call);
        return {};
      case "migrateDisk":
        await d.migrateDiskAndPowerOff(
          { instanceId, targetHost: o.migrateDisk.targetHost, timeoutSeconds: o.migrateDisk.timeoutSeconds },
          call,
        );
        return {};
      case "finishMigration":
        await d.finishMigration(
          { instance: instance(), sourceHost: o.finishMigration.sourceHost, powerOn: o.finishMigration.powerOn },
          call,
        );
        return {};
      case "confirmMigration":
        await d.confirmMigration({ instanceId }, call);
        return {};
      case "finishRevertMigration":
        await d.finishRevertMigration({ instanceId, powerOn: o.finishRevertMigration.powerOn }, call);
        return {};
      case "preLiveMigration":
        await d.preLiveMigration({ instance: instance(), sourceHost: o.preLiveMigration.sourceHost }, call);
        return {};
      case "liveMigrate":
        await d.liveMigrate(
          {
            instanceId,
            targetHost: o.liveMigrate.targetHost,
            targetUri: o.liveMigrate.targetUri,
            onProgress: (percent, message) => this.progress(op, percent, message),
          },
          call,
        );
        return {};
      case "postLiveMigration":
        await d.postLiveMigration({ instanceId, sourceHost: o.postLiveMigration.sourceHost }, call);
        return {};
      case "rollbackLiveMigration":
        await d.rollbackLiveMigration({ instanceId }, call);
        return {};
      case "abort":
        throw new Error("abort ops are not queued");
      default: {
        const unknown: never = o;
        throw new Error(`unknown op kind ${String((unknown as { $case?: string }).$case)}`);
      }
    }
  }

  /**
   * A reboot. Soft falls back to hard, as Nova's libvirt driver does, when
   * the guest does not restart within the timeout, when the instance is not
   * running (so the guest cannot), or when the driver cannot soft reboot;
   * the note says so.
   */
  private async reboot(instanceId: string, o: RebootOp, call: CallOptions): Promise<Outcome> {
    const hard = () => this.driver.reboot({ instanceId, hard: true }, call);
    if (o.hard) {
      await hard();
      return {};
    }
    if (!this.driver.capabilities.softReboot) {
      await hard();
      return { note: "the driver cannot soft reboot; rebooted hard" };
    }
    try {
      await this.driver.reboot({ instanceId, hard: false, timeoutSeconds: o.softTimeoutSeconds }, call);
      return {};
    } catch (err) {
      if (call.signal?.aborted) throw err;
      const e = DriverError.from(err);
      let note: string;
      if (e instanceof SoftRebootTimeoutError || e.code === "SOFT_REBOOT_TIMEOUT") {
        const seconds =
          e instanceof SoftRebootTimeoutError ? e.timeoutSeconds : o.softTimeoutSeconds || DEFAULT_SOFT_REBOOT_TIMEOUT_SECONDS;
        note = `soft reboot not completed within ${seconds} s; rebooted hard`;
      } else if (e.code === "INVALID_STATE") {
        note = `soft reboot not possible (${e.message}); rebooted hard`;
      } else if (e.code === "NOT_SUPPORTED") {
        note = "the driver cannot soft reboot; rebooted hard";
      } else {
        throw err;
      }
      await hard();
      return { note };
    }
  }

  /**
   * What an interrupted op still needs, judged by the hypervisor. A failure
   * to ask rejects (the op is retried later).
   *
   * - spawn: no domain → run; RUNNING → skip; otherwise power it on.
   * - power on, reboot, unpause, resume: skip if RUNNING, else run.
   * - power off: skip if SHUTDOWN; pause: skip if PAUSED; suspend: skip if
   *   SUSPENDED; else run.
   * - shelve: skip if the instance is gone (it got as far as destroy; the
   *   snapshot's info is lost, which the note says), else run again.
   * - live migrate: skip if the instance is gone from this host (the
   *   migration completed), else run again (the target is still prepared).
   * - destroy, revert/confirm migration, rollback live migration, migrate
   *   disk, finish migration, finish revert, pre/post live migration: run
   *   again — each is idempotent by the driver contract (and a SHUTDOWN
   *   source does not prove its disk was handed over).
   * - snapshot: run again (into the same image; its result needs the info).
   * - rebuild: run again (the disk is re-created once more).
   */
  private async reconcile(op: ComputeOp): Promise<Reconciliation> {
    const instanceId = op.instance!.id;
    const state = () =>
      this.driver.powerState({ instanceId }, { signal: this.abort.signal }).catch((err: unknown) => {
        if (err instanceof InstanceNotFoundError) return undefined;
        throw err;
      });
    const o = op.op!;
    switch (o.$case) {
      case "spawn": {
        const s = await state();
        return s === undefined ? RUN : s === "RUNNING" ? SKIP : { action: "powerOn" };
      }
      case "powerOn":
      case "reboot":
      case "unpause":
      case "resume":
        return (await state()) === "RUNNING" ? SKIP : RUN;
      case "powerOff":
        return (await state()) === "SHUTDOWN" ? SKIP : RUN;
      case "pause":
        return (await state()) === "PAUSED" ? SKIP : RUN;
      case "suspend":
        return (await state()) === "SUSPENDED" ? SKIP : RUN;
      case "shelve":
        if ((await state()) !== undefined) return RUN;
        return {
          action: "skip",
          note: o.shelve.imageId
            ? "shelve was interrupted by an agent restart after the instance was removed; the snapshot's size and checksum are unknown"
            : "shelve was interrupted by an agent restart after the instance was removed",
        };
      case "liveMigrate":
        if ((await state()) !== undefined) return RUN;
        return { action: "skip", note: "the live migration had completed before an agent restart" };
      case "destroy":
      case "revertMigration":
      case "confirmMigration":
      case "rollbackLiveMigration":
      case "migrateDisk":
      case "finishMigration":
      case "finishRevertMigration":
      case "preLiveMigration":
      case "postLiveMigration":
      case "snapshot":
      case "rebuild":
      case "abort":
        return RUN;
    }
  }

  /**
   * An abort op: aborts `target_op_id` if it is queued or running here.
   * Running: its driver call's signal fires and the op finishes (journaled)
   * with a non-retryable "ABORTED" — unless it completes first. Queued: it
   * finishes "ABORTED" at once, without calling the driver. The abort op
   * waits for the target to finish and succeeds with the note "aborted",
   * "op finished before the abort took effect", "already finished" or "op
   * not running" (unknown here, e.g. it ran before a restart and was never
   * redelivered). A target of another server is an INVALID_OP.
   */
  private async abortOp(op: ComputeOp): Promise<Execution> {
    const serverId = op.instance!.id;
    const targetOpId = op.op!.$case === "abort" ? op.op!.abort.targetOpId : "";
    const startTime = new Date();
    const control = this.controls.get(targetOpId);
    let error: OpFailure | undefined;
    let note: string | undefined;
    if (control && control.op.instance!.id !== serverId) {
      error = {
        code: "INVALID_OP",
        message: `op ${targetOpId} is for server ${control.op.instance!.id}, not ${serverId}`,
        retryable: false,
      };
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
      note = target.result.error?.code === "ABORTED" ? "aborted" : "op finished before the abort took effect";
    } else if (this.journal.get(targetOpId)?.finished) {
      note = "already finished";
    } else {
      note = "op not running";
    }
    if (this.closed) throw new ExecutorClosedError(op.opId);
    const finished: FinishedEntry = {
      t: "finished",
      opId: op.opId,
      serverId,
      ...(error ? { error } : {}),
      ...withPowerState(await this.currentPowerState(serverId)),
      ...(note ? { note } : {}),
      startTime: startTime.toISOString(),
      finishTime: new Date().toISOString(),
    };
    await this.journal.append(finished);
    this.logger?.info({ op_id: op.opId, server_id: serverId, op: "abort", target_op_id: targetOpId, note, err: error }, "abort op finished");
    return { result: toResult(finished), replayed: false, reconciled: false };
  }

  /** Finishes an op aborted before its turn: "ABORTED", driver not called. */
  private async finishAbortedWhileQueued(control: OpControl): Promise<void> {
    const { op } = control;
    const serverId = op.instance!.id;
    try {
      const now = new Date().toISOString();
      const finished: FinishedEntry = {
        t: "finished",
        opId: op.opId,
        serverId,
        error: { code: "ABORTED", message: `aborted by op ${control.abortedBy ?? "?"} before it started`, retryable: false },
        ...withPowerState(await this.currentPowerState(serverId)),
        startTime: now,
        finishTime: now,
      };
      await this.journal.append(finished);
      this.logger?.info({ op_id: op.opId, server_id: serverId, op: op.op?.$case }, "op aborted before it started");
      control.early.resolve({ result: toResult(finished), replayed: false, reconciled: false });
    } catch (err) {
      control.early.reject(err);
    }
  }

  /** Reports that an op reached its next task step (never throttled). */
  private stage(op: ComputeOp, stage: OpStage, message: string): void {
    if (!this.onProgress) return;
    try {
      this.onProgress({ opId: op.opId, serverId: op.instance!.id, percent: 0, message, stage });
    } catch (err) {
      this.logger?.warn({ err, op_id: op.opId }, "progress listener failed");
    }
  }

  /** Passes a driver's progress on, throttled per op. */
  private progress(op: ComputeOp, percent: number, message: string): void {
    if (!this.onProgress) return;
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    const now = Date.now();
    const last = this.lastProgress.get(op.opId);
    if (last && p === last.percent && message === last.message) return;
    if (last && p < 100 && now - last.time < this.progressIntervalMs) return;
    this.lastProgress.set(op.opId, { time: now, percent: p, message });
    try {
      this.onProgress({ opId: op.opId, serverId: op.instance!.id, percent: p, message });
    } catch (err) {
      this.logger?.warn({ err, op_id: op.opId }, "progress listener failed");
    }
  }

  private async exists(instanceId: string, call: CallOptions): Promise<boolean> {
    try {
      await this.driver.powerState({ instanceId }, call);
      return true;
    } catch (err) {
      if (err instanceof InstanceNotFoundError) return false;
      throw err;
    }
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

function withPowerState(powerState: PowerState | undefined): { powerState?: PowerState } {
  return powerState === undefined ? {} : { powerState };
}

function validate(op: ComputeOp): OpResult | undefined {
  const problem = !op.opId
    ? "op_id is empty"
    : !op.instance?.id
      ? "instance.id is empty"
      : op.op === undefined
        ? "the op names no operation (unknown to this agent version?)"
        : op.op.$case === "abort" && !op.op.abort.targetOpId
          ? "abort.target_op_id is empty"
          : op.op.$case === "abort" && op.op.abort.targetOpId === op.opId
            ? "an abort op cannot abort itself"
            : undefined;
  if (problem === undefined) return undefined;
  const now = new Date();
  return {
    opId: op.opId,
    serverId: op.instance?.id ?? "",
    error: { code: "INVALID_OP", message: problem, retryable: false },
    powerState: powerStateToProto(undefined),
    startTime: now,
    finishTime: now,
    snapshot: undefined,
    note: "",
  };
}

function toResult(entry: FinishedEntry): OpResult {
  return {
    opId: entry.opId,
    serverId: entry.serverId,
    error: entry.error ? opErrorToProto(entry.error) : undefined,
    powerState: powerStateToProto(entry.powerState),
    startTime: new Date(entry.startTime),
    finishTime: new Date(entry.finishTime),
    snapshot: entry.snapshot ? snapshotInfoToProto(entry.snapshot) : undefined,
    note: entry.note ?? "",
  };
}
