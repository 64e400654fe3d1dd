/**
 * What the agent is asked to do, in its own terms: an op is one kind of
 * operation (snake_case, as the controller names them) on one instance,
 * or, on a volume host, on one volume (an export, an unexport or the
 * growth of an attached volume names the instance too), with that kind's own arguments. The
 * wire format is converted to this at the agent's edge
 * (`agent/proto-convert.ts`); nothing below it sees proto.
 */
import type { OpArgs } from "../../controller/domain/ops.js";
import type { VolumeOpArgs, VolumeOpKind, VolumeOpSource, VolumeTarget } from "../../controller/domain/volume-ops.js";
import type { InstanceSpec } from "../drivers/types.js";

/**
 * Each op kind's own arguments. The op vocabulary is declared once for the
 * controller and the agent, in controller/domain/ops.ts (what each kind is
 * for is documented there).
 */
export type OpArgsByKind = { readonly [A in OpArgs as A["kind"]]: Omit<A, "kind"> };

/**
 * The kinds of that vocabulary that run on a volume host, on the volume
 * backend (`OP_TRAITS[kind].onVolumeHost`; a test keeps the two equal).
 */
export type VolumeHostOpKind = Extract<keyof OpArgsByKind, "export_volume" | "unexport_volume" | "grow_volume" | "reimage_volume">;

/** An operation an op on an instance can carry. */
export type AgentOpKind = Exclude<keyof OpArgsByKind, VolumeHostOpKind>;

/** The kinds that are run through the driver: every kind on an instance but abort. */
export type DriverOpKind = Exclude<AgentOpKind, "abort">;

/** What every op carries, whatever it acts on. */
export interface OpEnvelope {
  /** Unique op id; the agent runs each at most once. */
  readonly opId: string;
  /** Request id of the action that caused it. */
  readonly requestId: string;
  /** Scheduling attempt (1 for the first). */
  readonly attempt: number;
  /** After this time the op must not start; null: no deadline. */
  readonly deadline: Date | null;
}

/** What every op on an instance carries, whatever its kind. */
export interface OpHeader extends OpEnvelope {
  /** The instance, as the driver takes it. */
  readonly instance: InstanceSpec;
}

/** An op of kind `K` (any kind by default): a union discriminated on `kind`. */
export type AgentOp<K extends AgentOpKind = AgentOpKind> = {
  [P in K]: OpHeader & { readonly kind: P } & OpArgsByKind[P];
}[K];

/**
 * Each volume op kind's arguments as the agent takes them (the vocabulary
 * is controller/domain/volume-ops.ts, and for export, unexport and
 * grow_volume controller/domain/ops.ts): create_volume's source decoded into blank, an
 * image record or a snapshot; the others as declared.
 */
export type VolumeOpArgsByKind = {
  readonly [A in VolumeOpArgs as A["kind"]]: A["kind"] extends "create_volume" ? { readonly source: VolumeOpSource } : Omit<A, "kind">;
} & { readonly [K in VolumeHostOpKind]: OpArgsByKind[K] };

/** An operation run on a volume backend. */
export type AgentVolumeOpKind = VolumeOpKind | VolumeHostOpKind;

/** What every volume op carries, whatever its kind. */
export interface VolumeOpHeader extends OpEnvelope {
  /** The volume it acts on. */
  readonly volume: VolumeTarget;
  /** The instance an export, unexport or grow_volume is for, as the op names it ("" for the other volume ops, or if it names none). */
  readonly serverId: string;
}

/** A volume op of kind `K` (any by default), run on the host's volume backend. */
export type AgentVolumeOp<K extends AgentVolumeOpKind = AgentVolumeOpKind> = {
  [P in K]: VolumeOpHeader & { readonly kind: P } & VolumeOpArgsByKind[P];
}[K];

/**
 * An op message that names nothing this agent can run (an empty instance
 * id, no operation, an abort without a target, a volume op without a
 * volume, …). It is not run; it is answered "INVALID_OP".
 */
export interface InvalidOp {
  readonly opId: string;
  /** The instance id, "" if the message had none. */
  readonly serverId: string;
  /** The volume id of a volume op ("" if it had none); absent for other ops. */
  readonly volumeId?: string;
  /** What is wrong with it. */
  readonly problem: string;
}

/** An op as it comes in: one to run on an instance or a volume, or one that cannot be run. */
export type IncomingOp = AgentOp | AgentVolumeOp | InvalidOp;

/** Whether `op` is an op message that cannot be run. */
export function isInvalidOp(op: IncomingOp): op is InvalidOp {
  return "problem" in op;
}

/** Whether `op` is a volume op. */
export function isVolumeOp(op: IncomingOp): op is AgentVolumeOp {
  return "volume" in op;
}
