/**
 * Block storage vocabulary: the pools volume hosts offer (Cinder's pools of
 * a cinder-volume backend).
 */

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
