/**
 * The volume backend: the agent's hands on a volume host's storage (the
 * nova-volume / cinder-volume role of a host), beside the hypervisor and
 * network drivers. A backend keeps volumes in pools, snapshots them, and
 * exports a volume to compute hosts, one export per export id (an
 * attachment, or a move of one), so each such host's hypervisor opens it
 * over the network (and no host it was not exported to can). A volume may
 * be exported to several hosts at once: while a live migration moves its
 * server, the source and the target both have it open.
 *
 * Every method is idempotent (a retry after a crash finds the work done or
 * finishes it), and every rejection is a DriverError
 * (agent/drivers/errors.ts) with a machine code ({@link VolumeErrorCode}).
 * Calls on one volume may come concurrently; a backend orders them.
 *
 * Ids (volumes, snapshots, attachments) and client names are checked with
 * {@link VOLUME_ID_PATTERN} and {@link CLIENT_NAME_PATTERN}: they become
 * file names, qemu option values and NBD export names.
 */

/** Codes a backend rejects with (besides "INTERNAL" and its own command failures). */
export type VolumeErrorCode =
  /** No such pool, volume (extend, reimage, snapshot, export, a snapshot source), snapshot (a snapshot source) or image file. */
  | "NOT_FOUND"
  /** An id or client name that does not match its pattern, a size that is not a positive whole number of bytes. */
  | "INVALID_ARGUMENT"
  /** `create` of an id that exists in another pool or with another requested size or source. */
  | "VOLUME_EXISTS"
  /** The pool cannot take the bytes asked for (create or extend). */
  | "POOL_FULL"
  /** `extend` to a size below the volume's. */
  | "SHRINK_REFUSED"
  /** `export` of an export id that is already exported for another volume or another client. */
  | "VOLUME_IN_USE"
  /** `reimage` with an image whose virtual size exceeds the volume's (nothing is changed). */
  | "IMAGE_TOO_LARGE";

/** Volume, snapshot and attachment ids: a letter or digit, then letters, digits, `.`, `_`, `-` (128 at most; UUIDs fit). */
export const VOLUME_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Client names: a host name as the compute host's certificate carries it (its CN). */
export const CLIENT_NAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/** A pool's capacity, as reported to the controller. */
export interface PoolCapacity {
  /** The pool's name, unique on its host. */
  readonly name: string;
  /**
   * Bytes the pool may hold in all: its configured limit, else the size of
   * the storage it is on. Volumes are refused ("POOL_FULL") when their
   * virtual sizes would add up to more than this.
   */
  readonly totalBytes: number;
  /** Bytes of that still free (thin volumes use only what was written; never more than the storage has free). */
  readonly freeBytes: number;
  /** Sum of the virtual sizes of the pool's volumes (thin: may exceed what is used, never `totalBytes`). */
  readonly provisionedBytes: number;
}

/** A local image file (qcow2 or raw) the agent fetched: a volume's content (`create`, `reimage`). */
export interface VolumeImage {
  readonly path: string;
  readonly format: "qcow2" | "raw";
}

/** Where a new volume's content comes from. */
export type VolumeSource =
  | { readonly kind: "blank" }
  /** An image; the volume is at least its virtual size. */
  | ({ readonly kind: "image" } & VolumeImage)
  /** A snapshot of a volume on this host (a copy: the new volume does not depend on it); at least the snapshot's size. */
  | { readonly kind: "snapshot"; readonly volumeId: string; readonly snapshotId: string };

/** A volume the backend holds. */
export interface VolumeInfo {
  readonly id: string;
  readonly pool: string;
  /** Virtual size (the size asked for, or the source's when that is larger; grown by `extend`). */
  readonly sizeBytes: number;
  /** Its snapshots, oldest first. */
  readonly snapshotIds: readonly string[];
}

/** One export (of an attachment, or of a move of one): what the compute host's hypervisor connects to. */
export interface ExportInfo {
  readonly volumeId: string;
  /** The export id (the field keeps its name: an attachment's first export has the attachment's id). */
  readonly attachmentId: string;
  /** NBD over TLS: host name or address and port the compute host reaches. */
  readonly host: string;
  readonly port: number;
  /** The NBD export name (the export id). */
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
   * Creating a volume that exists in the same pool with the same requested
   * size and source resolves with it; another pool, size or source is
   * "VOLUME_EXISTS". Not enough room in the pool is "POOL_FULL"; an unknown
   * pool, or a snapshot source that is not there, "NOT_FOUND".
   */
  create(id: string, pool: string, sizeBytes: number, source: VolumeSource): Promise<VolumeInfo>;

  /** Deletes a volume with its snapshots; an exported volume is unexported first. Unknown ids resolve. */
  delete(id: string): Promise<void>;

  /**
   * Grows a volume to `sizeBytes` (never shrinks: "SHRINK_REFUSED"; its own
   * size resolves), also while exported: a client sees the new size when it
   * next connects.
   */
  extend(id: string, sizeBytes: number): Promise<void>;

  /**
   * Replaces volume `id`'s content with an image's (a local file the agent
   * fetched, as `create` takes it), keeping the volume's id, pool, size,
   * snapshots and exports: what follows the image's data reads as zeros.
   * Also while exported: a client sees the new content when it next
   * connects (its server is stopped meanwhile). An image whose virtual size
   * exceeds the volume's is "IMAGE_TOO_LARGE" and changes nothing; an
   * unknown volume is "NOT_FOUND". Idempotent: reimaging again with the
   * same image gives the same content.
   */
  reimage(id: string, image: VolumeImage): Promise<void>;

  /** Takes snapshot `snapshotId` of a volume (point in time, also while exported); one that exists resolves. */
  createSnapshot(volumeId: string, snapshotId: string): Promise<void>;

  /** Deletes a snapshot; unknown ones (or volumes) resolve. */
  deleteSnapshot(volumeId: string, snapshotId: string): Promise<void>;

  /**
   * Exports a volume under export id `attachmentId` to the compute host
   * named `client` (the name its certificate carries): that host can open
   * it, and no host the volume is not exported to can. A volume may have
   * several exports, to one host or to several at once (a live migration
   * has it open on the source and the target); the volume's content is one,
   * whichever export a write comes through. Exporting again the same id for
   * the same volume and client returns the same export; an id already
   * exported for another volume or client is "VOLUME_IN_USE".
   */
  export(volumeId: string, attachmentId: string, client: string): Promise<ExportInfo>;

  /** Ends one export (by its id); the volume's other exports keep serving; unknown ones resolve. */
  unexport(volumeId: string, attachmentId: string): Promise<void>;

  /** The volumes (by id) and exports (by export id) held now (after a restart: what to reconcile against the controller's view). */
  list(): Promise<{ volumes: VolumeInfo[]; exports: ExportInfo[] }>;

  /** Stops what the backend runs for itself; exports keep serving unless `stopExports`. */
  close(opts?: { stopExports?: boolean }): Promise<void>;
}
