/**
 * Power: start, stop, reboot (soft and hard), pause, unpause, suspend,
 * resume. One op to the server's host; its result sets the vm_state and
 * power state. A failure leaves the server as it was with the fault
 * recorded, as Nova does; a failed reboot leaves it in ERROR. A timeout
 * keeps the last known state: the host's reports correct it when it is back.
 */
import type { OpArgs } from "../../domain/ops.js";
import type { PowerState, TaskState, VmState } from "../../domain/states.js";
import type { Principal } from "../../domain/types.js";
import { failedPrecondition } from "../../errors.js";
import type { Accepted, RequestBody } from "../act.js";
import { act } from "../act.js";
import type { ConductorContext } from "../context.js";
import type { ActionRule, ActionRules, ResultRule, ResultRules, TimeoutRules } from "../flow.js";

type PowerAction = "start" | "stop" | "reboot_soft" | "reboot_hard" | "pause" | "unpause" | "suspend" | "resume";
type PowerOp = "power_on" | "power_off" | "reboot" | "pause" | "unpause" | "suspend" | "resume";

export const actions = {
  start: { from: ["STOPPED"], task: "POWERING_ON" },
  stop: { from: ["ACTIVE", "ERROR"], task: "POWERING_OFF" },
  reboot_soft: { from: ["ACTIVE"], task: "REBOOTING" },
  // A hard reboot may take over a soft one.
  reboot_hard: { from: ["ACTIVE", "STOPPED", "PAUSED", "SUSPENDED", "ERROR"], task: "REBOOTING_HARD", interrupts: ["REBOOTING"] },
  pause: { from: ["ACTIVE"], task: "PAUSING" },
  unpause: { from: ["PAUSED"], task: "UNPAUSING" },
  suspend: { from: ["ACTIVE"], task: "SUSPENDING" },
  resume: { from: ["SUSPENDED"], task: "RESUMING" },
} as const satisfies ActionRules<PowerAction>;

/** A power op's row: the task it finishes and the vm_state and default power state it ends in. */
function powerResult(tasks: readonly TaskState[], vm: VmState, power: PowerState): ResultRule {
  return {
    tasks,
    apply: async (r) => {
      // A failed reboot leaves the server in an unknown state.
      if (r.error) return r.fail({ vmState: r.op.kind === "reboot" ? "ERROR" : undefined, powerState: r.power });
      return r.succeed({ vmState: vm, powerState: r.power ?? power });
    },
  };
}

export const results = {
  power_on: powerResult(["POWERING_ON"], "ACTIVE", "RUNNING"),
  power_off: powerResult(["POWERING_OFF"], "STOPPED", "SHUTDOWN"),
  reboot: powerResult(["REBOOTING", "REBOOTING_HARD"], "ACTIVE", "RUNNING"),
  pause: powerResult(["PAUSING"], "PAUSED", "PAUSED"),
  unpause: powerResult(["UNPAUSING"], "ACTIVE", "RUNNING"),
  suspend: powerResult(["SUSPENDING"], "SUSPENDED", "SUSPENDED"),
  resume: powerResult(["RESUMING"], "ACTIVE", "RUNNING"),
} as const satisfies ResultRules<PowerOp>;

/** Power tasks: a dead host leaves them hanging, so evacuate may take over. */
export const POWER_TASKS = Object.values(actions).map((a) => a.task);

const keepState = { outcome: "the server keeps its last known state", reap: (t) => t.end() } as const satisfies TimeoutRules<TaskState>[TaskState];

export const timeouts = Object.fromEntries(POWER_TASKS.map((t) => [t, keepState])) as TimeoutRules<(typeof POWER_TASKS)[number]>;

/** Sets the action's task and sends `args` to the server's host. */
function powerAction(
  ctx: ConductorContext,
  who: Principal,
  uuid: string,
  requestId: string,
  action: PowerAction,
  args: OpArgs,
  request: RequestBody = {},
): Promise<Accepted> {
  const rule: ActionRule = actions[action];
  return act(ctx, who, uuid, requestId, action, rule, request, async (tx, inst, actionId) => {
    if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
    const busy = await tx.update(inst.uuid, tx.task(rule.task!));
    await tx.dispatch({ instance: busy, host: inst.host, actionId, requestId, args });
    return { instance: busy };
  });
}

export const start = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) => powerAction(ctx, who, uuid, rid, "start", { kind: "power_on" });

export const stop = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) =>
  powerAction(ctx, who, uuid, rid, "stop", { kind: "power_off", timeoutSeconds: ctx.powerOffTimeoutSeconds });

export const reboot = (ctx: ConductorContext, who: Principal, uuid: string, rid: string, hard: boolean) =>
  powerAction(ctx, who, uuid, rid, hard ? "reboot_hard" : "reboot_soft", { kind: "reboot", hard, softTimeoutSeconds: ctx.softRebootTimeoutSeconds }, {
    type: hard ? "REBOOT_TYPE_HARD" : "REBOOT_TYPE_SOFT",
  });

export const pause = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) => powerAction(ctx, who, uuid, rid, "pause", { kind: "pause" });

export const unpause = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) => powerAction(ctx, who, uuid, rid, "unpause", { kind: "unpause" });

export const suspend = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) => powerAction(ctx, who, uuid, rid, "suspend", { kind: "suspend" });

export const resume = (ctx: ConductorContext, who: Principal, uuid: string, rid: string) => powerAction(ctx, who, uuid, rid, "resume", { kind: "resume" });
