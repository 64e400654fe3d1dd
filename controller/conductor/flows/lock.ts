/**
 * Lock and unlock (Nova's lock): no task and no op; allowed in any state,
 * beside any task, and to the owner of a locked server. A server an admin
 * locked is unlocked by an admin only.
 */
import { LIVE_STATES, TASK_STATES } from "../../domain/states.js";
import type { Principal } from "../../domain/types.js";
import { permissionDenied } from "../../errors.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext } from "../context.js";
import type { ActionRules } from "../flow.js";

export const actions = {
  lock: { from: LIVE_STATES, task: null, interrupts: TASK_STATES, whenLocked: true },
  unlock: { from: LIVE_STATES, task: null, interrupts: TASK_STATES, whenLocked: true },
} as const satisfies ActionRules<"lock" | "unlock">;

export function lock(ctx: ConductorContext, who: Principal, uuid: string, requestId: string, reason: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "lock", actions.lock, { reason }, async (tx, inst, actionId) => {
    if (inst.lockedBy === "admin" && who.role !== "admin") throw permissionDenied(`server ${uuid} was locked by an admin`);
    const locked = await tx.update(uuid, { lockedBy: who.role === "admin" ? "admin" : "owner", lockedReason: reason });
    await tx.store.finishAction(actionId);
    return { instance: locked };
  });
}

export function unlock(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "unlock", actions.unlock, {}, async (tx, inst, actionId) => {
    if (inst.lockedBy === "admin" && who.role !== "admin") throw permissionDenied(`server ${uuid} was locked by an admin; only an admin can unlock it`);
    const unlocked = await tx.update(uuid, { lockedBy: null, lockedReason: "" });
    await tx.store.finishAction(actionId);
    return { instance: unlocked };
  });
}
