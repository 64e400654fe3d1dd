/**
 * AgentService's image bytes: a host reads the images its work needs and
 * writes the snapshots and migrating disks its ops make, through the
 * controller, which alone opens the image store. What a host may touch is
 * decided from the database (store/host-objects.ts); anything else is
 * answered as if it did not exist, so a host cannot learn which images
 * there are.
 */
import type { ServerReadableStream } from "@grpc/grpc-js";
import type {
  AgentServiceServer,
  DownloadHostObjectRequest,
  DownloadHostObjectResponse,
  HostObject,
  UploadHostObjectRequest,
  UploadHostObjectResponse,
} from "../../gen/novamesh/agent/v1/agent.js";
import type { Principal } from "../domain/types.js";
import { failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { getImage } from "../store/catalog.js";
import { hostHasOpFor, hostMakesImage, hostNeedsImage, volumeHostNeedsImage } from "../store/host-objects.js";
import type { ImageBytes } from "../store/image-bytes.js";
import { SHA256_HEX, storeChecked, storeImageData, uploadChunks, writeChunks } from "./image-data.js";
import { checkCertificateHost } from "./peer-certificate.js";
import type { CallContext, RpcDeps } from "./rpc.js";
import { clientStream, serverStream, unary } from "./rpc.js";
import * as v from "./validate.js";

/** The image store key of the disk a cold migration of server `id` hands over. */
export function migrationDiskKey(serverId: string): string {
  return `migration-${serverId}`;
}

/**
 * The host a call acts for: an agent token's own host (`host`, if given,
 * must be it); with an admin token, `host` as given (required).
 */
export function actingHost(p: Principal, field: string, host: string): string {
  if (host) v.hostName(field, host);
  if (p.role === "admin") {
    if (!host) throw invalidArgument(field, "is required with an admin token: name the host to act for");
    return host;
  }
  if (p.host === null) throw permissionDenied("this agent token is not bound to a host yet; it is bound by its first Connect");
  if (host && host !== p.host) throw permissionDenied(`this token speaks for host ${JSON.stringify(p.host)}, not ${JSON.stringify(host)}`);
  return p.host;
}

type Target = { readonly kind: "image"; readonly id: string } | { readonly kind: "migration"; readonly serverId: string };

function target(field: string, o: HostObject | undefined): Target {
  const obj = o?.object;
  if (!obj) throw invalidArgument(field, "must name an image_id or a migration_server_id");
  return obj.$case === "imageId"
    ? { kind: "image", id: v.uuid(`${field}.image_id`, obj.imageId) }
    : { kind: "migration", serverId: v.uuid(`${field}.migration_server_id`, obj.migrationServerId) };
}

const migrationDiskNotFound = (serverId: string) => notFound("migration_disk", serverId);

export function hostObjects(
  deps: RpcDeps,
  bytes: ImageBytes,
  opts: { certificateNamesHost?: boolean } = {},
): Pick<AgentServiceServer, "downloadHostObject" | "uploadHostObject" | "deleteMigrationDisk"> {
  const { pool, log } = deps;
  /** The host the caller acts for; on the agent listener its client certificate must name it too. */
  const hostOf = (call: Parameters<typeof checkCertificateHost>[0], p: CallContext["principal"], field: string, named: string): string => {
    const host = actingHost(p, field, named);
    if (opts.certificateNamesHost) checkCertificateHost(call, host);
    return host;
  };

  async function upload(call: ServerReadableStream<UploadHostObjectRequest, UploadHostObjectResponse>, ctx: CallContext): Promise<UploadHostObjectResponse> {
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<UploadHostObjectRequest>;
    const first = await messages.next();
    if (first.done || first.value.part?.$case !== "header") throw invalidArgument("header", "the first message must carry the header");
    const h = first.value.part.header;
    const host = hostOf(call, ctx.principal, "header.host", h.host);
    const what = target("header.object", h.object);
    if (h.sizeBytes <= 0) throw invalidArgument("header.size_bytes", "must be positive");
    if (!SHA256_HEX.test(h.checksum)) throw invalidArgument("header.checksum", "must be a SHA-256 in lower-case hex");
    const expected = { sizeBytes: h.sizeBytes, checksum: h.checksum };
    const chunkOf = (m: UploadHostObjectRequest) => (m.part?.$case === "chunk" ? m.part.chunk : undefined);
    if (what.kind === "migration") {
      if (!(await hostHasOpFor(pool, host, what.serverId, ["migrate_disk"]))) throw migrationDiskNotFound(what.serverId);
      const label = `the migrating disk of ${what.serverId}`;
      const stored = await storeChecked(bytes, migrationDiskKey(what.serverId), uploadChunks(messages, chunkOf, expected, call, ctx.signal, label), expected, ctx.signal, label);
      log.info({ host, server_id: what.serverId, sizeBytes: stored.sizeBytes }, "migrating disk stored");
      return { info: stored };
    }
    const id = what.id;
    const image = await getImage(pool, id, undefined);
    if (!image || !(await hostMakesImage(pool, host, id))) throw notFound("image", id);
    if (image.status === "active" && image.hasData && image.sizeBytes === h.sizeBytes && image.checksum === h.checksum) {
      // The same bytes again: an op run a second time after its upload.
      return { info: { sizeBytes: image.sizeBytes, checksum: image.checksum } };
    }
    if (image.status !== "queued" && image.status !== "saving") {
      throw failedPrecondition(`image ${id} is ${image.status} with other bytes; only a QUEUED image takes an upload`, "IMAGE_NOT_QUEUED", { status: image.status });
    }
    const stored = await storeImageData(deps, bytes, id, expected, uploadChunks(messages, chunkOf, expected, call, ctx.signal, `image ${id}`), ctx.signal);
    log.info({ host, image: id, sizeBytes: stored.sizeBytes }, "snapshot stored");
    return { info: stored };
  }

  return {
    downloadHostObject: serverStream<DownloadHostObjectRequest, DownloadHostObjectResponse>(
      deps,
      "DownloadHostObject",
      async (req, ctx, call) => {
        const host = hostOf(call, ctx.principal, "host", req.host);
        const what = target("object", req.object);
        let key: string;
        let info: { sizeBytes: number; checksum: string };
        if (what.kind === "image") {
          const image = await getImage(pool, what.id, undefined);
          if (!image || !((await hostNeedsImage(pool, host, what.id)) || (await volumeHostNeedsImage(pool, host, what.id)))) throw notFound("image", what.id);
          if (image.status !== "active" || !image.hasData) {
            throw failedPrecondition(
              image.status === "active" ? `image ${what.id} was registered without data` : `image ${what.id} is ${image.status}; it has no data yet`,
              "IMAGE_HAS_NO_DATA",
              { image: what.id, status: image.status },
            );
          }
          key = what.id;
          info = { sizeBytes: image.sizeBytes, checksum: image.checksum };
        } else {
          if (!(await hostHasOpFor(pool, host, what.serverId, ["finish_migration"]))) throw migrationDiskNotFound(what.serverId);
          key = migrationDiskKey(what.serverId);
          const stored = await bytes.info(key);
          if (!stored) throw migrationDiskNotFound(what.serverId);
          info = stored;
        }
        call.write({ part: { $case: "info", info } });
        await writeChunks(call, bytes.read(key, info.checksum, ctx.signal), (chunk) => ({ part: { $case: "chunk" as const, chunk } }), ctx.signal);
      },
      "host",
    ),
    uploadHostObject: clientStream(deps, "UploadHostObject", upload, "host"),
    deleteMigrationDisk: unary(
      deps,
      "DeleteMigrationDisk",
      async (req, ctx, call) => {
        const host = hostOf(call, ctx.principal, "host", req.host);
        const serverId = v.uuid("server_id", req.serverId);
        if (!(await hostHasOpFor(pool, host, serverId, ["finish_migration", "confirm_migration"]))) throw migrationDiskNotFound(serverId);
        await bytes.delete(migrationDiskKey(serverId));
        return {};
      },
      "host",
    ),
  };
}
