import { once } from "node:events";
import { placementOf } from "./placement-args.js";
import { rootVolumeOf } from "./block-devices.js";
import type { ServerServiceServer } from "../../gen/novamesh/compute/v1/server.js";
import { RebootType, ServerStatus as PbServerStatus } from "../../gen/novamesh/compute/v1/server.js";
import type { Accepted } from "../conductor/act.js";
import { visible } from "../conductor/act.js";
import type { ConductorContext } from "../conductor/context.js";
import { create, deletion, image as images, interfaces, liveMigration, lock, power, rebuild, resize, volumes } from "../conductor/flows/index.js";
import { VOLUME_DEVICE } from "../domain/volume.js";
import { attachmentsOf } from "../store/volume-attachments.js";
import type { ServerStatus } from "../domain/states.js";
import { statusFilter } from "../domain/states.js";
import type { HostQueries } from "../bus/host-queries.js";
import { ApiError, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { listActions } from "../store/actions.js";
import { getFlavor, getImage } from "../store/catalog.js";
import { currentServers, listInstances } from "../store/instances.js";
import { lastChangeIndex } from "../store/changes.js";
import { MigrationStatus as PbMigrationStatus, MigrationType as PbMigrationType } from "../../gen/novamesh/compute/v1/server.js";
import type { Flavor, Image, MigrationStatus, MigrationType } from "../domain/types.js";
import { listMigrations } from "../store/moves.js";
import { actionToProto, fromEnum, migrationToProto, operationToProto, serverToProto } from "./convert.js";
import type { Queryable } from "../store/db.js";
import { actionPort, getPort } from "../store/ports.js";
import { parseIpv4 } from "../domain/ipv4.js";
import { networksOf, requestedNetworksOf, usableNetwork } from "./server-networks.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { isAdmin, serverStream, unary } from "./rpc.js";
import * as v from "./validate.js";
import type { ChangeFeed } from "./watch.js";
import type { Viewer } from "./viewer.js";
import { maskHosts, maskMap, viewerOf } from "./viewer.js";
import { projectKeypair } from "./keypair-service.js";
import { serverAttributeHandlers, tags } from "./server-attributes.js";
import { MAX_USER_DATA_BYTES } from "../domain/guest.js";
import { MAX_SERVER_METADATA_ITEMS } from "../domain/quota.js";

/** The response of a server action: the server and its operation, as the caller may see them. */
async function accepted(q: Queryable, a: Accepted, viewer: Viewer) {
  const nets = a.noInterfacesYet ? { ports: [], networkNames: new Map<string, string>() } : (await networksOf(q, [a.instance.uuid])).get(a.instance.uuid);
  return { server: serverToProto(a.instance, viewer, nets), operation: operationToProto(a.operation, viewer) };
}

type IdRequest = { id: string; requestId: string };

export function serverService(deps: RpcDeps, conductor: ConductorContext, feed: ChangeFeed, queries: HostQueries): ServerServiceServer {
  const { pool } = deps;
  /** The response of an action for the caller of `ctx`. */
  const answer = async (ctx: CallContext, a: Accepted) => accepted(pool, a, await viewerOf(pool, ctx));
  /** The image a server is built from, checked against its flavor. */
  const imageFor = async (imageId: string, flavor: Flavor, ctx: CallContext): Promise<Image> => {
    const image = await getImage(pool, imageId, isAdmin(ctx) ? undefined : ctx.principal.projectId);
    if (!image) throw notFound("image", imageId);
    if (image.status !== "active") throw invalidArgument("image_id", `image ${imageId} is ${image.status}, not active`);
    if (flavor.diskGb < image.minDiskGb) throw invalidArgument("flavor_id", `flavor disk ${flavor.diskGb} GiB is below the image's min_disk ${image.minDiskGb} GiB`);
    if (flavor.ramMb < image.minRamMb) throw invalidArgument("flavor_id", `flavor RAM ${flavor.ramMb} MiB is below the image's min_ram ${image.minRamMb} MiB`);
    return image;
  };
  /** A server action that takes only the server id and a request id. */
  const simple = (name: string, fn: (who: CallContext["principal"], id: string, requestId: string) => Promise<Accepted>) =>
    unary(deps, name, async (req: IdRequest, ctx) => answer(ctx, await fn(ctx.principal, v.uuid("id", req.id), v.requestId("request_id", req.requestId))));
  return {
    ...serverAttributeHandlers(deps, conductor),
    createServer: unary(deps, "CreateServer", async (req, ctx) => {
      const name = v.name("name", req.name);
      const requestId = v.requestId("request_id", req.requestId);
      // How many items a server may have is its project's metadata_items quota (within a hard cap).
      const metadata = v.metadata("metadata", req.metadata, MAX_SERVER_METADATA_ITEMS);
      if (!req.flavorId) throw invalidArgument("flavor_id", "is required");
      if (req.blockDeviceMappings.length > 0 && req.imageId) throw invalidArgument("image_id", "must be empty when the server boots from a volume (block_device_mappings)");
      const flavor = await getFlavor(pool, req.flavorId);
      if (!flavor) throw notFound("flavor", req.flavorId);
      const rootVolume = await rootVolumeOf(pool, ctx, req.blockDeviceMappings, flavor);
      const image = rootVolume ? null : await imageFor(v.uuid("image_id", req.imageId), flavor, ctx);
      const placement = await placementOf(pool, ctx, req.availabilityZone, req.schedulerHints);
      const requestedNetworks = await requestedNetworksOf(pool, ctx.principal, req);
      // The caller's project's (another project's is NOT_FOUND, as Nova's are per owner).
      const keypair = req.keyName ? await projectKeypair(pool, ctx.principal.projectId, "key_name", req.keyName) : null;
      if (req.userData.length > MAX_USER_DATA_BYTES) throw invalidArgument("user_data", `must be at most ${MAX_USER_DATA_BYTES} bytes (${req.userData.length} given)`);
      // With no metadata service, the config drive is how a guest learns its user data and key: either one gives it one.
      const guest = { userData: req.userData, configDrive: req.configDrive || req.userData.length > 0 || keypair !== null };
      const about = { description: v.text("description", req.description), tags: tags("tags", req.tags) };
      const a = await create.create(conductor, ctx.principal, { name, flavor, image, rootVolume, metadata, requestId, requestedNetworks, keypair, ...guest, ...about, ...placement });
      return answer(ctx, a);
    }),

    getServer: unary(deps, "GetServer", async (req, ctx) => {
      const inst = await visible(pool, ctx.principal, v.uuid("id", req.id));
      const nets = await networksOf(pool, [inst.uuid]);
      return { server: serverToProto(inst, await viewerOf(pool, ctx), nets.get(inst.uuid)) };
    }),

    listServers: unary(deps, "ListServers", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      const cursor = v.decodePageToken(req.pageToken, (x): x is { before: number } => typeof (x as { before?: unknown })?.before === "number");
      if ((req.allProjects || req.projectId) && !isAdmin(ctx)) throw permissionDenied("all_projects and project_id need the admin role");
      if (req.host && !isAdmin(ctx)) throw permissionDenied("the host filter needs the admin role");
      if (req.projectId) v.projectId("project_id", req.projectId);
      const projectId = req.projectId || (req.allProjects ? undefined : ctx.principal.projectId);
      const st = fromEnum(PbServerStatus, "SERVER_STATUS_", req.status) as ServerStatus | null;
      if (req.status !== 0 && !st) throw invalidArgument("status", `unknown status ${req.status}`);
      const f = st ? statusFilter(st) : {};
      const rows = await listInstances(pool, {
        projectId,
        host: req.host || undefined,
        nameContains: req.name || undefined,
        vmState: f.vmState,
        tasks: f.tasks,
        includeDeleted: req.includeDeleted,
        tags: tags("tags", req.tags, Infinity),
        tagsAny: tags("tags_any", req.tagsAny, Infinity),
        notTags: tags("not_tags", req.notTags, Infinity),
        notTagsAny: tags("not_tags_any", req.notTagsAny, Infinity),
        beforeSeq: cursor?.before,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const more = rows.length > limit;
      const viewer = await viewerOf(pool, ctx);
      const nets = await networksOf(pool, page.map((i) => i.uuid));
      return {
        servers: page.map((i) => serverToProto(i, viewer, nets.get(i.uuid))),
        nextPageToken: more ? v.encodePageToken({ before: page[page.length - 1]!.seq }) : "",
      };
    }),

    deleteServer: simple("DeleteServer", (who, id, rid) => deletion.deleteServer(conductor, who, id, rid)),
    startServer: simple("StartServer", (who, id, rid) => power.start(conductor, who, id, rid)),
    stopServer: simple("StopServer", (who, id, rid) => power.stop(conductor, who, id, rid)),

    rebootServer: unary(deps, "RebootServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      if (req.type !== RebootType.REBOOT_TYPE_SOFT && req.type !== RebootType.REBOOT_TYPE_HARD) {
        throw invalidArgument("type", "must be REBOOT_TYPE_SOFT or REBOOT_TYPE_HARD");
      }
      return answer(ctx, await power.reboot(conductor, ctx.principal, id, v.requestId("request_id", req.requestId), req.type === RebootType.REBOOT_TYPE_HARD));
    }),

    pauseServer: simple("PauseServer", (who, id, rid) => power.pause(conductor, who, id, rid)),
    unpauseServer: simple("UnpauseServer", (who, id, rid) => power.unpause(conductor, who, id, rid)),
    suspendServer: simple("SuspendServer", (who, id, rid) => power.suspend(conductor, who, id, rid)),
    resumeServer: simple("ResumeServer", (who, id, rid) => power.resume(conductor, who, id, rid)),

    attachInterface: unary(deps, "AttachInterface", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      if (!!req.networkId === !!req.portId) throw invalidArgument("network_id", "give network_id or port_id, not both or neither");
      let attach: interfaces.AttachRequest;
      if (req.portId) {
        if (req.fixedIp) throw invalidArgument("fixed_ip", "only goes with network_id (a port has its addresses)");
        const portId = v.uuid("port_id", req.portId);
        const p = await getPort(pool, portId);
        if (!p || (!isAdmin(ctx) && p.projectId !== ctx.principal.projectId)) throw notFound("port", req.portId);
        attach = { portId };
      } else {
        const net = await usableNetwork(pool, ctx.principal, req.networkId, "network_id");
        if (req.fixedIp && parseIpv4(req.fixedIp) === null) throw invalidArgument("fixed_ip", `${JSON.stringify(req.fixedIp.slice(0, 64))} is not an IPv4 address`);
        attach = { networkId: net.id, ...(req.fixedIp ? { fixedIp: req.fixedIp } : {}) };
      }
      const a = await interfaces.attach(conductor, ctx.principal, id, requestId, attach);
      return { ...(await answer(ctx, a)), portId: (await actionPort(pool, a.operation.id)) ?? "" };
    }),

    detachInterface: unary(deps, "DetachInterface", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const portId = v.uuid("port_id", req.portId);
      return answer(ctx, await interfaces.detach(conductor, ctx.principal, id, v.requestId("request_id", req.requestId), portId));
    }),

    attachVolume: unary(deps, "AttachVolume", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const volumeId = v.uuid("volume_id", req.volumeId);
      if (req.device && !VOLUME_DEVICE.test(req.device)) throw invalidArgument("device", "must be empty (the first free one) or vdb to vdz");
      const a = await volumes.attachVolume(conductor, ctx.principal, id, v.requestId("request_id", req.requestId), {
        volumeId,
        device: req.device,
        deleteOnTermination: req.deleteOnTermination,
      });
      const attachmentId = a.attachmentId ?? (await attachmentsOf(pool, id)).find((x) => x.volumeId === volumeId)?.id ?? "";
      return { ...(await answer(ctx, a)), attachmentId };
    }),

    detachVolume: unary(deps, "DetachVolume", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const volumeId = v.uuid("volume_id", req.volumeId);
      return answer(ctx, await volumes.detachVolume(conductor, ctx.principal, id, v.requestId("request_id", req.requestId), volumeId));
    }),

    lockServer: unary(deps, "LockServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const reason = v.text("reason", req.reason);
      return answer(ctx, await lock.lock(conductor, ctx.principal, id, v.requestId("request_id", req.requestId), reason));
    }),
    unlockServer: simple("UnlockServer", (who, id, rid) => lock.unlock(conductor, who, id, rid)),

    resizeServer: unary(deps, "ResizeServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      if (!req.flavorId) throw invalidArgument("flavor_id", "is required");
      const flavor = await getFlavor(pool, req.flavorId);
      if (!flavor) throw notFound("flavor", req.flavorId);
      return answer(ctx, await resize.resize(conductor, ctx.principal, id, requestId, flavor));
    }),
    migrateServer: unary(deps, "MigrateServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      return answer(ctx, await resize.migrate(conductor, ctx.principal, id, requestId, req.host ? req.host : null));
    }),
    liveMigrateServer: unary(deps, "LiveMigrateServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      return answer(ctx, await liveMigration.liveMigrate(conductor, ctx.principal, id, requestId, req.host ? req.host : null));
    }),
    evacuateServer: unary(deps, "EvacuateServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      if (!isAdmin(ctx)) throw permissionDenied("evacuate needs the admin role");
      return answer(ctx, await rebuild.evacuate(conductor, ctx.principal, id, requestId, req.host ? req.host : null));
    }),
    rebuildServer: unary(deps, "RebuildServer", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      const name = req.name ? v.name("name", req.name) : null;
      let image = null;
      if (req.imageId) {
        const imageId = v.uuid("image_id", req.imageId);
        image = await getImage(pool, imageId, isAdmin(ctx) ? undefined : ctx.principal.projectId);
        if (!image) throw notFound("image", imageId);
        if (image.status !== "active") throw invalidArgument("image_id", `image ${imageId} is ${image.status}, not active`);
      }
      return answer(ctx, await rebuild.rebuild(conductor, ctx.principal, id, requestId, image, name));
    }),
    createServerImage: unary(deps, "CreateServerImage", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const requestId = v.requestId("request_id", req.requestId);
      const name = v.name("name", req.name);
      const metadata = v.metadata("metadata", req.metadata);
      const a = await images.createImage(conductor, ctx.principal, id, requestId, name, metadata);
      return { ...(await answer(ctx, a)), imageId: a.imageId ?? "" };
    }),
    shelveServer: simple("ShelveServer", (who, id, rid) => images.shelve(conductor, who, id, rid)),
    unshelveServer: simple("UnshelveServer", (who, id, rid) => images.unshelve(conductor, who, id, rid)),
    confirmResize: simple("ConfirmResize", (who, id, rid) => resize.confirmResize(conductor, who, id, rid)),
    revertResize: simple("RevertResize", (who, id, rid) => resize.revertResize(conductor, who, id, rid)),

    listMigrations: unary(deps, "ListMigrations", async (req, ctx) => {
      const limit = v.pageSize(req.pageSize);
      const cursor = v.decodePageToken(req.pageToken, (x): x is { t: string; id: string } => {
        const c = x as { t?: unknown; id?: unknown };
        return typeof c?.t === "string" && typeof c?.id === "string";
      });
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const serverId = req.serverId ? v.uuid("server_id", req.serverId) : undefined;
      if (serverId) await visible(pool, ctx.principal, serverId);
      const type = fromEnum(PbMigrationType, "MIGRATION_TYPE_", req.type) as MigrationType | null;
      if (req.type !== 0 && !type) throw invalidArgument("type", `unknown migration type ${req.type}`);
      const st = fromEnum(PbMigrationStatus, "MIGRATION_STATUS_", req.status) as MigrationStatus | null;
      if (req.status !== 0 && !st) throw invalidArgument("status", `unknown migration status ${req.status}`);
      const rows = await listMigrations(pool, {
        projectId: req.allProjects || (isAdmin(ctx) && serverId) ? undefined : ctx.principal.projectId,
        instanceUuid: serverId,
        type: type ?? undefined,
        status: st ?? undefined,
        before: cursor ? { t: new Date(cursor.t), id: cursor.id } : undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const viewer = await viewerOf(pool, ctx);
      return {
        migrations: page.map((m) => migrationToProto(m, viewer)),
        nextPageToken: rows.length > limit && last ? v.encodePageToken({ t: last.createdAt.toISOString(), id: last.id }) : "",
      };
    }),

    listServerActions: unary(deps, "ListServerActions", async (req, ctx: CallContext) => {
      const inst = await visible(pool, ctx.principal, v.uuid("server_id", req.serverId));
      const viewer = await viewerOf(pool, ctx);
      return { actions: (await listActions(pool, inst.uuid)).map((a) => actionToProto(a, viewer)) };
    }),

    getConsoleOutput: unary(deps, "GetConsoleOutput", async (req, ctx) => {
      const id = v.uuid("id", req.id);
      const length = v.intRange("length", req.length, 0, 10000);
      const inst = await visible(pool, ctx.principal, id);
      if (!inst.host || inst.vmState === "SHELVED_OFFLOADED") {
        throw failedPrecondition(`server ${id} has no host yet, so no console (${inst.vmState})`, "INSTANCE_NOT_READY", { vm_state: inst.vmState });
      }
      const host = inst.host;
      try {
        return { output: await queries.consoleOutput(host, id, length) };
      } catch (err) {
        // The host's name stays with admins: others read its host id.
        const viewer = await viewerOf(pool, ctx);
        if (viewer.admin || !(err instanceof ApiError)) throw err;
        throw new ApiError(err.code, maskHosts(viewer, inst.projectId, err.message, [host]), {
          reason: err.reason,
          metadata: maskMap(viewer, inst.projectId, err.metadata, [host]),
          fieldViolations: err.fieldViolations,
        });
      }
    }),

    watchServers: serverStream(deps, "WatchServers", async (req, ctx, call) => {
      if (req.allProjects && !isAdmin(ctx)) throw permissionDenied("all_projects needs the admin role");
      const serverId = req.serverId ? v.uuid("server_id", req.serverId) : undefined;
      if (serverId) await visible(pool, ctx.principal, serverId);
      const projectId = req.allProjects ? undefined : isAdmin(ctx) && serverId ? undefined : ctx.principal.projectId;
      const viewer = await viewerOf(pool, ctx);
      // Ends the stream at once when the watch must end (fell behind), even while its client reads nothing.
      const stop = new AbortController();
      const onStop = () => stop.abort();
      ctx.signal.addEventListener("abort", onStop, { once: true });
      const send = async (m: { index: number; time: Date; server: ReturnType<typeof serverToProto>; initial: boolean }) => {
        if (call.write(m)) return;
        await Promise.race([once(call, "drain"), once(stop.signal, "abort")]);
        if (stop.signal.reason instanceof ApiError) throw stop.signal.reason;
      };
      let afterIndex = req.afterIndex > 0 ? req.afterIndex : undefined;
      if (req.sendInitialState) {
        if (req.afterIndex > 0) throw invalidArgument("after_index", "must be 0 with send_initial_state (the initial state is the current one)");
        // Changes from the index read before the servers: one committed in
        // between is sent twice (its state, then its change), never missed.
        const at = await lastChangeIndex(pool);
        for await (const page of currentServers(pool, { projectId, instanceUuid: serverId })) {
          const nets = await networksOf(pool, page.map((i) => i.uuid));
          for (const inst of page) await send({ index: at, time: inst.updatedAt, server: serverToProto(inst, viewer, nets.get(inst.uuid)), initial: true });
        }
        afterIndex = at;
      }
      // A deleted or expired token ends the watch (UNAUTHENTICATED), as it would any new call.
      const revoked = new AbortController();
      const release = deps.tokens.hold(ctx.principal.tokenId, (err) => revoked.abort(err));
      try {
        const signal = AbortSignal.any([ctx.signal, revoked.signal]);
        const changes = feed.watch({ afterIndex, projectId, instanceUuid: serverId, signal, onFailure: (err) => stop.abort(err) });
        for await (const change of changes) {
          await send({ index: change.index, time: change.time, server: serverToProto(change.instance, viewer, change.networks), initial: false });
        }
        if (revoked.signal.aborted) throw revoked.signal.reason;
      } finally {
        release();
        ctx.signal.removeEventListener("abort", onStop);
      }
    }),
  };
}
