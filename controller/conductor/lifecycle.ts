import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Action } from "../domain/states.js";
import { ALLOWED_FROM, INTERRUPTIBLE_BY, TASK_OF } from "../domain/states.js";
import type { Flavor, Image, Instance, Principal } from "../domain/types.js";
import { ApiError, failedPrecondition, notFound } from "../errors.js";
import { findAction, finishAction, insertAction, instantEvent } from "../store/actions.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { isDuplicateKey, withTx } from "../store/db.js";
import { getInstance, getInstanceByRequest, insertInstance, updateInstance } from "../store/instances.js";
import { getNodeByHost, releaseAllocations } from "../store/nodes.js";
import type { OpArgs } from "../bus/op-codec.js";
import { dispatchOp } from "./dispatch.js";
import { isUp } from "../domain/service.js";

/** Who to wake after a commit. */
export interface Wakeups {
  readonly scheduler: () => void;
  readonly outbox: () => void;
  readonly watchers: () => void;
}

export interface LifecycleOptions {
  readonly subjectPrefix: string;
  readonly serviceDownTimeSeconds: number;
  /** Seconds a guest gets to shut down cleanly on stop. */
  readonly powerOffTimeoutSeconds: number;
}

/**
 * Server lifecycle: validated requests become state changes, action records
 * and ops, each in one transaction.
 */
export class Lifecycle {
  constructor(
    private readonly pool: Pool,
    private readonly opts: LifecycleOptions,
    private readonly wake: Wakeups,
  ) {}

  /** Loads a server the caller may see (another project's is NOT_FOUND). */
  async visible(q: Pool | PoolConnection, who: Principal, uuid: string, lock = false): Promise<Instance> {
    const inst = await getInstance(q, uuid, { lock });
    if (!inst || (who.role !== "admin" && inst.projectId !== who.projectId)) throw notFound("server", uuid);
    return inst;
  }

  /** DESIGN §2 step 1: instance + create action in one transaction; idempotent by request id. */
  async create(
    who: Principal,
    req: { name: string; flavor: Flavor; image: Image; metadata: Record<string, string>; requestId: string },
  ): Promise<Instance> {
    const existing = await getInstanceByRequest(this.pool, who.projectId, req.requestId);
    if (existing) return existing;
    const uuid = randomUUID();
    try {
      const inst = await withTx(this.pool, async (conn) => {
        await insertInstance(conn, {
          uuid,
          name: req.name,
          projectId: who.projectId,
          requestId: req.requestId,
          flavor: { id: req.flavor.id, name: req.flavor.name, vcpus: req.flavor.vcpus, ramMb: req.flavor.ramMb, diskGb: req.flavor.diskGb },
          extraSpecs: req.flavor.extraSpecs,
          imageId: req.image.id,
          metadata: req.metadata,
        });
        await insertAction(conn, { instanceUuid: uuid, requestId: req.requestId, projectId: who.projectId, action: "create" });
        return updateInstance(conn, uuid, {});
      });
      this.wake.scheduler();
      this.wake.watchers();
      return inst;
    } catch (err) {
      // Two identical requests raced: the loser returns the winner's server.
      if (isDuplicateKey(err)) {
        const winner = await getInstanceByRequest(this.pool, who.projectId, req.requestId);
        if (winner) return winner;
      }
      throw err;
    }
  }

  async delete(who: Principal, uuid: string, requestId: string): Promise<Instance> {
    return this.act(who, uuid, requestId, "delete", async (conn, inst, actionId) => {
      const node = inst.host ? await getNodeByHost(conn, inst.host) : null;
      const hostUp = node ? isUp(node, this.opts.serviceDownTimeSeconds) : false;
      if (inst.host) {
        // The host destroys the VM (and cleans up when it comes back, if down).
        await dispatchOp(conn, { instance: inst, host: inst.host, actionId, requestId, args: { kind: "destroy" }, subjectPrefix: this.opts.subjectPrefix });
      }
      if (inst.host && hostUp) return updateInstance(conn, inst.uuid, { taskState: "DELETING" });
      // Never placed, or its host is down: delete locally, as Nova does.
      await releaseAllocations(conn, inst.uuid);
      await instantEvent(conn, { actionId, event: "local_delete", host: inst.host ?? "", result: "Success" });
      await finishAction(conn, actionId);
      return updateInstance(conn, inst.uuid, { vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date() });
    });
  }

  async start(who: Principal, uuid: string, requestId: string): Promise<Instance> {
    return this.simple(who, uuid, requestId, "start", { kind: "power_on" });
  }

  async stop(who: Principal, uuid: string, requestId: string): Promise<Instance> {
    return this.simple(who, uuid, requestId, "stop", { kind: "power_off", timeoutSeconds: this.opts.powerOffTimeoutSeconds });
  }

  async reboot(who: Principal, uuid: string, requestId: string, hard: boolean): Promise<Instance> {
    return this.simple(who, uuid, requestId, hard ? "reboot_hard" : "reboot_soft", { kind: "reboot", hard });
  }

  /** An action that sets its task state and sends one op to the server's host. */
  private simple(who: Principal, uuid: string, requestId: string, action: Exclude<Action, "create">, args: OpArgs): Promise<Instance> {
    return this.act(who, uuid, requestId, action, async (conn, inst, actionId) => {
      if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
      await dispatchOp(conn, { instance: inst, host: inst.host, actionId, requestId, args, subjectPrefix: this.opts.subjectPrefix });
      return updateInstance(conn, inst.uuid, { taskState: TASK_OF[action] });
    });
  }

  /**
   * The frame of every action: lock the server, replay a repeated request id,
   * check the allowed-state table, record the action, run `body`, commit.
   */
  private async act(
    who: Principal,
    uuid: string,
    requestId: string,
    action: Exclude<Action, "create">,
    body: (conn: PoolConnection, inst: Instance, actionId: number) => Promise<Instance>,
  ): Promise<Instance> {
    const name = action.startsWith("reboot") ? "reboot" : action;
    const inst = await withTx(this.pool, async (conn) => {
      const inst = await this.visible(conn, who, uuid, true);
      const prior = await findAction(conn, uuid, requestId);
      if (prior) {
        if (prior.action !== name) {
          throw new ApiError(status.ALREADY_EXISTS, `request_id ${JSON.stringify(requestId)} was already used for ${prior.action}`, {
            reason: "REQUEST_ID_REUSED",
            fieldViolations: [{ field: "request_id", description: `already used for ${prior.action}` }],
          });
        }
        return inst;
      }
      // A deleted server is gone for every new action, as in Nova.
      if (inst.deletedAt) throw notFound("server", uuid);
      if (!ALLOWED_FROM[action].has(inst.vmState)) {
        const allowed = [...ALLOWED_FROM[action]].join(", ");
        throw failedPrecondition(`cannot ${name} server ${uuid} while it is ${inst.vmState}; allowed from: ${allowed}`, "INVALID_STATE", {
          vm_state: inst.vmState,
        });
      }
      if (inst.taskState && !INTERRUPTIBLE_BY[action].has(inst.taskState)) {
        throw new ApiError(status.ABORTED, `server ${uuid} is busy: task ${inst.taskState} is running`, {
          reason: "TASK_IN_PROGRESS",
          metadata: { task_state: inst.taskState },
        });
      }
      const actionId = await insertAction(conn, { instanceUuid: uuid, requestId, projectId: who.projectId, action: name });
      return body(conn, inst, actionId);
    });
    this.wake.outbox();
    this.wake.watchers();
    return inst;
  }
}
