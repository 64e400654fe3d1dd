/**
 * What the agent is asked to do, in its own terms: an op is one kind of
 * operation (snake_case, as the controller names them) on one instance,
 * with that kind's own arguments. The wire format is converted to this at
 * the agent's edge (`agent/proto-convert.ts`); nothing below it sees proto.
 */
import type { InstanceSpec } from "../drivers/types.js";

type NoArgs = Record<never, never>;

/** Each op kind's own arguments. */
export interface OpArgsByKind {
  /** Create and start the virtual machine. */
  spawn: NoArgs;
  /** Destroy the virtual machine and its disks. */
  destroy: NoArgs;
  power_on: NoArgs;
  /** `timeoutSeconds`: clean shutdown time before forcing (0: the driver's default). */
  power_off: { readonly timeoutSeconds: number };
  /** `softTimeoutSeconds` (0: the driver's default) is ignored when `hard`. */
  reboot: { readonly hard: boolean; readonly softTimeoutSeconds: number };
  pause: NoArgs;
  unpause: NoArgs;
  /** Suspend to disk (managed save). */
  suspend: NoArgs;
  resume: NoArgs;
  /** Snapshot the root disk into the image `imageId`. */
  snapshot: { readonly imageId: string; readonly imageName: string };
  /** Power off, snapshot into `imageId` (none if empty), remove from the host. */
  shelve: { readonly imageId: string; readonly imageName: string; readonly timeoutSeconds: number };
  /** Rebuild from the instance's (new) image; `recreate`: create it if it is not on this host. */
  rebuild: { readonly recreate: boolean };
  /** Resize/cold migrate, source side: power off and hand the disk over. */
  migrate_disk: { readonly targetHost: string; readonly timeoutSeconds: number };
  /** Resize/cold migrate, target side: create the instance from the migrated disk. */
  finish_migration: { readonly sourceHost: string; readonly powerOn: boolean };
  /** Confirm, source side: remove the old copy. */
  confirm_migration: NoArgs;
  /** Revert, target side: remove the new copy. */
  revert_migration: NoArgs;
  /** Revert, source side: bring the old copy back. */
  finish_revert_migration: { readonly powerOn: boolean };
  /** Live migration, target side: prepare to receive the instance. */
  pre_live_migration: { readonly sourceHost: string };
  /** Live migration, source side: move the running instance; reports progress; abortable. */
  live_migrate: { readonly targetHost: string; readonly targetUri: string };
  /** Live migration, target side: the instance arrived; finish it. */
  post_live_migration: { readonly sourceHost: string };
  /** Live migration failed or was aborted, target side: remove what pre_live_migration made. */
  rollback_live_migration: NoArgs;
  /** Abort another op of this instance that is queued or running here; not queued itself. */
  abort: { readonly targetOpId: string };
}

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
