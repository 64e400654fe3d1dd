/**
 * Executes ComputeOps through the driver, at most once per op id.
 *
 * - A redelivered op whose outcome is journaled is not run again: its
 *   result is returned (`replayed: true`) to be re-reported.
 * - An op journaled `started` but not `finished` (the agent died during the
 *   driver call) is reconciled: the driver is asked for the instance's power
 *   state and the op runs only if its postcondition does not already hold
 *   (`reconciled: true`).
 * - Ops of one server run one after another in arrival order; different
 *   servers run in parallel, up to `concurrency`.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import type { OpResult } from "../../gen/novamesh/agent/v1/agent.js";
import type { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { Driver } from "../drivers/driver.js";
import { DriverError, InstanceNotFoundError } from "../drivers/errors.js";
import type { PowerState } from "../drivers/types.js";
import { instanceSpecFromProto, opErrorToProto, powerStateToProto } from "../proto-convert.js";
import { OpJournal, type FinishedEntry, type OpFailure, type OpKind } from "./journal.js";
import { KeyedQueue } from "./keyed-queue.js";

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

/** What an interrupted op still needs: its driver call, nothing, or (a half-made spawn) a power on. */
type Reconciliation = "run" | "skip" | "powerOn";

/** The executor closed before the op finished; the op did not complete and must be redelivered. */
export class ExecutorClosedError extends Error {
  constructor(opId: string) {
    super(`op executor closed before op ${opId} finished`);
    this.name = "ExecutorClosedError";
  }
}

/** See the module comment. */
export class OpExecutor {
  private readonly queue: KeyedQueue;
  private readonly inFlightOps = new Map<string, Promise<Execution>>();
  private readonly abort = new AbortController();
  private closed = false;

  private constructor(
    private readonly driver: Driver,
    private readonly journal: OpJournal,
    concurrency: number,
    private readonly logger: Logger | undefined,
  ) {
    this.queue = new KeyedQueue(concurrency);
  }

  /** Opens the journal in `stateDir`. */
  static async open(options: OpExecutorOptions): Promise<OpExecutor> {
    const journal = await OpJournal.open(join(options.stateDir, "ops-journal.jsonl"), {
      maxOps: options.journalMaxOps,
      fsync: options.fsync,
    });
    return new OpExecutor(options.driver, journal, options.concurrency ?? 8, options.logger);
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
    const execution = this.queue
      .run(op.instance?.id ?? "", () => this.run(op))
      .finally(() => this.inFlightOps.delete(op.opId));
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
   * reconciled on redelivery) and closes the journal. Call `idle()` first to
   * let them finish.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort(new Error("executor closed"));
    await Promise.allSettled([...this.inFlightOps.values()]);
    await this.journal.close();
  }

  private async run(op: ComputeOp): Promise<Execution> {
    if (this.closed) throw new ExecutorClosedError(op.opId);
    const record = this.journal.get(op.opId);
    if (record?.finished) return { result: toResult(record.finished), replayed: true, reconciled: false };
    const kind = op.op!.$case;
    const serverId = op.instance!.id;
    const startTime = new Date();
    const reconciled = record?.started !== undefined;
    const log = this.logger?.child({ op_id: op.opId, request_id: op.requestId, server_id: serverId, op: kind });
    let action: Reconciliation = "run";
    if (reconciled) {
      action = await this.reconcile(op);
      log?.warn({ action }, "op was interrupted by a restart; reconciled with the hypervisor");
    } else {
      await this.journal.append({ t: "started", opId: op.opId, serverId, kind, time: startTime.toISOString() });
    }
    let error: OpFailure | undefined;
    if (action !== "skip") {
      try {
        if (action === "powerOn") await this.driver.powerOn({ instanceId: serverId }, { signal: this.abort.signal, opId: op.opId });
        else await this.call(op, kind);
      } catch (err) {
        if (this.abort.signal.aborted) throw new ExecutorClosedError(op.opId);
        const e = DriverError.from(err, `${kind.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}_FAILED`);
        error = { code: e.code, message: e.message, retryable: e.retryable };
      }
    }
    const finished: FinishedEntry = {
      t: "finished",
      opId: op.opId,
      serverId,
      ...(error ? { error } : {}),
      ...withPowerState(await this.currentPowerState(serverId)),
      startTime: startTime.toISOString(),
      finishTime: new Date().toISOString(),
    };
    await this.journal.append(finished);
    if (error) log?.warn({ err: error }, "op failed");
    else log?.info({ action }, "op finished");
    return { result: toResult(finished), replayed: false, reconciled };
  }

  private call(op: ComputeOp, kind: OpKind): Promise<void> {
    const instanceId = op.instance!.id;
    const call = { signal: this.abort.signal, opId: op.opId };
    const o = op.op!;
    switch (o.$case) {
      case "spawn":
        return this.driver.spawn({ instance: instanceSpecFromProto(op.instance!) }, call);
      case "destroy":
        return this.driver.destroy({ instanceId }, call);
      case "powerOn":
        return this.driver.powerOn({ instanceId }, call);
      case "powerOff":
        return this.driver.powerOff({ instanceId, timeoutSeconds: o.powerOff.timeoutSeconds }, call);
      case "reboot":
        return this.driver.reboot({ instanceId, hard: o.reboot.hard }, call);
      default:
        throw new Error(`unknown op kind ${String(kind)}`);
    }
  }

  /**
   * What an interrupted op still needs, judged by the hypervisor: spawn runs
   * only if there is no domain (a domain that exists but is not running is
   * powered on instead); destroy always runs (it is idempotent); power on /
   * power off / reboot run only if the instance is not already RUNNING /
   * SHUTDOWN / RUNNING. A failure to ask rejects (the op is retried later).
   */
  private async reconcile(op: ComputeOp): Promise<Reconciliation> {
    const instanceId = op.instance!.id;
    const state = await this.driver.powerState({ instanceId }, { signal: this.abort.signal }).catch((err: unknown) => {
      if (err instanceof InstanceNotFoundError) return undefined;
      throw err;
    });
    switch (op.op!.$case) {
      case "spawn":
        return state === undefined ? "run" : state === "RUNNING" ? "skip" : "powerOn";
      case "destroy":
        return "run";
      case "powerOff":
        return state === "SHUTDOWN" ? "skip" : "run";
      case "powerOn":
      case "reboot":
        return state === "RUNNING" ? "skip" : "run";
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
  };
}
