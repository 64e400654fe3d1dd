import { randomUUID } from "node:crypto";
import { encodeComputeOp } from "../bus/op-codec.js";
import type { OpArgs } from "../bus/op-codec.js";
import { opsSubject } from "../bus/subjects.js";
import type { Instance } from "../domain/types.js";
import { startEvent } from "../store/actions.js";
import type { Queryable } from "../store/db.js";
import { getImage } from "../store/catalog.js";
import { enqueueOp } from "../store/ops.js";

/** The action-event name of each op kind, as Nova names them. */
export const EVENT_OF: Readonly<Record<OpArgs["kind"], string>> = {
  spawn: "compute_spawn",
  destroy: "compute_terminate",
  power_on: "compute_start",
  power_off: "compute_stop",
  reboot: "compute_reboot",
};

/**
 * Sends an op to the instance's host: records the op and its action event and
 * queues the message in the outbox, all in the caller's transaction.
 */
export async function dispatchOp(
  q: Queryable,
  o: { instance: Instance; host: string; actionId: number; requestId: string; args: OpArgs; attempt?: number; subjectPrefix: string },
): Promise<string> {
  const opId = randomUUID();
  const image = o.args.kind === "spawn" ? await getImage(q, o.instance.imageId, undefined) : null;
  const payload = encodeComputeOp({
    opId,
    requestId: o.requestId,
    attempt: o.attempt ?? 1,
    instance: o.instance,
    image,
    args: o.args,
  });
  await enqueueOp(
    q,
    { opId, instanceUuid: o.instance.uuid, actionId: o.actionId, host: o.host, kind: o.args.kind, attempt: o.attempt ?? 1 },
    { subject: opsSubject(o.subjectPrefix, o.host), payload },
  );
  await startEvent(q, { actionId: o.actionId, event: EVENT_OF[o.args.kind], host: o.host, opId });
  return opId;
}
