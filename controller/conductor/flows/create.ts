/**
 * Create: CreateServer records the server waiting for a host, with its
 * create action, under its project's quota lock, in one transaction;
 * placement and the build take it from there (build.ts). Idempotent by
 * request id.
 */
import { createHash, randomUUID } from "node:crypto";
import type { RequestedNetworks } from "../../domain/network.js";
import type { Flavor, Image, Instance, Principal, SchedulerHints } from "../../domain/types.js";
import { DEADLOCK_RETRIES, withTx } from "../../store/db.js";
import { currentTraceParent } from "../../tracing.js";
import { getInstanceByRequest } from "../../store/instances.js";
import type { Accepted, RequestBody } from "../act.js";
import { accepted, checkSameRequest } from "../act.js";
import { findAction } from "../../store/actions.js";
import type { ConductorContext } from "../context.js";
import { Tx } from "../context.js";
import { reserveRootVolume, type RootVolumeRequest } from "./boot-volume.js";

/** What CreateServer asks for, validated. */
export interface CreateRequest {
  readonly name: string;
  readonly flavor: Flavor;
  /** Null when it boots from `rootVolume`. */
  readonly image: Image | null;
  /** The volume it boots from (boot-volume.ts). */
  readonly rootVolume?: RootVolumeRequest | null;
  readonly metadata: Record<string, string>;
  readonly requestId: string;
  readonly availabilityZone?: string;
  readonly serverGroupId?: string | null;
  readonly schedulerHints?: SchedulerHints;
  /** Its interfaces, made when it is placed; null: none. */
  readonly requestedNetworks?: RequestedNetworks | null;
  /** The key pair the guest is given (the caller's project's). */
  readonly keypair?: { readonly name: string; readonly publicKey: string } | null;
  /** User data for the guest (empty: none), and whether it gets a config drive. */
  readonly userData?: Uint8Array;
  readonly configDrive?: boolean;
  readonly description?: string;
  readonly tags?: readonly string[];
}

/** A root volume request as the create action records it (the API's block device mapping). */
function mappingOf(root: RootVolumeRequest): RequestBody {
  const common = { boot_index: 0, delete_on_termination: root.deleteOnTermination };
  return "image" in root ? { image_id: root.image.id, volume_size_gb: root.sizeGb, volume_type: root.volumeType, ...common } : { volume_id: root.volumeId, ...common };
}

/** The server and its create action in one transaction; idempotent by request id. */
export async function create(ctx: ConductorContext, who: Principal, req: CreateRequest): Promise<Accepted> {
  const request: RequestBody = {
    name: req.name,
    flavor_id: req.flavor.id,
    image_id: req.image?.id ?? "",
    ...(req.rootVolume ? { block_device_mappings: [mappingOf(req.rootVolume)] } : {}),
    metadata: req.metadata,
    availability_zone: req.availabilityZone ?? "",
    server_group_id: req.serverGroupId ?? null,
    scheduler_hints: { sameHost: req.schedulerHints?.sameHost ?? [], differentHost: req.schedulerHints?.differentHost ?? [] },
    ...(req.requestedNetworks ? { networks: req.requestedNetworks } : {}),
    ...(req.keypair ? { key_name: req.keypair.name } : {}),
    // The user data by its digest: a repeated request is told apart without keeping the data twice.
    ...(req.userData?.length ? { user_data_sha256: createHash("sha256").update(req.userData).digest("hex") } : {}),
    ...(req.configDrive ? { config_drive: true } : {}),
    ...(req.description ? { description: req.description } : {}),
    ...(req.tags?.length ? { tags: req.tags } : {}),
  };
  /** The server a repeated request id made, if this is the same request. */
  const replay = async (first: Instance) => {
    const action = await findAction(ctx.pool, first.uuid, req.requestId);
    if (!action) throw new Error(`server ${first.uuid} has no action for request ${req.requestId}`);
    checkSameRequest(req.requestId, "create", action.request, request);
    return accepted(ctx.pool, first, action.id);
  };
  // A repeated request is mostly found by its failure (below): looked for first, it would cost every create a
  // read. One that boots from a volume is looked for first: it would lock the volume and claim a pool's space again.
  if (req.rootVolume) {
    const first = await getInstanceByRequest(ctx.pool, who.projectId, req.requestId);
    if (first) return replay(first);
  }
  const uuid = randomUUID();
  try {
    const created = await withTx(ctx.pool, async (conn) => {
      const tx = new Tx(conn, ctx);
      const { store } = tx;
      const { id, name, vcpus, ramMb, diskGb, extraSpecs } = req.flavor;
      const server = { uuid, name: req.name, zone: req.availabilityZone ?? "" };
      // The volume it boots from is locked (and one made from an image placed, under the project's quota lock) first:
      // the quota lock comes after the rows a request locks, as in every other request (an extend locks its volume, then the quota).
      const root = req.rootVolume ? await reserveRootVolume(tx, who, server, req.rootVolume, req.flavor) : { imageId: req.image!.id, waits: false };
      await store.checkQuota(
        who.projectId,
        {
          instances: 1,
          cores: vcpus,
          ram: ramMb,
          server_group_members: req.serverGroupId ? 1 : 0,
          metadata_items: Object.keys(req.metadata).length,
          // The ports it gets when placed (a port it is given is counted already).
          ports: req.requestedNetworks?.networks.filter((n) => n.networkId).length ?? 0,
        },
        { serverGroupId: req.serverGroupId ?? null, fields: { metadata_items: "metadata", server_group_members: "scheduler_hints.group", ports: "networks" } },
      );
      // A server whose volume is being made from an image waits for it before it is placed.
      const task = root.waits ? "BLOCK_DEVICE_MAPPING" : "SCHEDULING";
      const { taskDeadline } = tx.task(task);
      const inst = await store.insertInstance(
        {
          uuid,
          name: req.name,
          projectId: who.projectId,
          requestId: req.requestId,
          flavor: { id, name, vcpus, ramMb, diskGb },
          extraSpecs,
          imageId: root.imageId,
          metadata: req.metadata,
          availabilityZone: req.availabilityZone ?? "",
          serverGroupId: req.serverGroupId ?? null,
          schedulerHints: req.schedulerHints ?? { sameHost: [], differentHost: [] },
          requestedNetworks: req.requestedNetworks ?? null,
          bootsFromVolume: Boolean(req.rootVolume),
          keypair: req.keypair ?? null,
          userData: req.userData ?? null,
          configDrive: req.configDrive ?? false,
          description: req.description ?? "",
          tags: req.tags ?? [],
          taskState: task,
        },
        taskDeadline,
      );
      const operation = await store.createAction({
        instanceUuid: uuid,
        requestId: req.requestId,
        projectId: who.projectId,
        action: "create",
        state: "PENDING",
        deadline: taskDeadline,
        request,
        traceParent: currentTraceParent(),
      });
      return { instance: inst, operation };
    }, { deadlockRetries: DEADLOCK_RETRIES });
    // The server and its operation as this transaction left them: it has no interfaces until it is placed.
    return { ...created, noInterfacesYet: true };
  } catch (err) {
    // The request was made before, or two identical requests raced: it returns the first one's server.
    // Whatever refused this one (the unique request id, the quota or the volume the first took, a lock
    // wait a repeated request would not have had to make), the first one's server is the answer.
    // A lookup that fails itself leaves the refusal as the answer.
    const first = await getInstanceByRequest(ctx.pool, who.projectId, req.requestId).catch(() => null);
    if (first) return replay(first);
    throw err;
  }
}
