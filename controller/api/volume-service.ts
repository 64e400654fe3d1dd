/** VolumeService: volumes and volume types (see proto/novamesh/volume/v1/volume.proto). */
import { randomUUID } from "node:crypto";
import {
  VolumeSnapshotStatus as PbSnapshotStatus,
  VolumeStatus as PbVolumeStatus,
  type VolumeSnapshot as PbVolumeSnapshot,
  type Volume as PbVolume,
  type VolumeServiceServer,
  type VolumeType as PbVolumeType,
} from "../../gen/novamesh/volume/v1/volume.js";
import type { ConductorContext } from "../conductor/context.js";
import { extendAttachedVolume } from "../conductor/flows/volume-extend.js";
import { createSnapshot, createVolume, deleteSnapshot, deleteVolume, extendVolume, visibleSnapshot, visibleVolume, type VolumeAccepted } from "../conductor/volumes/index.js";
import { listSnapshots } from "../store/volume-snapshots.js";
import type { Volume, VolumeAttachment, VolumeSnapshot, VolumeStatus, VolumeType } from "../domain/volume.js";
import { DEFAULT_VOLUME_TYPE, MAX_VOLUME_GB, VOLUME_STATUSES, VOLUME_TYPE_NAME } from "../domain/volume.js";
import { GIB } from "../domain/volume-ops.js";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { getImage } from "../store/catalog.js";
import { isDuplicateKey, withTx } from "../store/db.js";
import { attachmentsOfVolumes } from "../store/volume-attachments.js";
import { deleteVolumeType, findVolumeByRequest, getVolumeTypeByName, insertVolumeType, listVolumes, listVolumeTypes, volumeTypeInUse } from "../store/volumes.js";
import { fromEnum, operationToProto, toEnum, volumeOperationToProto } from "./convert.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { isAdmin, unary } from "./rpc.js";
import * as v from "./validate.js";
import type { Viewer } from "./viewer.js";
import { maskHosts, maskMap, viewerOf } from "./viewer.js";

/** Backends a volume type may name (agent/volume/). */
const BACKENDS = ["file", "fake"];

export function volumeToProto(x: Volume, viewer: Viewer, attachments: readonly VolumeAttachment[] = []): PbVolume {
  const mask = (t: string) => maskHosts(viewer, x.projectId, t, [x.host]);
  return {
    id: x.id,
    name: x.name,
    description: x.description,
    projectId: x.projectId,
    sizeGb: x.sizeGb,
    status: x.status === "DELETED" ? PbVolumeStatus.VOLUME_STATUS_UNSPECIFIED : toEnum(PbVolumeStatus, "VOLUME_STATUS_", x.status),
    volumeType: x.typeName,
    availabilityZone: x.zone,
    sourceImageId: x.sourceImageId ?? "",
    sourceSnapshotId: x.sourceSnapshotId ?? "",
    fault: x.fault
      ? { code: x.fault.code, message: mask(x.fault.message), details: maskMap(viewer, x.projectId, x.fault.details, [x.host]), createTime: new Date(x.fault.createdAt) }
      : undefined,
    host: viewer.admin ? x.host : "",
    pool: viewer.admin ? x.pool : "",
    requestId: x.requestId,
    createTime: x.createdAt,
    updateTime: x.updatedAt,
    attachments: attachments.map((a) => ({ id: a.id, serverId: a.instanceUuid, device: a.device, deleteOnTermination: a.deleteOnTermination, attachTime: a.createdAt })),
  };
}

function snapshotToProto(s: VolumeSnapshot, viewer: Viewer): PbVolumeSnapshot {
  return {
    id: s.id,
    volumeId: s.volumeId,
    name: s.name,
    description: s.description,
    projectId: s.projectId,
    sizeGb: s.sizeGb,
    status: toEnum(PbSnapshotStatus, "VOLUME_SNAPSHOT_STATUS_", s.status),
    fault: s.fault
      ? { code: s.fault.code, message: maskHosts(viewer, s.projectId, s.fault.message), details: maskMap(viewer, s.projectId, s.fault.details), createTime: new Date(s.fault.createdAt) }
      : undefined,
    createTime: s.createdAt,
    updateTime: s.updatedAt,
  };
}

function typeToProto(t: VolumeType): PbVolumeType {
  return { id: t.id, name: t.name, backend: t.backend, description: t.description, createTime: t.createdAt };
}

function sizeGb(field: string, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw invalidArgument(field, `must be a whole number of GiB ≥ 1, got ${n}`);
  if (n > MAX_VOLUME_GB) throw invalidArgument(field, `must be at most ${MAX_VOLUME_GB} GiB`);
  return n;
}

function requireAdmin(ctx: CallContext, what: string): void {
  if (!isAdmin(ctx)) throw permissionDenied(`${what} needs the admin role`);
}

