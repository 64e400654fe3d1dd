/**
 * The ops a volume host runs on its volumes, declared once for the
 * controller and the agent (as domain/ops.ts declares the compute ops).
 * They travel in the same ComputeOp message, with its `volume` set instead
 * of its `instance`; the oneof case is the kind in camelCase.
 */

/** Arguments of a volume op, by kind (field names are the proto messages'). */
export type VolumeOpArgs =
  /**
   * Create the volume in its pool: blank, or from the image `imageId`
   * (its record travels with the op), or from snapshot `sourceSnapshotId`
   * of volume `sourceVolumeId` on the same host.
   */
  | { readonly kind: "create_volume"; readonly imageId: string; readonly sourceVolumeId: string; readonly sourceSnapshotId: string }
  /** Delete the volume with its snapshots and exports (an unknown one is already deleted). */
  | { readonly kind: "delete_volume" }
  /** Grow the volume to `sizeBytes`. */
  | { readonly kind: "extend_volume"; readonly sizeBytes: number }
  /** Take snapshot `snapshotId` of the volume. */
  | { readonly kind: "create_volume_snapshot"; readonly snapshotId: string }
  /** Delete snapshot `snapshotId` of the volume (an unknown one is already deleted). */
  | { readonly kind: "delete_volume_snapshot"; readonly snapshotId: string };

export type VolumeOpKind = VolumeOpArgs["kind"];

/** What is fixed about a volume op kind. */
export interface VolumeOpTraits {
  /** Undoes: it never expires, whenever the host gets it. */
  readonly cleanup?: boolean;
}

export const VOLUME_OP_TRAITS: Readonly<Record<VolumeOpKind, VolumeOpTraits>> = {
  create_volume: {},
  delete_volume: { cleanup: true },
  extend_volume: {},
  create_volume_snapshot: {},
  delete_volume_snapshot: { cleanup: true },
};

/** Whether a ComputeOp oneof case (camelCase) is a volume op's. */
export function isVolumeOpCase(opCase: string): boolean {
  const kind = opCase.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return Object.hasOwn(VOLUME_OP_TRAITS, kind);
}

/** The record of an image a volume is made from, as it travels with the op. */
export interface VolumeImageRecord {
  readonly id: string;
  readonly name: string;
  /** qcow2 or raw: the formats a volume host makes volumes from. */
  readonly diskFormat: string;
  /** SHA-256 hex of its bytes ("": not checked). */
  readonly checksum: string;
}

/**
 * Where a new volume's content comes from, as its host takes a
 * create_volume op: nothing, an image (its record), or a snapshot of a
 * volume on the same host.
 */
export type VolumeOpSource =
  | { readonly kind: "blank" }
  | { readonly kind: "image"; readonly image: VolumeImageRecord }
  | { readonly kind: "snapshot"; readonly volumeId: string; readonly snapshotId: string };

/** A volume as its host is told of it. */
export interface VolumeTarget {
  readonly id: string;
  readonly projectId: string;
  readonly pool: string;
  readonly sizeBytes: number;
}

/** What a volume op left, as its host reported it. */
export interface VolumeOpState {
  readonly sizeBytes: number;
}

/** Bytes in a GiB: volume sizes are whole GiB in the API. */
export const GIB = 1024 ** 3;
