import { randomUUID } from "node:crypto";
import { encodeComputeOp } from "../bus/op-codec.js";
import { opsSubject } from "../bus/subjects.js";
import type { OpArgs } from "../domain/ops.js";
import { OP_TRAITS } from "../domain/ops.js";
import type { Instance } from "../domain/types.js";
import type { VolumeTarget } from "../domain/volume-ops.js";
import { startEvent } from "../store/actions.js";
import { getImage } from "../store/catalog.js";
import type { Queryable } from "../store/db.js";
import { zoneOfHost } from "../store/aggregates.js";
import { getUserData } from "../store/instances.js";
import { enqueueOp } from "../store/ops.js";
import { currentTraceParent } from "../tracing.js";
import { hostPortsOf } from "./host-ports.js";

export interface DispatchRequest {
  readonly instance: Instance;
  readonly host: string;
  readonly actionId: number;
  readonly requestId: string;
  readonly args: OpArgs;
  readonly attempt?: number;
  readonly subjectPrefix: string;
  /** The image to build from, when not the instance's own (a server offloaded to a snapshot is built from it). */
  readonly imageId?: string;
  /** The volume an op that runs on a volume host works on (export, unexport). */
  readonly volume?: VolumeTarget;
  /** The caller knows, in this transaction, that the server has no port: none are read. */
  readonly portless?: boolean;
}

/**
 * Sends an op to a host: records the op and its action event and queues the
 * message in the outbox, all in the caller's transaction. The op carries the
 * instance's task deadline (unless it is a cleanup op): a host that gets it
 * later does not start it. Ops that build disks carry the image record,
 * and for a server with a config drive the guest data (the drive is made
 * wherever it is built).
 */
export async function dispatchOp(q: Queryable, o: DispatchRequest): Promise<string> {
  const opId = randomUUID();
  const traits = OP_TRAITS[o.args.kind];
  if (traits.onVolumeHost && !o.volume) throw new Error(`a ${o.args.kind} op needs its volume`);
  const image = traits.buildsOnHost ? await getImage(q, o.imageId ?? o.instance.imageId, undefined) : null;
  const ports = traits.plugsPorts && !o.portless ? await hostPortsOf(q, o.instance.uuid, o.host) : [];
  // What the guest is told on its config drive, made again wherever it is built: its user data, and the zone it is in
  // (the one asked for, else the host's, as Nova tells it).
  const guest =
    traits.buildsOnHost && o.instance.configDrive
      ? { userData: await getUserData(q, o.instance.uuid), availabilityZone: o.instance.availabilityZone || (await zoneOfHost(q, o.host)) }
      : null;
  const payload = encodeComputeOp({
    opId,
    requestId: o.requestId,
    attempt: o.attempt ?? 1,
    instance: o.instance,
    image,
    ports,
    args: o.args,
    deadline: traits.cleanup ? null : o.instance.taskDeadline,
    volume: o.volume ?? null,
    guest,
  });
  await enqueueOp(
    q,
    { opId, instanceUuid: o.instance.uuid, actionId: o.actionId, host: o.host, kind: o.args.kind, attempt: o.attempt ?? 1, traceParent: currentTraceParent() },
    { subject: opsSubject(o.subjectPrefix, o.host), payload },
  );
  await startEvent(q, { actionId: o.actionId, event: traits.event, host: o.host, opId });
  return opId;
}
