/**
 * Creating a volume: made at once (make.ts: placed, claimed atomically,
 * recorded CREATING with its create action, the create_volume op sent to
 * its host); the host's result makes it AVAILABLE or ERROR (ATTACHING when
 * it was made for a new server to boot from, whose build then goes on). A volume keeps its size claimed
 * on its pool until it is deleted (also in ERROR: what its host made is
 * there until a delete removes it).
 */
import { status } from "@grpc/grpc-js";
import type { Principal } from "../../domain/types.js";
import type { Volume } from "../../domain/volume.js";
import { GIB } from "../../domain/volume-ops.js";
import type { PoolConnection } from "../../store/db.js";
import { DEADLOCK_RETRIES, isDuplicateKey, withTx } from "../../store/db.js";
import { getVolumeAction } from "../../store/volume-actions.js";
import { addPoolBytes, findVolumeByRequest, updateVolume } from "../../store/volumes.js";
import { checkSameRequest, type RequestBody } from "../act.js";
import type { ConductorContext } from "../context.js";
import { rootVolumeMade } from "../flows/boot-volume.js";
import { faultOf, operationErrorOf, operationErrorOfFault } from "../flow.js";
import type { VolumeResultRules, VolumeTimeoutRules } from "./flow.js";
import { volumeAccepted, type VolumeAccepted } from "./frame.js";
import { makeVolume, type NewVolumeRequest } from "./make.js";

/** CreateVolume: a repeated request id returns the first volume. */
export async function createVolume(ctx: ConductorContext, who: Principal, req: NewVolumeRequest, request: RequestBody): Promise<VolumeAccepted> {
  const replay = async (conn: PoolConnection | ConductorContext["pool"], v: Volume): Promise<number> => {
    const action = await getVolumeAction(conn, v.id, req.requestId);
    if (!action) throw new Error(`volume ${v.id} has no create action`);
    checkSameRequest(req.requestId, "create", action.request, request);
    return action.id;
  };
  let done: { id: string; actionId: number };
  try {
    done = await withTx(
      ctx.pool,
      async (conn) => {
        const prior = await findVolumeByRequest(conn, who.projectId, req.requestId);
        if (prior) return { id: prior.id, actionId: await replay(conn, prior) };
        const { volume, actionId } = await makeVolume(conn, ctx, who, req, request);
        return { id: volume.id, actionId };
      },
      { deadlockRetries: DEADLOCK_RETRIES },
    );
  } catch (err) {
    // The same request id at the same moment: the other call made it.
    if (!isDuplicateKey(err)) throw err;
    const prior = await findVolumeByRequest(ctx.pool, who.projectId, req.requestId);
    if (!prior) throw err;
    done = { id: prior.id, actionId: await replay(ctx.pool, prior) };
  }
  return volumeAccepted(ctx.pool, done.id, done.actionId);
}

export const createResults: VolumeResultRules<"create_volume"> = {
  create_volume: {
    status: "CREATING",
    apply: async (r) => {
      if (r.error) {
        await r.fail({ status: "ERROR" });
        // A server waiting to boot from it fails with it.
        await rootVolumeMade(r.conn, r.ctx, r.volume.id, { fault: faultOf(r.error, r.op), error: operationErrorOf(r.error, r.op) });
        return;
      }
      // A source larger than asked makes a larger volume: it is that size now.
      const grown = Math.ceil((r.outcome.volume?.sizeBytes ?? 0) / GIB);
      if (grown > r.volume.sizeGb) {
        await addPoolBytes(r.conn, r.volume.host, r.volume.pool, (grown - r.volume.sizeGb) * GIB);
        await updateVolume(r.conn, r.volume.id, { sizeGb: grown });
      }
      // Made for a server to boot from: reserved for it (ATTACHING), and the server is placed next.
      await r.succeed({ status: await rootVolumeMade(r.conn, r.ctx, r.volume.id, null) });
    },
  },
};

export const createTimeouts: VolumeTimeoutRules<"CREATING"> = {
  CREATING: {
    outcome: "the volume is in ERROR; delete it to free its pool",
    reap: async (t) => {
      await t.end({ status: "ERROR" });
      await rootVolumeMade(t.conn, t.ctx, t.volume.id, { fault: t.fault, error: operationErrorOfFault(t.fault, status.DEADLINE_EXCEEDED) });
    },
  },
};
