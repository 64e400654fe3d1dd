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
import { DEADLOCK_RETRIES, withTx } from "../store/db.js";
import { currentTraceParent } from "../tracing.js";
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
  /** The server was just made: it has no interfaces to read yet (they come when it is placed). */
  readonly noInterfacesYet?: boolean;
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

/** A locked server takes no change but an admin's (FAILED_PRECONDITION LOCKED). */
export function refuseLocked(inst: Instance, who: Principal): void {
  if (!inst.lockedBy || who.role === "admin") return;
  throw failedPrecondition(`server ${inst.uuid} is locked${inst.lockedReason ? ` (${inst.lockedReason})` : ""}; unlock it first`, "LOCKED", {
    locked_reason: inst.lockedReason,
  });
}

/** The server and its operation, the action `actionId`. */
export async function accepted(pool: Pool, inst: Instance, actionId: number, imageId?: string): Promise<Accepted> {
  const operation = await getActionById(pool, actionId);
  if (!operation) throw new Error(`server ${inst.uuid} has no action ${actionId}`);
  imageId ??= operation.imageId ?? undefined;
  return { instance: inst, operation, ...(imageId ? { imageId } : {}) };
}

/** What a request asked for: its own fields, by their API names. */
export type RequestBody = Readonly<Record<string, unknown>>;

/** A value in one canonical spelling (object keys sorted), to compare requests. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
  }
  return JSON.stringify(v ?? null);
}

/** A request id used for another action is refused, naming the action. */
export function checkSameAction(requestId: string, usedFor: string, action: string): void {
  if (usedFor === action) return;
  throw new ApiError(status.ALREADY_EXISTS, `request_id ${JSON.stringify(requestId)} was already used for ${usedFor}`, {
    reason: "REQUEST_ID_REUSED",
    fieldViolations: [{ field: "request_id", description: `already used for ${usedFor}` }],
  });
}

/**
 * A request id is one request (AIP-155): repeated with the same request it
 * returns the first one's result; with another, it is refused, naming the
 * fields that differ. An action recorded before requests were kept
 * (`recorded` null) cannot be compared and is taken as the same.
 */
export function checkSameRequest(requestId: string, what: string, recorded: RequestBody | null, request: RequestBody): void {
  if (recorded === null) return;
  const fields = [...new Set([...Object.keys(recorded), ...Object.keys(request)])].sort();
  const differ = fields.filter((f) => canonical(recorded[f]) !== canonical(request[f]));
  if (differ.length === 0) return;
  throw new ApiError(status.ALREADY_EXISTS, `request_id ${JSON.stringify(requestId)} was already used for another ${what} request (it differs in ${differ.join(", ")})`, {
    reason: "REQUEST_ID_REUSED",
    fieldViolations: [
      { field: "request_id", description: `already used for another ${what} request` },
      ...differ.map((f) => ({ field: f, description: `differs from the first request with this request_id (${canonical(recorded[f])})` })),
    ],
  });
}

/**
 * Runs `action` (whose row is `rule`) on server `uuid` in the frame, asked
 * with `request` (its own fields); `body` does the flow's part.
 */
export async function act(
  ctx: ConductorContext,
  who: Principal,
  uuid: string,
  requestId: string,
  action: ServerAction,
  rule: ActionRule,
  request: RequestBody,
  body: (tx: Tx, inst: Instance, actionId: number) => Promise<Step>,
): Promise<Accepted> {
  const name = actionName(action);
  let actionId = 0;
  const step = await withTx(ctx.pool, async (conn): Promise<Step> => {
    const inst = await visible(conn, who, uuid, true);
    const prior = await findAction(conn, uuid, requestId);
    if (prior) {
      checkSameAction(requestId, prior.action, name);
      checkSameRequest(requestId, name, prior.request, request);
      actionId = prior.id;
      return { instance: inst };
    }
    // A deleted server is gone for every new action, as in Nova.
    if (inst.deletedAt) throw notFound("server", uuid);
    if (!rule.whenLocked) refuseLocked(inst, who);
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
    const state = rule.scheduled ? "PENDING" : "RUNNING";
    // The operation is the server's project's, also when an admin acts on it.
    actionId = await insertAction(conn, { instanceUuid: uuid, requestId, projectId: inst.projectId, action: name, state, deadline, request, traceParent: currentTraceParent() });
    return body(tx, inst, actionId);
    // A deadlock (an action's and a placement's or another action's row locks
    // taken in other orders, such as subnets' when ports are made and freed)
    // runs the whole action again in a fresh transaction.
  }, { deadlockRetries: DEADLOCK_RETRIES });
  return accepted(ctx.pool, step.instance, actionId, step.imageId);
}
