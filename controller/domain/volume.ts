/**
 * Block storage vocabulary: the pools volume hosts offer (Cinder's pools of
 * a cinder-volume backend).
 */

import type { Fault, OperationError, OperationState } from "./types.js";
import { GIB, type VolumeTarget } from "./volume-ops.js";

/** A pool as its volume host reports it. */
export interface ReportedPool {
  /** Unique on its host. */
  readonly name: string;
  /** The backend serving it ("file", "fake"). */
  readonly backend: string;
  readonly totalBytes: number;
  readonly freeBytes: number;
  /** Sum of its volumes' virtual sizes (thin: may exceed totalBytes). */
  readonly provisionedBytes: number;
}

/** A pool with its host's service, as the controller keeps it. */
export interface VolumePool extends ReportedPool {
  readonly host: string;
  /** What the controller placed there (its volumes' sizes). */
  readonly allocatedBytes: number;
  /** The host's own zone (the agent's), before aggregates. */
  readonly hostZone: string;
  readonly enabled: boolean;
  readonly lastSeenAt: Date | null;
  readonly updatedAt: Date;
}

/** A pool name: 1–64 letters, digits, '.', '-' and '_'. */
export const POOL_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** The most pools one host may report. */
export const MAX_POOLS_PER_HOST = 64;

/** Where a volume is in its life (Cinder's statuses). */
export const VOLUME_STATUSES = ["CREATING", "AVAILABLE", "ATTACHING", "IN_USE", "DETACHING", "EXTENDING", "DELETING", "ERROR"] as const;
export type VolumeStatus = (typeof VOLUME_STATUSES)[number];

/** The statuses a volume host is working in: each has a deadline. */
export const VOLUME_TASKS = ["CREATING", "DELETING", "EXTENDING"] as const;
export type VolumeTask = (typeof VOLUME_TASKS)[number];

/** Seconds a volume may stay in each working status. */
export type VolumeTimeouts = Readonly<Record<VolumeTask, number>>;

/** Creating copies an image at worst; deleting and extending are metadata work on a thin pool. */
export const DEFAULT_VOLUME_TIMEOUTS: VolumeTimeouts = { CREATING: 900, DELETING: 300, EXTENDING: 300 };

/** What can be done to a volume: each call's action name. */
export type VolumeAction = "create" | "delete" | "extend" | "create_snapshot" | "delete_snapshot";

/** A volume action's row: the statuses it may start from, the status it sets (none: the volume keeps its own) and whose timeout its deadline is. */
export interface VolumeActionRule {
  readonly from: readonly VolumeStatus[];
  readonly sets: VolumeTask | null;
  readonly timeout: VolumeTask;
}

/**
 * Cinder's checks: delete from a resting or failed volume, extend only an
 * available one, snapshot an available or attached one; a snapshot is
 * deleted whatever its volume does but be made or removed.
 */
export const VOLUME_ACTION_RULES: Readonly<Record<Exclude<VolumeAction, "create">, VolumeActionRule>> = {
  delete: { from: ["AVAILABLE", "ERROR"], sets: "DELETING", timeout: "DELETING" },
  extend: { from: ["AVAILABLE"], sets: "EXTENDING", timeout: "EXTENDING" },
  create_snapshot: { from: ["AVAILABLE", "IN_USE"], sets: null, timeout: "CREATING" },
  delete_snapshot: { from: ["AVAILABLE", "IN_USE", "ATTACHING", "DETACHING", "EXTENDING", "ERROR"], sets: null, timeout: "DELETING" },
};

/** Where a volume snapshot is. */
export const SNAPSHOT_STATUSES = ["CREATING", "AVAILABLE", "DELETING", "ERROR"] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

