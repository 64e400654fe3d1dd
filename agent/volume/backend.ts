/**
 * The volume backend: the agent's hands on a volume host's storage (the
 * nova-volume / cinder-volume role of a host), beside the hypervisor and
 * network drivers. A backend keeps volumes in pools, snapshots them, and
 * exports a volume to one compute host per attachment, so that host's
 * hypervisor opens it over the network (and no other host can).
 *
 * Every method is idempotent (a retry after a crash finds the work done or
 * finishes it), and every rejection is a DriverError
 * (agent/drivers/errors.ts) with a machine code.
 */

/** A pool's capacity, as reported to the controller. */
export interface PoolCapacity {
  /** The pool's name, unique on its host. */
  readonly name: string;
  /** Bytes the pool's storage holds in all. */
  readonly totalBytes: number;
  /** Bytes of that still free on the storage. */
  readonly freeBytes: number;
  /** Sum of the virtual sizes of the pool's volumes (thin: may exceed what is used). */
  readonly provisionedBytes: number;
}

/** Where a new volume's content comes from. */
export type VolumeSource =
  | { readonly kind: "blank" }
  /** A local image file (qcow2 or raw) the agent fetched; the volume is at least its virtual size. */
  | { readonly kind: "image"; readonly path: string; readonly format: "qcow2" | "raw" }
  /** A snapshot of a volume on this host. */
  | { readonly kind: "snapshot"; readonly volumeId: string; readonly snapshotId: string };

/** A volume the backend holds. */
export interface VolumeInfo {
  readonly id: string;
  readonly pool: string;
  /** Virtual size. */
  readonly sizeBytes: number;
  readonly snapshotIds: readonly string[];
}

/** One attachment's export: what the compute host's hypervisor connects to. */
export interface ExportInfo {
  readonly volumeId: string;
  readonly attachmentId: string;
  /** NBD over TLS: host name or address and port the compute host reaches. */
  readonly host: string;
  readonly port: number;
  /** The NBD export name. */
  readonly exportName: string;
  /** The client identity the export admits (the compute host's certificate name). */
  readonly client: string;
}

export interface VolumeBackend {
  /** Which implementation ("fake", "file"). */
  readonly kind: string;

  /** Capacity of each pool. */
  pools(): Promise<PoolCapacity[]>;

  /**
   * Creates volume `id` of `sizeBytes` (virtual) in `pool` from `source`.
   * Creating a volume that exists with the same size resolves. Not enough
   * room in the pool is DriverError "POOL_FULL".
   */
  create(id: string, pool: string, sizeBytes: number, source: VolumeSource): Promise<VolumeInfo>;

  /** Deletes a volume with its snapshots; an exported volume is unexported first. Unknown ids resolve. */
  delete(id: string): Promise<void>;

  /** Grows a volume to `sizeBytes` (never shrinks: "SHRINK_REFUSED"), also while exported. */
  extend(id: string, sizeBytes: number): Promise<void>;

  /** Takes snapshot `snapshotId` of a volume (point in time, also while exported). */
  createSnapshot(volumeId: string, snapshotId: string): Promise<void>;

  /** Deletes a snapshot; unknown ones resolve. */
  deleteSnapshot(volumeId: string, snapshotId: string): Promise<void>;

  /**
   * Exports a volume for one attachment to the compute host named `client`
   * (the name its certificate carries): only that host can open it.
   * Exporting again for the same attachment returns the same export.
   */
  export(volumeId: string, attachmentId: string, client: string): Promise<ExportInfo>;

  /** Ends an attachment's export; unknown ones resolve. */
  unexport(volumeId: string, attachmentId: string): Promise<void>;

  /** The volumes and exports held now (after a restart: what to reconcile against the controller's view). */
  list(): Promise<{ volumes: VolumeInfo[]; exports: ExportInfo[] }>;

  /** Stops what the backend runs for itself; exports keep serving unless `stopExports`. */
  close(opts?: { stopExports?: boolean }): Promise<void>;
}
