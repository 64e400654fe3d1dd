/**
 * Runs volume ops on the host's volume backend, at most once per op id, in
 * the op executor's journal and queue (the executor hands them here).
 *
 * - Ops of one volume run one after another in arrival order; different
 *   volumes in parallel (and beside the instances' ops, within the
 *   executor's concurrency).
 * - Each op is journaled `started` before the backend is called and
 *   `finished` with its outcome after: a redelivered op whose outcome is
 *   journaled is re-reported, not run again; one started but not finished
 *   (the agent died meanwhile) is run again, the backend's calls being
 *   idempotent.
 * - An op whose `deadline` has passed is not started (nor run again): it
 *   finishes with a non-retryable "DEADLINE_EXCEEDED", as the executor's do.
 * - create_volume from an image fetches the image through the agent's image
 *   store into `<stateDir>/volume-images/`, checks its SHA-256, hands the
 *   file to the backend and removes it.
 * - create_volume_snapshot takes a snapshot of the volume and reports the
 *   volume's size; delete_volume_snapshot deletes one (an unknown snapshot
 *   or volume is already deleted). A snapshot of a volume not on this host
 *   is "NOT_FOUND".
 * - export_volume exports the volume for one attachment to the compute host
 *   the op names and reports where that host opens it; unexport_volume ends
 *   it. Both report the instance the attachment is for.
 * - grow_volume grows an attached volume (the backend serves its exports
 *   again at the new size) and reports its size, as extend_volume does;
 *   it reports the instance the volume is attached to.
 * - reimage_volume fetches its image as a create does and has the backend
 *   write it over the (attached) volume's content, keeping its size,
 *   snapshots and exports; it reports the volume's size and the instance.
 * - A failure is the one OpFailure (`toFailure`); "POOL_FULL" is retryable
 *   (the controller may place the volume in another pool or host);
 *   "VOLUME_IN_USE" (an export id in use for another volume or host) is not.
 * - A host without a volume backend answers every volume op with a
 *   non-retryable "NO_VOLUME_BACKEND", not journaled (nothing ran).
 */
