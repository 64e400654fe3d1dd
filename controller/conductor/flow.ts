/**
 * The shape of a flow (conductor/flows/): the rows an operation family adds
 * to the transition tables, and what its steps see. A flow declares, per
 * action, where it may start from and which task it sets; per op kind,
 * which tasks its result may finish and what the result does; per task,
 * what a timeout does.
 */
import { status } from "@grpc/grpc-js";
import type { OpArgs, OpFailure, OpKind, OpOutcome } from "../domain/ops.js";
import type { PowerState, ServerAction, TaskState, VmState } from "../domain/states.js";
import type { Fault, Instance, Migration, OperationError } from "../domain/types.js";
import type { VolumeTarget } from "../domain/volume-ops.js";
import type { InstancePatch } from "../store/instances.js";
import type { OpRecord } from "../store/ops.js";
import type { Tx } from "./context.js";

/** An action's row: Nova's check_instance_state and the task it sets. */
export interface ActionRule {
  /** vm_states it may start from. */
  readonly from: readonly VmState[];
  /** The task_state it sets while it runs (none for lock/unlock). */
  readonly task: TaskState | null;
  /** Tasks it may interrupt (default: none). */
  readonly interrupts?: readonly TaskState[];
  /** Its operation is PENDING until the scheduler has chosen a host. */
  readonly scheduled?: boolean;
  /** A locked server still allows it to non-admins. */
  readonly whenLocked?: boolean;
}

export type ActionRules<A extends ServerAction> = { readonly [K in A]: ActionRule };

/** An op kind's row: the tasks its result may finish, and what it does then. */
export interface ResultRule {
  /** Tasks the result may finish; arriving in any other task it is stale and changes nothing. */
  readonly tasks: readonly TaskState[];
  /** Steps the host may report reaching, in order (the first is the task the action set). */
  readonly steps?: readonly TaskState[];
  /** What the result does; absent: nothing beyond the op's own record (cleanup ops). */
  readonly apply?: (r: ResultContext) => Promise<void>;
}

export type ResultRules<K extends OpKind> = { readonly [P in K]: ResultRule };

/** A task's row: what the reaper does when it outlives its deadline. */
export interface TimeoutRule {
  /** What the fault says happened. */
  readonly outcome: string;
  readonly reap: (t: TimeoutContext) => Promise<void>;
}

export type TimeoutRules<T extends TaskState> = { readonly [P in T]: TimeoutRule };

/** A move's placement hook: its target was claimed; start the move there. */
export type MovePlacement = (tx: Tx, inst: Instance, m: Migration, target: string) => Promise<void>;

/** The server's fault for a failure on a host. */
export function faultOf(f: OpFailure, op: { kind: string; host: string }): Fault {
  return { code: f.code || "OP_FAILED", message: f.message, details: { host: op.host, op: op.kind }, createdAt: new Date().toISOString() };
}

/** The operation's error for a failure on a host. */
export function operationErrorOf(f: OpFailure, op: { kind: string; host: string }): OperationError {
  return { code: status.UNKNOWN, reason: f.code || "OP_FAILED", message: `${op.kind} on ${op.host} failed: ${f.message}`, metadata: { host: op.host } };
}

/** The operation's error for a fault the controller decided (timed out, no valid host). */
export function operationErrorOfFault(fault: Fault, code: status): OperationError {
  return { code, reason: fault.code, message: fault.message, metadata: fault.details };
}

/** What applying one op result sees, with the steps results take. */
export class ResultContext {
  constructor(
    readonly tx: Tx,
    readonly op: OpRecord,
    readonly inst: Instance,
    readonly outcome: OpOutcome,
  ) {}

  /** The store, in this transaction. */
  get store() {
    return this.tx.store;
  }

  get error(): OpFailure | null {
    return this.outcome.error;
  }

  /** The power state the host reported, if it did. */
  get power(): PowerState | undefined {
    return this.outcome.powerState ?? undefined;
  }

  fault(): Fault {
    return faultOf(this.outcome.error!, this.op);
  }

  opError(): OperationError {
    return operationErrorOf(this.outcome.error!, this.op);
  }

  update(patch: InstancePatch): Promise<Instance> {
    return this.tx.update(this.inst.uuid, patch);
  }

  /** The next op of the action, on `host` (with `volume`: on that volume's host); the action's deadline follows the instance's task. */
  async dispatch(host: string, args: OpArgs, inst: Instance, requestId: string, volume?: VolumeTarget): Promise<void> {
    await this.tx.dispatch({ instance: inst, host, actionId: this.op.actionId, requestId, args, ...(volume ? { volume } : {}) });
    await this.store.setActionStep(this.op.actionId, { deadline: inst.taskDeadline });
  }

  /**
   * The task ends well: `patch` applied, the action SUCCEEDED. The server is
   * in no error state now, so an earlier fault goes (the action log keeps it).
   */
  async succeed(patch: InstancePatch): Promise<void> {
    await this.update({ taskState: null, fault: null, ...patch });
    await this.store.finishAction(this.op.actionId);
  }

  /** The task ends in the host's failure: its fault on the server, the action FAILED. */
  async fail(patch: InstancePatch = {}): Promise<void> {
    await this.update({ taskState: null, fault: this.fault(), ...patch });
    await this.store.finishAction(this.op.actionId, { error: this.opError() });
  }
}

/** What ending one overdue task sees. */
export class TimeoutContext {
  constructor(
    readonly tx: Tx,
    readonly inst: Instance,
    readonly task: TaskState,
    /** The action the task belongs to, if one is still open. */
    readonly actionId: number | null,
    readonly fault: Fault,
    readonly error: OperationError,
  ) {}

  /** The store, in this transaction. */
  get store() {
    return this.tx.store;
  }

  update(patch: InstancePatch): Promise<Instance> {
    return this.tx.update(this.inst.uuid, patch);
  }

  /** The action FAILED with the timeout. */
  async failAction(): Promise<void> {
    if (this.actionId !== null) await this.store.finishAction(this.actionId, { error: this.error });
  }

  /** The task ends with the timeout's fault and `patch`; the action FAILED. */
  async end(patch: InstancePatch = {}): Promise<void> {
    await this.update({ taskState: null, fault: this.fault, ...patch });
    await this.failAction();
  }
}
