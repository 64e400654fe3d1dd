/**
 * The frame every action on a server runs in: lock the row, replay a
 * repeated request id, check the lock, the allowed-state table and the task
 * in flight, record the action, run the flow's body, commit.
 */
import { status } from "@grpc/grpc-js";
import type { ServerAction } from "../domain/states.js";
import { actionName } from "../domain/states.js";
import type { Instance, InstanceAction, Principal } from "../domain/types.js";
import { ApiError, failedPrecondition, notFound } from "../errors.js";
import { findAction, getActionById, insertAction } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { withTx } from "../store/db.js";
import { getInstance } from "../store/instances.js";
import type { ConductorContext } from "./context.js";
import { Tx } from "./context.js";
import type { ActionRule } from "./flow.js";

/** What a mutating call returns: the server after the call, and its operation. */
export interface Accepted {
  readonly instance: Instance;
  readonly operation: InstanceAction;
  /** The image the action created, if any (CreateServerImage). */
  readonly imageId?: string;
}

/** What an action's body did. */
export interface Step {
  readonly instance: Instance;
  /** An image the action created (snapshot). */
  readonly imageId?: string;
}

/** Loads a server the caller may see (another project's is NOT_FOUND). */
export async function visible(q: Pool | PoolConnection, who: Principal, uuid: string, lock = false): Promise<Instance> {
  const inst = await getInstance(q, uuid, { lock });
  if (!inst || (who.role !== "admin" && inst.projectId !== who.projectId)) throw notFound("server", uuid);
  return inst;
}

/** The server and the operation of `requestId` on it. */
export async function accepted(pool: Pool, inst: Instance, requestId = inst.requestId, imageId?: string): Promise<Accepted> {
  const action = await findAction(pool, inst.uuid, requestId);
  const operation = action ? await getActionById(pool, action.id) : null;
  if (!operation) throw new Error(`server ${inst.uuid} has no action for request ${requestId}`);
  imageId ??= operation.imageId ?? undefined;
  return { instance: inst, operation, ...(imageId ? { imageId } : {}) };
}

/** Runs `action` (whose row is `rule`) on server `uuid` in the frame; `body` does the flow's part. */
export async function act(
  ctx: ConductorContext,
  who: Principal,
  uuid: string,
  requestId: string,
  action: ServerAction,
  rule: ActionRule,
  body: (tx: Tx, inst: Instance, actionId: number) => Promise<Step>,
): Promise<Accepted> {
  const name = actionName(action);
  const step = await withTx(ctx.pool, async (conn): Promise<Step> => {
    const inst = await visible(conn, who, uuid, true);
    const prior = await findAction(conn, uuid, requestId);
    if (prior) {
      if (prior.action !== name) {
        throw new ApiError(status.ALREADY_EXISTS, `request_id ${JSON.stringify(requestId)} was already used for ${prior.action}`, {
          reason: "REQUEST_ID_REUSED",
          fieldViolations: [{ field: "request_id", description: `already used for ${prior.action}` }],
        });
      }
      return { instance: inst };
    }
    // A deleted server is gone for every new action, as in Nova.
    if (inst.deletedAt) throw notFound("server", uuid);
    if (inst.lockedBy && who.role !== "admin" && !rule.whenLocked) {
      throw failedPrecondition(`server ${uuid} is locked${inst.lockedReason ? ` (${inst.lockedReason})` : ""}; unlock it first`, "LOCKED", {
        locked_reason: inst.lockedReason,
      });
    }
    if (!rule.from.includes(inst.vmState)) {
      throw failedPrecondition(`cannot ${name} server ${uuid} while it is ${inst.vmState}; allowed from: ${rule.from.join(", ")}`, "INVALID_STATE", {
        vm_state: inst.vmState,
      });
    }
    if (inst.taskState && !rule.interrupts?.includes(inst.taskState)) {
      throw new ApiError(status.ABORTED, `server ${uuid} is busy: task ${inst.taskState} is running`, {
        reason: "TASK_IN_PROGRESS",
        metadata: { task_state: inst.taskState },
      });
    }
    const tx = new Tx(conn, ctx);
    const deadline = rule.task ? tx.task(rule.task).taskDeadline : null;
    const actionId = await insertAction(conn, { instanceUuid: uuid, requestId, projectId: who.projectId, action: name, state: rule.scheduled ? "PENDING" : "RUNNING", deadline });
    return body(tx, inst, actionId);
  });
  return accepted(ctx.pool, step.instance, requestId, step.imageId);
}
