/**
 * The op vocabulary: every op the controller sends a host, declared once.
 * The wire encoding (bus/op-codec.ts), the action-event names and which ops
 * expire or carry an image are all derived from this file; the flows
 * (conductor/flows/) say what each op's result does.
 */
import type { PowerState } from "./states.js";
import type { VolumeImageRecord } from "./volume-ops.js";

/**
 * Arguments of an op, by kind (field names are the ComputeOp message's).
 * The agent takes its op type from here too (agent/ops/agent-op.ts), so the
 * vocabulary is written once for both ends.
 */
export type OpArgs =
  /** Create and start the instance; booted from a volume, its root disk opens `rootExport` (attachment `rootAttachmentId`); `volumes` are attached. */
  | ({ readonly kind: "spawn" } & HostVolumes)
  /** Destroy the virtual machine and its disks. */
  | { readonly kind: "destroy" }
  | { readonly kind: "power_on" }
  /** `timeoutSeconds`: clean shutdown time before forcing (0: the driver's default). */
  | { readonly kind: "power_off"; readonly timeoutSeconds: number }
  /** `softTimeoutSeconds` (0: the driver's default) is ignored when `hard`. */
  | { readonly kind: "reboot"; readonly hard: boolean; readonly softTimeoutSeconds: number }
  | { readonly kind: "pause" }
  | { readonly kind: "unpause" }
  /** Suspend to disk (managed save). */
  | { readonly kind: "suspend" }
  | { readonly kind: "resume" }
  /** Resize/cold migrate, source side: power off and hand the disk over. */
  | { readonly kind: "migrate_disk"; readonly targetHost: string; readonly timeoutSeconds: number; readonly bootsFromVolume?: boolean }
  /** Resize/cold migrate, target side: create the instance from the migrated disk (or its root volume), with its volumes. */
  | ({ readonly kind: "finish_migration"; readonly sourceHost: string; readonly powerOn: boolean } & HostVolumes)
  /** Confirm, source side: remove the old copy. */
  | { readonly kind: "confirm_migration" }
  /** Revert, target side: remove the new copy. */
  | { readonly kind: "revert_migration" }
  /** Revert, source side: bring the old copy back. */
  | { readonly kind: "finish_revert_migration"; readonly powerOn: boolean }
  /** Abort another op of this instance that is queued or running on the host; not queued itself. */
  | { readonly kind: "abort"; readonly targetOpId: string }
  /** Snapshot the root disk into the image `imageId`. */
  | { readonly kind: "snapshot"; readonly imageId: string; readonly imageName: string }
  /** Power off, snapshot into `imageId` (none if empty), remove from the host. */
  | { readonly kind: "shelve"; readonly imageId: string; readonly imageName: string; readonly timeoutSeconds: number }
  /** Rebuild from the instance's (new) image; `recreate`: create it if it is not on this host. */
  | ({ readonly kind: "rebuild"; readonly recreate: boolean } & HostVolumes)
  /** Live migration, target side: prepare to receive the instance. */
  | { readonly kind: "pre_live_migration"; readonly sourceHost: string; readonly bootsFromVolume: boolean }
  /** Live migration, source side: move the running instance; reports progress; abortable. */
  | { readonly kind: "live_migrate"; readonly targetHost: string; readonly targetUri: string; readonly volumes: readonly MigratingVolume[] }
  /** Live migration, target side: the instance arrived; finish it. */
  | { readonly kind: "post_live_migration"; readonly sourceHost: string }
  /** Live migration failed or was aborted, target side: remove what pre_live_migration made. */
  | { readonly kind: "rollback_live_migration" }
  /** Hot-plug the interface of the instance's port `portId` (every port of the instance is carried). */
  | { readonly kind: "attach_interface"; readonly portId: string }
  /** Remove the interface of port `portId` (the hypervisor knows it by `macAddress`). */
  | { readonly kind: "detach_interface"; readonly portId: string; readonly macAddress: string }
  /** Hot-plug the export of attachment `attachmentId` of volume `volumeId` (device "" : the first free one). */
  | { readonly kind: "attach_volume"; readonly attachmentId: string; readonly volumeId: string; readonly export: VolumeExport; readonly device: string }
  /** Unplug the volume of attachment `attachmentId`. */
  | { readonly kind: "detach_volume"; readonly attachmentId: string }
  /** Pause the running instance ahead of its volume host serving the volume of attachment `attachmentId` again. */
  | { readonly kind: "hold_volume_disk"; readonly attachmentId: string }
  /** Make the running instance see the size (`sizeBytes`) of the volume of attachment `attachmentId`; end a hold. */
  | { readonly kind: "extend_volume_disk"; readonly attachmentId: string; readonly sizeBytes: number }
  /** Volume host: export the op's volume for attachment `attachmentId` to compute host `client`. */
  | { readonly kind: "export_volume"; readonly attachmentId: string; readonly client: string }
  /** Volume host: end the export of attachment `attachmentId`. */
  | { readonly kind: "unexport_volume"; readonly attachmentId: string }
  /** Volume host: grow the op's (attached) volume to `sizeBytes` and serve its exports again at that size. */
  | { readonly kind: "grow_volume"; readonly sizeBytes: number }
  /** Volume host: replace the op's (attached, root) volume's content with image `image`'s; its size, snapshots and exports stay. */
  | { readonly kind: "reimage_volume"; readonly image: VolumeImageRecord };

/**
 * The volumes of an instance a host creates (spawn, an evacuation's
 * recreate, a cold migration's target), each at its export for that host:
 * the root volume of a server booted from one, and the attached others.
 */
