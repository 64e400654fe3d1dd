/**
 * The op vocabulary: every op the controller sends a host, declared once.
 * The wire encoding (bus/op-codec.ts), the action-event names and which ops
 * expire or carry an image are all derived from this file; the flows
 * (conductor/flows/) say what each op's result does.
 */
import type { PowerState } from "./states.js";

/** Arguments of an op, by kind (field names are the ComputeOp message's). */
export type OpArgs =
  | { readonly kind: "spawn" }
  | { readonly kind: "destroy" }
  | { readonly kind: "power_on" }
  | { readonly kind: "power_off"; readonly timeoutSeconds: number }
  | { readonly kind: "reboot"; readonly hard: boolean; readonly softTimeoutSeconds: number }
  | { readonly kind: "pause" }
  | { readonly kind: "unpause" }
  | { readonly kind: "suspend" }
  | { readonly kind: "resume" }
  | { readonly kind: "migrate_disk"; readonly targetHost: string; readonly timeoutSeconds: number }
  | { readonly kind: "finish_migration"; readonly sourceHost: string; readonly powerOn: boolean }
  | { readonly kind: "confirm_migration" }
  | { readonly kind: "revert_migration" }
  | { readonly kind: "finish_revert_migration"; readonly powerOn: boolean }
  | { readonly kind: "abort"; readonly targetOpId: string }
  | { readonly kind: "snapshot"; readonly imageId: string; readonly imageName: string }
  | { readonly kind: "shelve"; readonly imageId: string; readonly imageName: string; readonly timeoutSeconds: number }
  | { readonly kind: "rebuild"; readonly recreate: boolean }
  | { readonly kind: "pre_live_migration"; readonly sourceHost: string }
  | { readonly kind: "live_migrate"; readonly targetHost: string; readonly targetUri: string }
  | { readonly kind: "post_live_migration"; readonly sourceHost: string }
  | { readonly kind: "rollback_live_migration" };

export type OpKind = OpArgs["kind"];

/** What is fixed about an op kind, whatever its flow. */
export interface OpTraits {
  /** The action-event name it is recorded under (Nova's). */
  readonly event: string;
  /** Kills or undoes: it never expires, whenever the host gets it. */
  readonly cleanup?: boolean;
  /** Builds the instance's disks on its host from an image, so it carries the image record. */
  readonly buildsOnHost?: boolean;
}

export const OP_TRAITS: Readonly<Record<OpKind, OpTraits>> = {
  spawn: { event: "compute_spawn", buildsOnHost: true },
  destroy: { event: "compute_terminate", cleanup: true },
  power_on: { event: "compute_start" },
  power_off: { event: "compute_stop" },
  reboot: { event: "compute_reboot" },
  pause: { event: "compute_pause" },
  unpause: { event: "compute_unpause" },
  suspend: { event: "compute_suspend" },
  resume: { event: "compute_resume" },
  migrate_disk: { event: "compute_resize_instance" },
  finish_migration: { event: "compute_finish_resize", buildsOnHost: true },
  confirm_migration: { event: "compute_confirm_resize", cleanup: true },
  revert_migration: { event: "compute_revert_resize", cleanup: true },
  finish_revert_migration: { event: "compute_finish_revert_resize" },
  abort: { event: "compute_abort", cleanup: true },
  snapshot: { event: "compute_snapshot" },
  shelve: { event: "compute_shelve" },
  rebuild: { event: "compute_rebuild", buildsOnHost: true },
  pre_live_migration: { event: "compute_pre_live_migration", buildsOnHost: true },
  live_migrate: { event: "compute_live_migration" },
  post_live_migration: { event: "compute_post_live_migration" },
  rollback_live_migration: { event: "compute_rollback_live_migration", cleanup: true },
};

export const OP_KINDS = Object.keys(OP_TRAITS) as OpKind[];

/** The ComputeOp oneof case of a kind: its camelCase spelling (`power_on` → `powerOn`). */
export function opCase(kind: OpKind): string {
  return kind.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** A failure as a host reports it: the one shape from the driver to the server's fault. */
export interface OpFailure {
  /** Machine code (the driver's, such as SPAWN_FAILED, or ABORTED, TASK_TIMED_OUT). */
  readonly code: string;
  readonly message: string;
  /** Running it again (here or on another host) may succeed. */
  readonly retryable: boolean;
}

/** An op's outcome as its host reported it. */
export interface OpOutcome {
  readonly opId: string;
  readonly error: OpFailure | null;
  readonly powerState: PowerState | null;
  readonly startTime: Date | null;
  readonly finishTime: Date | null;
  /** How the op went, such as a soft reboot that fell back to hard. */
  readonly note?: string;
  /** What a snapshot or shelve stored. */
  readonly snapshot?: { readonly sizeBytes: number; readonly checksum: string; readonly diskFormat: string } | null;
}
