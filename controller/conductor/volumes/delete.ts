/**
 * Deleting a volume: DELETING while its host removes it (delete_volume is
 * cleanup: it never expires), then DELETED — seen by no call, its size
 * given back to its pool. A failure or a timeout leaves it in ERROR with
 * the fault, to be deleted again.
 */
import type { Principal } from "../../domain/types.js";
import { GIB } from "../../domain/volume-ops.js";
import { failedPrecondition } from "../../errors.js";
import type { PoolConnection } from "../../store/db.js";
import { hasSnapshots } from "../../store/volume-snapshots.js";
import { INTERNAL_REQUEST_PREFIX } from "../../domain/types.js";
import { getVolumeAction, insertVolumeAction } from "../../store/volume-actions.js";
import { getVolume, releasePoolBytes, updateVolume } from "../../store/volumes.js";
import type { ConductorContext } from "../context.js";
import type { VolumeResultRules, VolumeTimeoutRules } from "./flow.js";
import { settleExtendClaim } from "./extend.js";
import { dispatchVolumeOp, volumeAct, volumeTask, type VolumeAccepted } from "./frame.js";

export function deleteVolume(ctx: ConductorContext, who: Principal, id: string, requestId: string): Promise<VolumeAccepted> {
  return volumeAct(ctx, who, id, requestId, "delete", {}, async (conn, v, actionId, deadline) => {
    if (await hasSnapshots(conn, v.id)) throw failedPrecondition(`volume ${id} has snapshots; delete them first`, "VOLUME_HAS_SNAPSHOTS");
    await updateVolume(conn, v.id, { status: "DELETING", taskDeadline: deadline });
    await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "delete_volume" }, deadline });
  });
}

/**
 * Deletes a volume whose server `serverId` is deleted with
 * delete_on_termination, in the server's transaction: whatever its status,
 * it is DELETING under a delete action of its own, whose request id is of
 * the controller's (a prefix no caller's request id may have). A volume
 * with snapshots is not deleted (as DeleteVolume refuses it): false, and
 * the caller frees it as any other.
 */
export async function deleteWithServer(conn: PoolConnection, ctx: ConductorContext, volumeId: string, serverId: string): Promise<boolean> {
  const requestId = `${INTERNAL_REQUEST_PREFIX}server-delete-${serverId}`;
  const v = await getVolume(conn, volumeId, { lock: true });
  if (!v || v.status === "DELETED" || v.status === "DELETING") return true;
  if (await getVolumeAction(conn, v.id, requestId)) return true;
  if (await hasSnapshots(conn, v.id)) {
    ctx.log.warn({ volume_id: v.id }, "a volume attached with delete_on_termination has snapshots: kept, not deleted with its server");
    return false;
  }
  const { taskDeadline } = volumeTask(ctx, "DELETING");
  const actionId = await insertVolumeAction(conn, { volumeId, projectId: v.projectId, action: "delete", requestId, request: { with_server: true }, deadline: taskDeadline });
  // One caught growing: its claim settled, and given back with it.
  const settled = await settleExtendClaim(conn, v);
  await updateVolume(conn, volumeId, { status: "DELETING", taskDeadline, ...settled });
  await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "delete_volume" }, deadline: taskDeadline });
  return true;
}

export const deleteResults: VolumeResultRules<"delete_volume"> = {
  delete_volume: {
    status: "DELETING",
    apply: async (r) => {
      if (r.error) return r.fail({ status: "ERROR" });
      await releasePoolBytes(r.conn, r.volume.host, r.volume.pool, r.volume.sizeGb * GIB);
      await r.succeed({ status: "DELETED" });
    },
  },
};

export const deleteTimeouts: VolumeTimeoutRules<"DELETING"> = {
  DELETING: { outcome: "the volume is in ERROR; delete it again", reap: (t) => t.end({ status: "ERROR" }) },
};