/** A point-in-time copy of a volume, kept on the volume's host. */
export interface VolumeSnapshot {
  readonly id: string;
  readonly volumeId: string;
  readonly projectId: string;
  readonly name: string;
  readonly description: string;
  readonly sizeGb: number;
  readonly status: SnapshotStatus;
  readonly fault: VolumeFault | null;
  readonly taskDeadline: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** The largest volume, in GiB (16 TiB). */
export const MAX_VOLUME_GB = 16384;

/** A volume type name: as a pool name. */
export const VOLUME_TYPE_NAME = POOL_NAME;

/** The type a volume gets when none is named. */
export const DEFAULT_VOLUME_TYPE = "default";

/** A volume type: a name users pick, the backend its volumes go to ("" any). */
export interface VolumeType {
  readonly id: string;
  readonly name: string;
  readonly backend: string;
  readonly description: string;
  readonly createdAt: Date;
}

/** A failure on a volume or snapshot, kept on it: the server's Fault. */
export type VolumeFault = Fault;

/** A volume as the controller keeps it. */
export interface Volume {
  readonly id: string;
  readonly projectId: string;
  readonly name: string;
  readonly description: string;
  readonly sizeGb: number;
  /** The size an extend in flight claimed on the pool (null: none): what the volume holds there until it ends. */
  readonly claimedGb: number | null;
  /** Deleted volumes are kept (their request id stays taken) but seen by no call. */
  readonly status: VolumeStatus | "DELETED";
  readonly typeId: string;
  readonly typeName: string;
  readonly zone: string;
  readonly host: string;
  readonly pool: string;
  readonly sourceImageId: string | null;
  readonly sourceSnapshotId: string | null;
  readonly requestId: string;
  readonly fault: VolumeFault | null;
  /** When the working status (CREATING, DELETING, EXTENDING) times out. */
  readonly taskDeadline: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A pool a volume may be placed in, with what it holds. */
export interface PoolCandidate {
  readonly host: string;
  readonly name: string;
  /** Its host's zone (an aggregate's, else the agent's). */
  readonly zone: string;
  readonly totalBytes: number;
  /** What the controller has claimed on it (its volumes' sizes). */
  readonly allocatedBytes: number;
}

/**
 * Orders the pools a volume may go to: the most room left first (Cinder's
 * capacity weigher), so volumes spread over hosts; ties by host and name.
 */
export function rankPools(pools: readonly PoolCandidate[], ratio: number): PoolCandidate[] {
  const room = (p: PoolCandidate) => p.totalBytes * ratio - p.allocatedBytes;
  return [...pools].sort((a, b) => room(b) - room(a) || a.host.localeCompare(b.host) || a.name.localeCompare(b.name));
}

/** A volume's action: its Operation (`volumes/{id}/operations/{request_id}`). */
export interface VolumeOperation {
  readonly id: number;
  readonly volumeId: string;
  readonly projectId: string;
  readonly action: VolumeAction;
  readonly requestId: string;
  /** What it was asked with, to tell a repeat from another request. */
  readonly request: Readonly<Record<string, unknown>> | null;
  readonly state: OperationState;
  readonly error: OperationError | null;
  readonly deadline: Date | null;
  readonly startTime: Date;
  readonly updatedAt: Date;
  readonly finishTime: Date | null;
  /** The snapshot a snapshot action is about. */
  readonly snapshotId: string | null;
}

/** Where an attachment is ("detached": unplugged, its export's end not yet confirmed). */
export type AttachmentState = "attaching" | "attached" | "detaching" | "detached";

/** A volume's attachment to a server (one at a time). */
/** The device a server's root volume is attached as (a server booted from a volume). */
export const ROOT_DEVICE = "vda";

export interface VolumeAttachment {
  readonly id: string;
  readonly volumeId: string;
  readonly instanceUuid: string;
  /** The server's host when it was attached: the export's only client. */
  readonly computeHost: string;
  /** The guest's device ("" until the host answered, unless asked for). */
  readonly device: string;
  readonly deleteOnTermination: boolean;
  readonly state: AttachmentState;
  /** Where the compute host opens the volume, once its volume host exported it. */
  readonly export: { readonly host: string; readonly port: number; readonly exportName: string } | null;
  /** The id of that export on the volume host (the attachment's id until a live migration gave it another). */
  readonly exportId: string;
  /** While its server live-migrates: the export made for the target host. */
  readonly move: AttachmentMove | null;
  readonly createdAt: Date;
}

/** The second export of an attached volume while its server live-migrates. */
export interface AttachmentMove {
  /** The target host: the export's client. */
  readonly host: string;
  /** The export's id on the volume host. */
  readonly exportId: string;
  /** The export_volume op that makes it. */
  readonly opId: string;
  /** Where the target opens the volume, once made. */
  readonly export: { readonly host: string; readonly port: number; readonly exportName: string } | null;
}

/** Devices a guest may be asked to give a volume: vdb … vdz (vda is the root disk). */
export const VOLUME_DEVICE = /^vd[b-z]$/;

/** A volume as an op tells its volume host of it. */
export function volumeTarget(v: Volume): VolumeTarget {
  return { id: v.id, projectId: v.projectId, pool: v.pool, sizeBytes: v.sizeGb * GIB };
}
