/**
 * What the agent is asked to do, in its own terms: an op is one kind of
 * operation (snake_case, as the controller names them) on one instance,
 * with that kind's own arguments. The wire format is converted to this at
 * the agent's edge (`agent/proto-convert.ts`); nothing below it sees proto.
 */
import type { OpArgs } from "../../controller/domain/ops.js";
import type { InstanceSpec } from "../drivers/types.js";

/**
 * Each op kind's own arguments. The op vocabulary is declared once for the
 * controller and the agent, in controller/domain/ops.ts (what each kind is
 * for is documented there).
 */
export type OpArgsByKind = { readonly [A in OpArgs as A["kind"]]: Omit<A, "kind"> };

/** An operation an op can carry. */
export type AgentOpKind = keyof OpArgsByKind;

/** The kinds that are run through the driver: every kind but abort. */
export type DriverOpKind = Exclude<AgentOpKind, "abort">;

/** What every op carries, whatever its kind. */
export interface OpHeader {
  /** Unique op id; the agent runs each at most once. */
  readonly opId: string;
  /** Request id of the action that caused it. */
  readonly requestId: string;
  /** Scheduling attempt (1 for the first). */
  readonly attempt: number;
  /** After this time the op must not start; null: no deadline. */
  readonly deadline: Date | null;
  /** The instance, as the driver takes it. */
  readonly instance: InstanceSpec;
}

/** An op of kind `K` (any kind by default): a union discriminated on `kind`. */
export type AgentOp<K extends AgentOpKind = AgentOpKind> = {
  [P in K]: OpHeader & { readonly kind: P } & OpArgsByKind[P];
}[K];

/**
 * An op message that names nothing this agent can run (an empty instance
 * id, no operation, an abort without a target, …). It is not run; it is
 * answered "INVALID_OP".
 */
export interface InvalidOp {
  readonly opId: string;
  /** The instance id, "" if the message had none. */
  readonly serverId: string;
  /** What is wrong with it. */
  readonly problem: string;
}

/** Whether `op` is an op message that cannot be run. */
export function isInvalidOp(op: AgentOp | InvalidOp): op is InvalidOp {
  return "problem" in op;
}