export function volumeService(deps: RpcDeps, conductor: ConductorContext): VolumeServiceServer {
  const { pool } = deps;

  return {
    createVolume: unary(deps, "CreateVolume", async (req, ctx) => {
      const requestId = v.requestId("request_id", req.requestId);
      const name = v.text("name", req.name.trim());
      const description = v.text("description", req.description);
      const size = sizeGb("size_gb", req.sizeGb);
      const volumeType = req.volumeType || DEFAULT_VOLUME_TYPE;
      if (!VOLUME_TYPE_NAME.test(volumeType)) throw invalidArgument("volume_type", "must be 1-64 letters, digits, '.', '-' or '_'");
      const zone = req.availabilityZone ? v.name("availability_zone", req.availabilityZone) : "";
      if (req.imageId && req.snapshotId) throw invalidArgument("snapshot_id", "give image_id or snapshot_id, not both");
      const imageId = req.imageId ? v.uuid("image_id", req.imageId) : "";
      const snapshotId = req.snapshotId ? v.uuid("snapshot_id", req.snapshotId) : "";
      const request = { name, description, size_gb: size, volume_type: volumeType, availability_zone: zone, image_id: imageId, snapshot_id: snapshotId };
      const asked = { requestId, name, description, sizeGb: size, volumeType, zone, image: null, snapshot: null };
      const viewer = await viewerOf(pool, ctx);
      const answer = (a: VolumeAccepted) => ({ volume: volumeToProto(a.volume, viewer), operation: volumeOperationToProto(a.operation, viewer) });
      // A repeat replays before its sources are checked again (they may have gone since).
      if (await findVolumeByRequest(pool, ctx.principal.projectId, requestId)) return answer(await createVolume(conductor, ctx.principal, asked, request));
      let snapshot = null;
      if (snapshotId) {
        snapshot = await visibleSnapshot(pool, ctx.principal, snapshotId);
        if (snapshot.status !== "AVAILABLE") throw invalidArgument("snapshot_id", `snapshot ${snapshot.id} is ${snapshot.status}, not AVAILABLE`);
        if (size < snapshot.sizeGb) throw invalidArgument("size_gb", `must be at least ${snapshot.sizeGb} GiB for snapshot ${snapshot.id}`);
      }
      let image = null;
      if (imageId) {
        image = await getImage(pool, imageId, isAdmin(ctx) ? undefined : ctx.principal.projectId);
        if (!image) throw notFound("image", imageId);
        if (image.status !== "active") throw invalidArgument("image_id", `image ${imageId} is ${image.status}, not active`);
        const needGb = Math.max(image.minDiskGb, Math.ceil(image.sizeBytes / GIB));
        if (size < needGb) throw invalidArgument("size_gb", `must be at least ${needGb} GiB for image ${imageId}`);
      }
      return answer(await createVolume(conductor, ctx.principal, { ...asked, image, snapshot }, request));
    }),

    getVolume: unary(deps, "GetVolume", async (req, ctx) => {
      const volume = await visibleVolume(pool, ctx.principal, v.uuid("id", req.id));
      const attachments = await attachmentsOfVolumes(pool, [volume.id]);
      return { volume: volumeToProto(volume, await viewerOf(pool, ctx), attachments.get(volume.id)) };
    }),

    listVolumes: unary(deps, "ListVolumes", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const status = fromEnum(PbVolumeStatus, "VOLUME_STATUS_", req.status) as VolumeStatus | null;
      if (req.status !== 0 && (!status || !VOLUME_STATUSES.includes(status))) throw invalidArgument("status", `unknown volume status ${req.status}`);
      const cursor = v.decodePageToken(
        req.pageToken,
        (x): x is { t: string; id: string } =>
          typeof (x as { t?: unknown })?.t === "string" && !Number.isNaN(Date.parse((x as { t: string }).t)) && typeof (x as { id?: unknown }).id === "string",
      );
      const rows = await listVolumes(pool, {
        projectId: req.allProjects ? undefined : ctx.principal.projectId,
        status: status ?? undefined,
        after: cursor ? { createdAt: new Date(cursor.t), id: cursor.id } : undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const [viewer, attachments] = await Promise.all([viewerOf(pool, ctx), attachmentsOfVolumes(pool, page.map((x) => x.id))]);
      const last = page[page.length - 1];
      return {
        volumes: page.map((x) => volumeToProto(x, viewer, attachments.get(x.id))),
        nextPageToken: rows.length > limit && last ? v.encodePageToken({ t: last.createdAt.toISOString(), id: last.id }) : "",
      };
    }),

    deleteVolume: unary(deps, "DeleteVolume", async (req, ctx) => {
      const a = await deleteVolume(conductor, ctx.principal, v.uuid("id", req.id), v.requestId("request_id", req.requestId));
      return { operation: volumeOperationToProto(a.operation, await viewerOf(pool, ctx)) };
    }),

    extendVolume: unary(deps, "ExtendVolume", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const size = sizeGb("new_size_gb", req.newSizeGb);
      const requestId = v.requestId("request_id", req.requestId);
      // Attached: grown online by an action of its server; otherwise one of the volume.
      const [attached] = (await attachmentsOfVolumes(pool, [(await visibleVolume(pool, ctx.principal, id)).id])).get(id) ?? [];
      if (attached) {
        const a = await extendAttachedVolume(conductor, ctx.principal, attached.instanceUuid, requestId, id, size);
        return { operation: operationToProto(a.operation, await viewerOf(pool, ctx)) };
      }
      const a = await extendVolume(conductor, ctx.principal, id, requestId, size);
      return { operation: volumeOperationToProto(a.operation, await viewerOf(pool, ctx)) };
    }),

    createVolumeSnapshot: unary(deps, "CreateVolumeSnapshot", async (req, ctx) => {
      const volumeId = v.uuid("volume_id", req.volumeId);
      const o = { name: v.text("name", req.name.trim()), description: v.text("description", req.description) };
      const a = await createSnapshot(conductor, ctx.principal, volumeId, v.requestId("request_id", req.requestId), o);
      const viewer = await viewerOf(pool, ctx);
      return { snapshot: a.snapshot ? snapshotToProto(a.snapshot, viewer) : undefined, operation: volumeOperationToProto(a.operation, viewer) };
    }),

    getVolumeSnapshot: unary(deps, "GetVolumeSnapshot", async (req, ctx) => ({
      snapshot: snapshotToProto(await visibleSnapshot(pool, ctx.principal, v.uuid("id", req.id)), await viewerOf(pool, ctx)),
    })),

    listVolumeSnapshots: unary(deps, "ListVolumeSnapshots", async (req, ctx) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const volumeId = req.volumeId ? (await visibleVolume(pool, ctx.principal, v.uuid("volume_id", req.volumeId))).id : undefined;
      const projectId = req.allProjects || (isAdmin(ctx) && volumeId) ? undefined : ctx.principal.projectId;
      const viewer = await viewerOf(pool, ctx);
      return { snapshots: (await listSnapshots(pool, { projectId, volumeId })).map((s) => snapshotToProto(s, viewer)) };
    }),

    deleteVolumeSnapshot: unary(deps, "DeleteVolumeSnapshot", async (req, ctx) => {
      const a = await deleteSnapshot(conductor, ctx.principal, v.uuid("id", req.id), v.requestId("request_id", req.requestId));
      return { operation: volumeOperationToProto(a.operation, await viewerOf(pool, ctx)) };
    }),

    createVolumeType: unary(deps, "CreateVolumeType", async (req, ctx) => {
      requireAdmin(ctx, "CreateVolumeType");
      if (!VOLUME_TYPE_NAME.test(req.name)) throw invalidArgument("name", "must be 1-64 letters, digits, '.', '-' or '_'");
      if (req.backend && !BACKENDS.includes(req.backend)) throw invalidArgument("backend", `must be empty (any) or one of ${BACKENDS.join(", ")}`);
      const description = v.text("description", req.description);
      try {
        await insertVolumeType(pool, { id: randomUUID(), name: req.name, backend: req.backend, description });
      } catch (err) {
        if (isDuplicateKey(err)) throw alreadyExists("volume_type", req.name);
        throw err;
      }
      const t = await getVolumeTypeByName(pool, req.name);
      if (!t) throw new Error(`volume type ${req.name} vanished after its insert`);
      return { volumeType: typeToProto(t) };
    }),

    listVolumeTypes: unary(deps, "ListVolumeTypes", async () => ({ volumeTypes: (await listVolumeTypes(pool)).map(typeToProto) })),

    deleteVolumeType: unary(deps, "DeleteVolumeType", async (req, ctx) => {
      requireAdmin(ctx, "DeleteVolumeType");
      if (!VOLUME_TYPE_NAME.test(req.name)) throw invalidArgument("name", "must be 1-64 letters, digits, '.', '-' or '_'");
      await withTx(pool, async (conn) => {
        const t = await getVolumeTypeByName(conn, req.name, { lock: "update" });
        if (!t) throw notFound("volume_type", req.name);
        if (await volumeTypeInUse(conn, t.id)) throw failedPrecondition(`volume type ${req.name} is in use by volumes`, "VOLUME_TYPE_IN_USE", { volume_type: req.name });
        await deleteVolumeType(conn, t.id);
      });
      return {};
    }),
  };
}
