import { randomUUID } from "node:crypto";
import { encodeComputeOp } from "../bus/op-codec.js";
import type { OpArgs, OpKind } from "../bus/op-codec.js";
import { opsSubject } from "../bus/subjects.js";
import type { Instance } from "../domain/types.js";
import { startEvent } from "../store/actions.js";
import type { Queryable } from "../store/db.js";
import { getImage } from "../store/catalog.js";
import { enqueueOp } from "../store/ops.js";

/** The action-event name of each op kind, as Nova names them. */
export const EVENT_OF: Readonly<Record<OpKind, string>> = {
  spawn: "compute_spawn",
  destroy: "compute_terminate",
  power_on: "compute_start",
  power_off: "compute_stop",
  reboot: "compute_reboot",
  pause: "compute_pause",
  unpause: "compute_unpause",
  suspend: "compute_suspend",
  resume: "compute_resume",
  migrate_disk: "compute_resize_instance",
  finish_migration: "compute_finish_resize",
  confirm_migration: "compute_confirm_resize",
  revert_migration: "compute_revert_resize",
  finish_revert_migration: "compute_finish_revert_resize",
  abort: "compute_abort",
  snapshot: "compute_snapshot",
  shelve: "compute_shelve",
  rebuild: "compute_rebuild",
  pre_live_migration: "compute_pre_live_migration",
  live_migrate: "compute_live_migration",
  post_live_migration: "compute_post_live_migration",
  rollback_live_migration: "compute_rollback_live_migration",
};

/** Ops that kill or undo: they never expire, whenever the host gets them. */
const CLEANUP: ReadonlySet<OpKind> = new Set<OpKind>(["destroy", "confirm_migration", "revert_migration", "abort", "rollback_live_migration"]);

/**
 * Ops that build the instance's disks on their host from its image (base,
 * kernel and ramdisk fetched by id, the checksum verified): they carry the
 * image record.
 */
const BUILDS_ON_HOST = new Set<OpKind>(["spawn", "rebuild", "finish_migration", "pre_live_migration"]);

/**
 * Sends an op to a host: records the op and its action event and queues the
 * message in the outbox, all in the caller's transaction. The op carries the
 * instance's task deadline (unless it is a cleanup op): a host that gets it
 * later does not start it.
 */
export async function dispatchOp(
  q: Queryable,
  o: {
    instance: Instance;
    host: string;
    actionId: number;
    requestId: string;
    args: OpArgs;
    attempt?: number;
    subjectPrefix: string;
    /** The image to build from, when not the instance's own (an unshelve builds from its snapshot). */
    imageId?: string;
  },
): Promise<string> {
  const opId = randomUUID();
  const needsImage = BUILDS_ON_HOST.has(o.args.kind);
  const image = needsImage ? await getImage(q, o.imageId ?? o.instance.imageId, undefined) : null;
  const payload = encodeComputeOp({
    opId,
    requestId: o.requestId,
    attempt: o.attempt ?? 1,
    instance: o.instance,
    image,
    args: o.args,
    deadline: CLEANUP.has(o.args.kind) ? null : o.instance.taskDeadline,
  });
  await enqueueOp(
    q,
    { opId, instanceUuid: o.instance.uuid, actionId: o.actionId, host: o.host, kind: o.args.kind, attempt: o.attempt ?? 1 },
    { subject: opsSubject(o.subjectPrefix, o.host), payload },
  );
  await startEvent(q, { actionId: o.actionId, event: EVENT_OF[o.args.kind], host: o.host, opId });
  return opId;
}
