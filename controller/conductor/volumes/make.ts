/**
 * Making a volume: placed at once (the pool with the most room left of the
 * type's backend in the zone, or beside the snapshot it copies, claimed
 * atomically), recorded CREATING with its create action, and the
 * create_volume op sent to its host, in the caller's transaction
 * (CreateVolume's, or CreateServer's for a volume it boots from).
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Image, Principal } from "../../domain/types.js";
import type { PoolCandidate, Volume, VolumeSnapshot, VolumeType } from "../../domain/volume.js";
import { effectiveZone } from "../../domain/placement.js";
import { rankPools } from "../../domain/volume.js";
import { GIB } from "../../domain/volume-ops.js";
import { ApiError, invalidArgument } from "../../errors.js";
import { aggregatesByHost } from "../../store/aggregates.js";
import { getSnapshot } from "../../store/volume-snapshots.js";
import type { PoolConnection } from "../../store/db.js";
import { insertVolumeAction } from "../../store/volume-actions.js";
import { candidatePools, claimPoolBytes, getVolume, getVolumeTypeByName, insertVolume } from "../../store/volumes.js";
import type { RequestBody } from "../act.js";
import type { ConductorContext } from "../context.js";
import { checkQuota } from "../quota.js";
import { dispatchVolumeOp, volumeTask } from "./frame.js";

export interface NewVolumeRequest {
  readonly requestId: string;
  readonly name: string;
  readonly description: string;
  readonly sizeGb: number;
  readonly volumeType: string;
  /** "" for any. */
  readonly zone: string;
  readonly image: Image | null;
  /** A snapshot to copy (AVAILABLE, checked by the caller): the volume goes to its volume's pool. */
  readonly snapshot: VolumeSnapshot | null;
}

/** No pool can take the volume: nothing is created. */
function noValidPool(message: string, details: Record<string, string>): ApiError {
  return new ApiError(status.RESOURCE_EXHAUSTED, message, { reason: "NO_VALID_POOL", metadata: details });
}

/**
 * Picks and claims a pool for `bytes`: the candidates by most room left,
 * each claimed with a conditional UPDATE until one takes it.
 */
async function placeVolume(conn: PoolConnection, ctx: ConductorContext, type: VolumeType, zone: string, bytes: number) {
  const upSince = new Date(Date.now() - ctx.serviceDownTimeSeconds * 1000);
  const aggregates = await aggregatesByHost(conn);
  const pools = (await candidatePools(conn, { backend: type.backend, upSince }))
    .map((p) => ({ ...p, zone: effectiveZone(aggregates.get(p.host), p.zone) }))
    .filter((p) => !zone || p.zone === zone);
  const where = `${zone ? ` in zone ${zone}` : ""}${type.backend ? ` of backend ${type.backend} (volume type ${type.name})` : ""}`;
  if (pools.length === 0) throw noValidPool(`no volume host is up with a pool${where}`, { size_gb: String(bytes / GIB), zone, backend: type.backend });
  const ratio = ctx.volumeOversubscriptionRatio;
  for (const p of rankPools(pools, ratio)) {
    if (await claimPoolBytes(conn, p.host, p.name, bytes, ratio)) return p;
  }
  const most = Math.max(...pools.map((p) => Math.floor(p.totalBytes * ratio) - p.allocatedBytes));
  throw noValidPool(`no pool${where} has room for ${bytes / GIB} GiB (the most room left is ${Math.max(0, Math.floor(most / GIB))} GiB)`, {
    size_gb: String(bytes / GIB),
    zone,
    backend: type.backend,
  });
}

/**
 * A volume from a snapshot goes where the snapshot is: its volume's pool
 * (the host copies it there), claimed as any other placement.
 */
async function placeBeside(conn: PoolConnection, ctx: ConductorContext, snapshot: VolumeSnapshot, bytes: number): Promise<PoolCandidate> {
  // Shared: the snapshot is not deleted before this commits (and its delete then sees this volume CREATING from it).
  const locked = await getSnapshot(conn, snapshot.id, { lock: "share" });
  if (locked?.status !== "AVAILABLE") throw invalidArgument("snapshot_id", `snapshot ${snapshot.id} is ${locked?.status ?? "gone"}, not AVAILABLE`);
  const source = await getVolume(conn, snapshot.volumeId);
  if (!source || source.status === "DELETED") throw invalidArgument("snapshot_id", `the volume of snapshot ${snapshot.id} is gone`);
  if (!(await claimPoolBytes(conn, source.host, source.pool, bytes, ctx.volumeOversubscriptionRatio))) {
    throw noValidPool(`the pool of snapshot ${snapshot.id} has no room for ${bytes / GIB} GiB`, { size_gb: String(bytes / GIB), snapshot_id: snapshot.id });
  }
  return { host: source.host, name: source.pool, zone: source.zone, totalBytes: 0, allocatedBytes: 0 };
}

/**
 * Places, records (CREATING, with its create action) and sends the create
 * of a new volume, in the caller's transaction. `fields` names the
 * request's fields in errors (CreateServer's mapping names its own).
 */
export async function makeVolume(
  conn: PoolConnection,
  ctx: ConductorContext,
  who: Principal,
  req: NewVolumeRequest,
  request: RequestBody,
  fields: { readonly volumeType: string; readonly size: string } = { volumeType: "volume_type", size: "size_gb" },
): Promise<{ volume: Volume; actionId: number }> {
  await checkQuota(conn, who.projectId, { volumes: 1, gigabytes: req.sizeGb }, { fields: { gigabytes: fields.size } });
  // Shared: a type is not deleted under a volume being made with it.
  const type = await getVolumeTypeByName(conn, req.volumeType, { lock: "share" });
  if (!type) throw invalidArgument(fields.volumeType, `no volume type is named ${JSON.stringify(req.volumeType)}`);
  const bytes = req.sizeGb * GIB;
  const pool = req.snapshot ? await placeBeside(conn, ctx, req.snapshot, bytes) : await placeVolume(conn, ctx, type, req.zone, bytes);
  const { taskDeadline } = volumeTask(ctx, "CREATING");
  const made = {
    id: randomUUID(),
    projectId: who.projectId,
    name: req.name,
    description: req.description,
    sizeGb: req.sizeGb,
    typeId: type.id,
    zone: pool.zone,
    host: pool.host,
    pool: pool.name,
    sourceImageId: req.image?.id ?? null,
    sourceSnapshotId: req.snapshot?.id ?? null,
    requestId: req.requestId,
    taskDeadline,
  };
  await insertVolume(conn, made);
  const actionId = await insertVolumeAction(conn, { volumeId: made.id, projectId: who.projectId, action: "create", requestId: req.requestId, request, deadline: taskDeadline });
  const now = new Date();
  const volume: Volume = { ...made, claimedGb: null, status: "CREATING", typeName: type.name, fault: null, createdAt: now, updatedAt: now };
  await dispatchVolumeOp(conn, ctx, {
    volume,
    actionId,
    requestId: req.requestId,
    args: { kind: "create_volume", imageId: req.image?.id ?? "", sourceVolumeId: req.snapshot?.volumeId ?? "", sourceSnapshotId: req.snapshot?.id ?? "" },
    deadline: taskDeadline,
    image: req.image,
  });
  return { volume, actionId };
}