import { mkdir, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { pino, type Logger } from "pino";
import { withLogContext } from "../../controller/log-context.js";
import { bestEffort } from "../best-effort.js";
import { DriverError } from "../drivers/errors.js";
import { getVerified, type ImageStore } from "../drivers/libvirt/image-store.js";
import type { KeyedQueue } from "../keyed-queue.js";
import type { VolumeImageRecord } from "../../controller/domain/volume-ops.js";
import type { VolumeBackend, VolumeInfo, VolumeSource } from "../volume/backend.js";
import type { AgentVolumeOp } from "./agent-op.js";
import { outcomeOf, type FinishedEntry, type OpJournal } from "./journal.js";
import { ExecutorClosedError, finalFailure, pastDeadline, toFailure, type Execution, type OpFailure, type VolumeResult } from "./outcome.js";

/** What {@link VolumeOps} works with. */
export interface VolumeOpsOptions {
  /** The host's volume backend (none: the host is no volume host). */
  readonly volumes?: VolumeBackend;
  /** Where images a volume is made from come from (none: such a create fails "NO_IMAGE_STORE"). */
  readonly images?: ImageStore;
  /** The executor's journal. */
  readonly journal: OpJournal;
  /** The executor's queue. */
  readonly queue: KeyedQueue;
  /** The agent's state directory; fetched images are in `<stateDir>/volume-images/` while a create copies them. */
  readonly stateDir: string;
  /** Fires when the executor closes. */
  readonly signal: AbortSignal;
  /** Logger (default: none). */
  readonly logger?: Logger;
}

/** An image fetched for a volume: its local file and format, as the backend takes it. */
type ImageFile = Omit<Extract<VolumeSource, { kind: "image" }>, "kind">;

/** Codes of backend failures another try may mend: a full pool (another pool or host may have room). */
const RETRYABLE_CODES: ReadonlySet<string> = new Set(["POOL_FULL"]);

/** A backend failure as the op's failure. */
function volumeFailure(err: unknown): OpFailure {
  const failure = toFailure(err);
  return RETRYABLE_CODES.has(failure.code) ? { ...failure, retryable: true } : failure;
}

/** The backend's format of an image's disk_format: a volume is made from qcow2 or raw. */
function imageFormat(imageId: string, diskFormat: string): "qcow2" | "raw" {
  if (diskFormat === "qcow2" || diskFormat === "raw") return diskFormat;
  throw new DriverError("IMAGE_FORMAT_UNSUPPORTED", `image ${imageId} is ${diskFormat || "of no format"}; a volume is made from a qcow2 or raw image`);
}

/** The size of volume `id` as the backend lists it after `what` ("NOT_FOUND" if it is not there). */
async function sizeAfter(volumes: VolumeBackend, id: string, what: string): Promise<number> {
  const info = (await volumes.list()).volumes.find((v) => v.id === id);
  if (!info) throw new DriverError("NOT_FOUND", `volume ${id} is not on this host after its ${what}`);
  return info.sizeBytes;
}

/** See the module comment. */
export class VolumeOps {
  private readonly log: Logger;
  private readonly imageDir: string;

  constructor(private readonly options: VolumeOpsOptions) {
    this.log = options.logger ?? pino({ level: "silent" });
    // Absolute: the path is part of the source a backend records for a create.
    this.imageDir = resolve(options.stateDir, "volume-images");
  }

  /** Removes images left by creates a stopped agent did not finish (no op runs yet; best effort). */
  async open(): Promise<void> {
    if (!this.options.volumes) return;
    await bestEffort(this.log, "removing images left from unfinished volume creates", () => rm(this.imageDir, { recursive: true, force: true }));
  }

  /**
   * Runs `op` (see the module comment). Rejects only when the outcome could
   * not be journaled or the executor closed during the op.
   */
  execute(op: AgentVolumeOp): Promise<Execution> {
    const { volumes } = this.options;
    if (!volumes) return Promise.resolve(this.noBackend(op));
    const context = { op_id: op.opId, request_id: op.requestId, volume_id: op.volume.id, ...(op.serverId ? { server_id: op.serverId } : {}) };
    return this.options.queue.run(`volume:${op.volume.id}`, () => withLogContext(context, () => this.run(op, volumes)));
  }

  private noBackend(op: AgentVolumeOp): Execution {
    const now = new Date();
    const failure = finalFailure("NO_VOLUME_BACKEND", `${op.kind} of volume ${op.volume.id}: this host serves no volumes (no volume backend)`);
    this.log.warn({ op_id: op.opId, volume_id: op.volume.id, op: op.kind }, "a volume op came to a host without a volume backend");
    return { outcome: { opId: op.opId, serverId: op.serverId, volumeId: op.volume.id, failure, startTime: now, finishTime: now }, replayed: false, reconciled: false };
  }

  private async run(op: AgentVolumeOp, volumes: VolumeBackend): Promise<Execution> {
    const { journal, signal } = this.options;
    if (signal.aborted) throw new ExecutorClosedError(op.opId);
    const record = journal.get(op.opId);
    if (record?.finished) return { outcome: outcomeOf(record.finished), replayed: true, reconciled: false };
    const volumeId = op.volume.id;
    const { serverId } = op;
    const startTime = new Date();
    const reconciled = record?.started !== undefined;
    // op_id, request_id, volume_id and server_id come with the log context (see controller/log-context.ts).
    const log = this.log.child({ op: op.kind });
    let failure = pastDeadline(op.deadline, startTime);
    let volume: VolumeResult | undefined;
    if (!failure) {
      if (reconciled) log.warn("volume op was interrupted by a restart; running it again");
      else await journal.append({ t: "started", opId: op.opId, serverId, volumeId, kind: op.kind, time: startTime.toISOString() });
      try {
        volume = await this.act(op, volumes, log);
      } catch (err) {
        if (signal.aborted) throw new ExecutorClosedError(op.opId);
        failure = volumeFailure(err);
      }
    }
    const entry: FinishedEntry = {
      t: "finished",
      opId: op.opId,
      serverId,
      volumeId,
      ...(failure ? { error: failure } : {}),
      ...(volume && !failure ? { volume } : {}),
      startTime: startTime.toISOString(),
      finishTime: new Date().toISOString(),
    };
    await journal.append(entry);
    if (failure) log.warn({ err: failure }, "volume op failed");
    else log.info({ size_bytes: volume?.sizeBytes, export: volume?.export }, "volume op finished");
    return { outcome: outcomeOf(entry), replayed: false, reconciled };
  }

  /**
   * The backend calls of `op`; resolves what its result reports of the
   * volume (its size after a create, an extend, a growth or a snapshot; nothing after
   * a delete, an unexport or a snapshot's delete).
   */
  private async act(op: AgentVolumeOp, volumes: VolumeBackend, log: Logger): Promise<VolumeResult | undefined> {
    const { id } = op.volume;
    switch (op.kind) {
      case "create_volume":
        return { sizeBytes: (await this.create(op, volumes, log)).sizeBytes };
      case "delete_volume":
        await volumes.delete(id);
        return undefined;
      case "extend_volume":
        await volumes.extend(id, op.sizeBytes);
        return { sizeBytes: await sizeAfter(volumes, id, "extend") };
      case "grow_volume":
        // The backend serves the volume's exports again at the new size; the compute host's hypervisor reconnects.
        await volumes.extend(id, op.sizeBytes);
        return { sizeBytes: await sizeAfter(volumes, id, "growth") };
      case "create_volume_snapshot":
        await volumes.createSnapshot(id, op.snapshotId);
        return { sizeBytes: await sizeAfter(volumes, id, `snapshot ${op.snapshotId}`) };
      case "delete_volume_snapshot":
        await volumes.deleteSnapshot(id, op.snapshotId);
        return undefined;
      case "export_volume": {
        const { host, port, exportName } = await volumes.export(id, op.attachmentId, op.client);
        return { export: { host, port, exportName } };
      }
      case "unexport_volume":
        await volumes.unexport(id, op.attachmentId);
        return undefined;
      case "reimage_volume":
        await this.withImage(id, op.image, log, (image) => volumes.reimage(id, image));
        return { sizeBytes: await sizeAfter(volumes, id, "reimage") };
      default: {
        // A kind added to the vocabulary without its backend calls fails to compile here.
        const unknown: never = op;
        throw new DriverError("INTERNAL", `volume op kind ${(unknown as AgentVolumeOp).kind} has no backend calls on this agent`);
      }
    }
  }

  private async create(op: AgentVolumeOp<"create_volume">, volumes: VolumeBackend, log: Logger): Promise<VolumeInfo> {
    const { id, pool, sizeBytes } = op.volume;
    const { source } = op;
    if (source.kind === "blank") return volumes.create(id, pool, sizeBytes, { kind: "blank" });
    if (source.kind === "snapshot") return volumes.create(id, pool, sizeBytes, { kind: "snapshot", volumeId: source.volumeId, snapshotId: source.snapshotId });
    return this.withImage(id, source.image, log, (image) => volumes.create(id, pool, sizeBytes, { kind: "image", ...image }));
  }

  /**
   * Fetches `image` through the agent's image store for volume `id`,
   * checks its SHA-256, hands the local file to `use` and removes it.
   */
  private async withImage<T>(id: string, image: VolumeImageRecord, log: Logger, use: (file: ImageFile) => Promise<T>): Promise<T> {
    const format = imageFormat(image.id, image.diskFormat);
    const { images } = this.options;
    if (!images) throw new DriverError("NO_IMAGE_STORE", `volume ${id} is to be made from image ${image.id}, but this agent has no image store`);
    // Named after the volume: an op run again after a restart hands the backend the same file.
    const path = join(this.imageDir, `${id}.${format}`);
    try {
      await mkdir(this.imageDir, { recursive: true });
      await getVerified(images, image.id, image.checksum, path, this.options.signal);
      return await use({ path, format });
    } finally {
      await bestEffort(log, "removing the image fetched for a volume", () => rm(path, { force: true }), { path });
    }
  }
}