export interface HostVolumes {
  readonly rootAttachmentId?: string;
  readonly rootExport?: VolumeExport;
  readonly volumes?: readonly AttachedVolume[];
}

/** An attached volume of an instance a host creates: its attachment, device and export for that host. */
export interface AttachedVolume {
  readonly attachmentId: string;
  readonly device: string;
  readonly export: VolumeExport;
}

/** An attached volume during a live migration: where the target opens it. */
export interface MigratingVolume {
  readonly attachmentId: string;
  readonly export: VolumeExport;
}

/** Where a compute host opens an exported volume (NBD over TLS). */
export interface VolumeExport {
  readonly host: string;
  readonly port: number;
  readonly exportName: string;
}

export type OpKind = OpArgs["kind"];

/** What is fixed about an op kind, whatever its flow. */
export interface OpTraits {
  /** The action-event name it is recorded under (Nova's). */
  readonly event: string;
  /** Kills or undoes: it never expires, whenever the host gets it. */
  readonly cleanup?: boolean;
  /** Builds the instance's disks on its host from an image, so it carries the image record. */
  readonly buildsOnHost?: boolean;
  /** Creates or restores the instance on its host, so it carries the ports the host plugs. */
  readonly plugsPorts?: boolean;
  /** May leave the instance gone from the host it ran on, whose ports then go too. */
  readonly mayRemove?: boolean;
  /** Runs on a volume host on one of its volumes: the op carries the volume (and the instance, for the record). */
  readonly onVolumeHost?: boolean;
}

export const OP_TRAITS: Readonly<Record<OpKind, OpTraits>> = {
  spawn: { event: "compute_spawn", buildsOnHost: true, plugsPorts: true, mayRemove: true },
  destroy: { event: "compute_terminate", cleanup: true, mayRemove: true },
  power_on: { event: "compute_start" },
  power_off: { event: "compute_stop" },
  reboot: { event: "compute_reboot" },
  pause: { event: "compute_pause" },
  unpause: { event: "compute_unpause" },
  suspend: { event: "compute_suspend" },
  resume: { event: "compute_resume" },
  migrate_disk: { event: "compute_resize_instance" },
  finish_migration: { event: "compute_finish_resize", buildsOnHost: true, plugsPorts: true, mayRemove: true },
  confirm_migration: { event: "compute_confirm_resize", cleanup: true, mayRemove: true },
  revert_migration: { event: "compute_revert_resize", cleanup: true, mayRemove: true },
  finish_revert_migration: { event: "compute_finish_revert_resize", plugsPorts: true },
  abort: { event: "compute_abort", cleanup: true },
  snapshot: { event: "compute_snapshot" },
  shelve: { event: "compute_shelve", mayRemove: true },
  rebuild: { event: "compute_rebuild", buildsOnHost: true, plugsPorts: true, mayRemove: true },
  pre_live_migration: { event: "compute_pre_live_migration", buildsOnHost: true, plugsPorts: true, mayRemove: true },
  live_migrate: { event: "compute_live_migration", mayRemove: true },
  post_live_migration: { event: "compute_post_live_migration" },
  rollback_live_migration: { event: "compute_rollback_live_migration", cleanup: true, mayRemove: true },
  attach_interface: { event: "compute_attach_interface", plugsPorts: true },
  detach_interface: { event: "compute_detach_interface" },
  attach_volume: { event: "compute_attach_volume" },
  detach_volume: { event: "compute_detach_volume", cleanup: true },
  hold_volume_disk: { event: "compute_hold_volume" },
  // It ends a hold, also after the volume host failed: whenever the host gets it.
  extend_volume_disk: { event: "compute_extend_volume", cleanup: true },
  export_volume: { event: "volume_export", onVolumeHost: true },
  unexport_volume: { event: "volume_unexport", cleanup: true, onVolumeHost: true },
  grow_volume: { event: "volume_extend", onVolumeHost: true },
  reimage_volume: { event: "volume_reimage", onVolumeHost: true },
};

export const OP_KINDS = Object.keys(OP_TRAITS) as OpKind[];

/** The ComputeOp oneof case of a kind: its camelCase spelling (`power_on` → `powerOn`). */
export function opCase(kind: OpKind): string {
  return kind.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The kind of a ComputeOp oneof case (`powerOn` → `power_on`); undefined for a case no kind has. */
export function kindOfCase(opCase: string): OpKind | undefined {
  const kind = opCase.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return Object.hasOwn(OP_TRAITS, kind) ? (kind as OpKind) : undefined;
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
  /** The image data the op stored, if it took a snapshot. */
  readonly snapshot?: { readonly sizeBytes: number; readonly checksum: string; readonly diskFormat: string } | null;
  /**
   * What a volume op or an attach left: the volume's size (create, extend),
   * its export (export_volume), the instance's device (attach_volume).
   */
  readonly volume?: { readonly sizeBytes: number; readonly export?: VolumeExport | null; readonly device?: string } | null;
}

/**
 * Ops are signed by the controller and verified by the agent before it runs
 * them: an op that reached the bus any other way is refused. The signature
 * (ed25519, by an nkey) covers the subject, so an op for one host cannot be
 * replayed onto another's subject.
 */
export const OP_SIGNATURE_HEADER = "Nm-Signature";
export const OP_SIGNING_KEY_HEADER = "Nm-Signing-Key";

/** The bytes an op's signature covers: its subject, a NUL, its payload. */
export function opSignedBytes(subject: string, payload: Uint8Array): Uint8Array {
  const s = new TextEncoder().encode(subject);
  const out = new Uint8Array(s.length + 1 + payload.length);
  out.set(s, 0);
  out.set(payload, s.length + 1);
  return out;
}
