/**
 * Extending a volume: the extra size is claimed on its pool first (no room:
 * RESOURCE_EXHAUSTED, nothing changes), EXTENDING while its host grows it,
 * then AVAILABLE at the new size. A host's failure leaves it AVAILABLE at
 * its old size with the fault, the extra claim given back; a timeout leaves
 * it in ERROR with the larger size claimed (its host may have grown it).
 */
import { status } from "@grpc/grpc-js";
import type { Principal } from "../../domain/types.js";
import { GIB } from "../../domain/volume-ops.js";
import { ApiError, invalidArgument } from "../../errors.js";
import type { Volume } from "../../domain/volume.js";
import type { Queryable } from "../../store/db.js";
import { claimPoolBytes, releasePoolBytes, updateVolume, type VolumePatch } from "../../store/volumes.js";
import type { ConductorContext } from "../context.js";
import type { VolumeResultRules, VolumeTimeoutRules } from "./flow.js";
import { dispatchVolumeOp, volumeAct, type VolumeAccepted } from "./frame.js";
import { checkQuota } from "../quota.js";

export function extendVolume(ctx: ConductorContext, who: Principal, id: string, requestId: string, newSizeGb: number): Promise<VolumeAccepted> {
  return volumeAct(ctx, who, id, requestId, "extend", { new_size_gb: newSizeGb }, async (conn, v, actionId, deadline) => {
    if (newSizeGb <= v.sizeGb) throw invalidArgument("new_size_gb", `must be larger than the volume's ${v.sizeGb} GiB`);
    await checkQuota(conn, v.projectId, { gigabytes: newSizeGb - v.sizeGb }, { fields: { gigabytes: "new_size_gb" } });
    const extra = (newSizeGb - v.sizeGb) * GIB;
    if (!(await claimPoolBytes(conn, v.host, v.pool, extra, ctx.volumeOversubscriptionRatio))) {
      throw new ApiError(status.RESOURCE_EXHAUSTED, `the volume's pool has no room for ${newSizeGb - v.sizeGb} more GiB`, {
        reason: "NO_VALID_POOL",
        metadata: { new_size_gb: String(newSizeGb) },
      });
    }
    await updateVolume(conn, v.id, { status: "EXTENDING", taskDeadline: deadline, claimedGb: newSizeGb });
    await dispatchVolumeOp(conn, ctx, { volume: v, actionId, requestId, args: { kind: "extend_volume", sizeBytes: newSizeGb * GIB }, deadline });
  });
}

export const extendResults: VolumeResultRules<"extend_volume"> = {
  extend_volume: {
    status: "EXTENDING",
    apply: async (r) => {
      const size = r.volume.claimedGb ?? r.volume.sizeGb;
      if (r.error) {
        await releasePoolBytes(r.conn, r.volume.host, r.volume.pool, (size - r.volume.sizeGb) * GIB);
        return r.fail({ status: "AVAILABLE", claimedGb: null });
      }
      await r.succeed({ status: "AVAILABLE", sizeGb: size, claimedGb: null });
    },
  },
};

export const extendTimeouts: VolumeTimeoutRules<"EXTENDING"> = {
  EXTENDING: {
    outcome: "the volume is in ERROR at the size asked (its host may have grown it); delete it or ask its host's operator",
    reap: (t) => t.end({ status: "ERROR", sizeGb: t.volume.claimedGb ?? t.volume.sizeGb, claimedGb: null }),
  },
};

/**
 * Settles a volume's in-flight extend claim when what the extend was for
 * goes (its server deleted, its task timed out): once its host was asked
 * to grow it (EXTENDING) the larger size is kept, claimed (the host may
 * have grown it); before (an attached volume's guest still being held) the
 * extra claim is given back. The patch to apply to the volume.
 */
export async function settleExtendClaim(q: Queryable, v: Volume): Promise<VolumePatch> {
  if (v.claimedGb === null) return {};
  if (v.status === "EXTENDING") return { sizeGb: v.claimedGb, claimedGb: null };
  await releasePoolBytes(q, v.host, v.pool, (v.claimedGb - v.sizeGb) * GIB);
  return { claimedGb: null };
}
