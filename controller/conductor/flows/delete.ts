/**
 * Delete: every host that may hold a copy destroys it. A server never
 * placed, or whose host is down, is deleted here at once, as Nova does
 * (its host destroys the copy when it is back). Delete interrupts any task
 * but another delete, as Nova's force delete does.
 */
import { LIVE_STATES, TASK_STATES } from "../../domain/states.js";
import { isUp } from "../../domain/service.js";
import type { Principal } from "../../domain/types.js";
import type { Accepted } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext } from "../context.js";
import type { ActionRules, ResultRules, TimeoutRules } from "../flow.js";
import { releaseEverything } from "../moves.js";
import { settleVolumes } from "./volume-settle.js";
import { releaseVolumes } from "./volumes.js";

export const actions = {
  delete: { from: LIVE_STATES, task: "DELETING", interrupts: TASK_STATES.filter((t) => t !== "DELETING") },
} as const satisfies ActionRules<"delete">;

const gone = () => ({ vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date() }) as const;

export function deleteServer(ctx: ConductorContext, who: Principal, uuid: string, requestId: string): Promise<Accepted> {
  return act(ctx, who, uuid, requestId, "delete", actions.delete, {}, async (tx, inst, actionId) => {
    const { store } = tx;
    const node = inst.host ? await store.getNodeByHost(inst.host) : null;
    const hostUp = node ? isUp(node, ctx.serviceDownTimeSeconds) : false;
    const migration = await store.openMigration(inst.uuid, { lock: true });
    const deleting = await tx.update(inst.uuid, tx.task("DELETING"));
    // Every host that may hold a copy destroys it (when it comes back, if down).
    const hosts = new Set([inst.host, migration?.sourceHost, migration?.targetHost].filter((h): h is string => !!h));
    for (const host of hosts) await tx.dispatch({ instance: deleting, host, actionId, requestId, args: { kind: "destroy" } });
    if (migration) await store.updateMigration(migration.id, { status: "CANCELLED" });
    // A shelved server's snapshot goes with it, as in Nova.
    if (inst.shelvedImageId) await store.deleteImage(inst.shelvedImageId);
    if (inst.host && hostUp) return { instance: deleting };
    // Never placed, or its host is down: delete locally, as Nova does.
    await releaseEverything(store, inst.uuid);
    await releaseVolumes(tx, inst, actionId);
    await store.instantEvent({ actionId, event: "local_delete", host: inst.host ?? "", result: "Success" });
    await store.finishAction(actionId);
    return { instance: await tx.update(inst.uuid, gone()) };
  });
}

export const results = {
  destroy: {
    tasks: ["DELETING"],
    apply: async (r) => {
      // With a move open, only the server's current host finishes the delete;
      // the other copy's destroy is cleanup.
      if (r.inst.host && r.op.host !== r.inst.host) return;
      if (r.error) {
        await settleVolumes(r.tx, r.inst, r.op.actionId);
        return r.fail({ vmState: "ERROR" });
      }
      await releaseEverything(r.store, r.inst.uuid);
      await releaseVolumes(r.tx, r.inst, r.op.actionId);
      return r.succeed(gone());
    },
  },
} as const satisfies ResultRules<"destroy">;

export const timeouts = {
  DELETING: {
    outcome: "the server was deleted here; its host removes it when it is back",
    reap: async (t) => {
      // The destroy op stays queued for the host; the server is gone now.
      await releaseEverything(t.store, t.inst.uuid);
      await releaseVolumes(t.tx, t.inst, t.actionId);
      await t.update({ ...gone(), fault: t.fault });
      if (t.actionId !== null) await t.store.instantEvent({ actionId: t.actionId, event: "local_delete", host: t.inst.host ?? "", result: "Success" });
      await t.failAction();
    },
  },
} as const satisfies TimeoutRules<"DELETING">;
