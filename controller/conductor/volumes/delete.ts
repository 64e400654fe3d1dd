/**
 * Deleting a volume: DELETING while its host removes it (delete_volume is
 * cleanup: it never expires), then DELETED — seen by no call, its size
 * given back to its pool. A failure or a timeout leaves it in ERROR with
 * the fault, to be deleted again.
 */
import type { Principal } from "../../domain/types.js";
import { GIB } from "../../domain/volume-ops.js";
import { releasePoolBytes, updateVolume } from "../../store/volumes.js";
import type { ConductorContext } from "../context.js";
import type { VolumeResultRules, VolumeTimeoutRules } from "./flow.js";
import { dispatchVolumeOp, volumeAct, type VolumeAccepted } from "./frame.js";

export function deleteVolume(ctx: ConductorContext, who: Principal, id: string, requestId: string): Promise<VolumeAccepted> {
  return volumeAct(ctx, who, id, requestId, "delete", {}, async (conn, v, actionId, deadline) => {
    await updateVolume(conn, v.id, { status: "DELETING", taskDeadline: deadline });
    await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "delete_volume" }, deadline });
  });
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
