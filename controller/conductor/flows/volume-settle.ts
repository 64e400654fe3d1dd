/**
 * What a server's volumes are left with when its delete could not destroy
 * it (flows/delete.ts): each attach, detach, extend or live migration the
 * delete interrupted settles. Apart from volumes.ts, whose flows this one
 * reads with volume-extend.ts's.
 */
import type { Instance } from "../../domain/types.js";
import { ROOT_DEVICE } from "../../domain/volume.js";
import type { Tx } from "../context.js";
import { settleExtendClaim } from "../volumes/extend.js";
import { extending, release } from "./volume-extend.js";
import { settleMoves } from "./volume-moves.js";
import { free, reattach, requestIdOf, undoAttach } from "./volumes.js";

/**
 * A delete whose host failed to destroy the server (it is in ERROR, still
 * on its host): attaches, detaches, extends and live migrations it
 * interrupted settle — one being attached is undone (not a root volume),
 * one being detached stays attached, one being grown is IN_USE, a
 * move's exports to a host the server is not on end.
 */
export async function settleVolumes(tx: Tx, inst: Instance, actionId: number): Promise<void> {
  // A move it interrupted: the volumes keep the exports of the host the server is on, the others end.
  await settleMoves(tx, inst, actionId, await requestIdOf(tx, actionId, `settle-${inst.uuid}`));
  for (const a of await tx.store.attachmentsOf(inst.uuid)) {
    // A root volume stays with the server, whose domain may still be there.
    if (a.state === "attaching" && a.device !== ROOT_DEVICE) await undoAttach(tx, inst, a, actionId);
    else if (a.state === "detaching") await reattach(tx.store, a);
    else if (a.state === "detached") await free(tx, a);
  }
  // An extend it interrupted: the claim settled, the volume IN_USE, a hold of the guest ended.
  const growing = await extending({ store: tx.store, inst });
  if (growing) {
    const settled = await settleExtendClaim(tx.conn, growing.v);
    await tx.store.updateVolume(growing.v.id, { status: "IN_USE", ...settled });
    await release(tx, inst, growing.a, settled.sizeGb ?? growing.v.sizeGb, actionId);
  }
}
