import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { ServerAction } from "../domain/states.js";
import { ALLOWED_FROM, ALLOWED_WHEN_LOCKED, INTERRUPTIBLE_BY, SCHEDULED_ACTIONS, TASK_OF, actionName } from "../domain/states.js";
import type { TaskTimeouts } from "../domain/tasks.js";
import { startTask } from "../domain/tasks.js";
import type { Flavor, Image, Instance, InstanceAction, MigrationFlavor, MigrationType, Principal, SchedulerHints } from "../domain/types.js";
import { ApiError, failedPrecondition, invalidArgument, notFound, permissionDenied } from "../errors.js";
import { findAction, finishAction, finishOpEvent, getActionById, insertAction, instantEvent, setActionImage, setActionStep } from "../store/actions.js";
import { insertImage } from "../store/catalog.js";
import { finishOp, pendingOps } from "../store/ops.js";
import type { Pool, PoolConnection } from "../store/db.js";
import { isDuplicateKey, withTx } from "../store/db.js";
import { getInstance, getInstanceByRequest, insertInstance, updateInstance } from "../store/instances.js";
import { insertMigration, openMigration, updateMigration } from "../store/moves.js";
import { getNodeByHost, releaseAllocations } from "../store/nodes.js";
import { deleteImage, getImage } from "../store/catalog.js";
import type { OpArgs } from "../bus/op-codec.js";
import { dispatchOp } from "./dispatch.js";
import { releaseEverything } from "./moves.js";
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
  /** Seconds a guest gets to shut down cleanly on stop (and before a move). */
  readonly powerOffTimeoutSeconds: number;
  /** Seconds a guest gets to finish a soft reboot before the host reboots it hard. */
  readonly softRebootTimeoutSeconds: number;
  /** How long each task may run. */
  readonly taskTimeouts: TaskTimeouts;
}

/** What a mutating call returns: the server after the call, and its operation. */
export interface Accepted {
  readonly instance: Instance;
  readonly operation: InstanceAction;
  /** The image the action created, if any (CreateServerImage). */
  readonly imageId?: string;
}

/** What an action's body did. */
interface Step {
  readonly instance: Instance;
  readonly kicksScheduler?: boolean;
  /** An image the action created (snapshot). */
  readonly imageId?: string;
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
    req: {
      name: string;
      flavor: Flavor;
      image: Image;
      metadata: Record<string, string>;
      requestId: string;
      availabilityZone?: string;
      serverGroupId?: string | null;
      schedulerHints?: SchedulerHints;
    },
  ): Promise<Accepted> {
    const existing = await getInstanceByRequest(this.pool, who.projectId, req.requestId);
    if (existing) return this.accepted(existing);
    const uuid = randomUUID();
    try {
      const inst = await withTx(this.pool, async (conn) => {
        const { taskDeadline } = startTask(this.opts.taskTimeouts, "SCHEDULING");
        await insertInstance(
          conn,
          {
            uuid,
            name: req.name,
            projectId: who.projectId,
            requestId: req.requestId,
            flavor: { id: req.flavor.id, name: req.flavor.name, vcpus: req.flavor.vcpus, ramMb: req.flavor.ramMb, diskGb: req.flavor.diskGb },
            extraSpecs: req.flavor.extraSpecs,
            imageId: req.image.id,
            metadata: req.metadata,
            availabilityZone: req.availabilityZone ?? "",
            serverGroupId: req.serverGroupId ?? null,
            schedulerHints: req.schedulerHints ?? { sameHost: [], differentHost: [] },
          },
          taskDeadline,
        );
        await insertAction(conn, { instanceUuid: uuid, requestId: req.requestId, projectId: who.projectId, action: "create", state: "PENDING", deadline: taskDeadline });
        return updateInstance(conn, uuid, {});
      });
      this.wake.scheduler();
      this.wake.watchers();
      return this.accepted(inst);
    } catch (err) {
      // Two identical requests raced: the loser returns the winner's server.
      if (isDuplicateKey(err)) {
        const winner = await getInstanceByRequest(this.pool, who.projectId, req.requestId);
        if (winner) return this.accepted(winner);
      }
      throw err;
    }
  }

  private async accepted(inst: Instance, requestId = inst.requestId): Promise<Accepted> {
    const action = await findAction(this.pool, inst.uuid, requestId);
    const operation = action ? await getActionById(this.pool, action.id) : null;
    if (!operation) throw new Error(`server ${inst.uuid} has no action for request ${requestId}`);
    return { instance: inst, operation };
  }

  async delete(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "delete", async (conn, inst, actionId) => {
      const node = inst.host ? await getNodeByHost(conn, inst.host) : null;
      const hostUp = node ? isUp(node, this.opts.serviceDownTimeSeconds) : false;
      const migration = await openMigration(conn, inst.uuid, { lock: true });
      const deleting = await updateInstance(conn, inst.uuid, startTask(this.opts.taskTimeouts, "DELETING"));
      // Every host that may hold a copy destroys it (when it comes back, if down).
      const hosts = new Set([inst.host, migration?.sourceHost, migration?.targetHost].filter((h): h is string => !!h));
      for (const host of hosts) {
        await dispatchOp(conn, { instance: deleting, host, actionId, requestId, args: { kind: "destroy" }, subjectPrefix: this.opts.subjectPrefix });
      }
      if (migration) await updateMigration(conn, migration.id, { status: "CANCELLED" });
      // A shelved server's snapshot goes with it, as in Nova.
      if (inst.shelvedImageId) await deleteImage(conn, inst.shelvedImageId);
      if (inst.host && hostUp) return { instance: deleting };
      // Never placed, or its host is down: delete locally, as Nova does.
      await releaseEverything(conn, inst.uuid);
      await instantEvent(conn, { actionId, event: "local_delete", host: inst.host ?? "", result: "Success" });
      await finishAction(conn, actionId);
      const gone = await updateInstance(conn, inst.uuid, { vmState: "DELETED", taskState: null, powerState: "NOSTATE", deletedAt: new Date() });
      return { instance: gone };
    });
  }

  start(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "start", { kind: "power_on" });
  }

  stop(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "stop", { kind: "power_off", timeoutSeconds: this.opts.powerOffTimeoutSeconds });
  }

  reboot(who: Principal, uuid: string, requestId: string, hard: boolean): Promise<Accepted> {
    return this.simple(who, uuid, requestId, hard ? "reboot_hard" : "reboot_soft", {
      kind: "reboot",
      hard,
      softTimeoutSeconds: this.opts.softRebootTimeoutSeconds,
    });
  }

  pause(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "pause", { kind: "pause" });
  }

  unpause(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "unpause", { kind: "unpause" });
  }

  suspend(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "suspend", { kind: "suspend" });
  }

  resume(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.simple(who, uuid, requestId, "resume", { kind: "resume" });
  }

  /** Locks a server against non-admin actions (Nova's lock; allowed in any state). */
  lock(who: Principal, uuid: string, requestId: string, reason: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "lock", async (conn, inst, actionId) => {
      if (inst.lockedBy === "admin" && who.role !== "admin") throw permissionDenied(`server ${uuid} was locked by an admin`);
      const locked = await updateInstance(conn, uuid, { lockedBy: who.role === "admin" ? "admin" : "owner", lockedReason: reason });
      await finishAction(conn, actionId);
      return { instance: locked };
    });
  }

  unlock(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "unlock", async (conn, inst, actionId) => {
      if (inst.lockedBy === "admin" && who.role !== "admin") throw permissionDenied(`server ${uuid} was locked by an admin; only an admin can unlock it`);
      const unlocked = await updateInstance(conn, uuid, { lockedBy: null, lockedReason: "" });
      await finishAction(conn, actionId);
      return { instance: unlocked };
    });
  }

  /** Resize to `flavor`: the scheduler claims a target, then the hosts move the server. */
  resize(who: Principal, uuid: string, requestId: string, flavor: Flavor): Promise<Accepted> {
    return this.act(who, uuid, requestId, "resize", async (conn, inst, actionId) => {
      if (flavor.id === inst.flavor.id) throw invalidArgument("flavor_id", `is the server's current flavor (${inst.flavor.name})`);
      return this.beginMove(conn, inst, actionId, requestId, "RESIZE", {
        id: flavor.id,
        name: flavor.name,
        vcpus: flavor.vcpus,
        ramMb: flavor.ramMb,
        diskGb: flavor.diskGb,
        extraSpecs: flavor.extraSpecs,
      });
    });
  }

  /** Cold migration; an admin may name the target host. */
  migrate(who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
    return this.act(who, uuid, requestId, "migrate", async (conn, inst, actionId) => {
      await this.checkTargetHost(conn, who, inst, host, { adminOnly: true });
      return this.beginMove(conn, inst, actionId, requestId, "MIGRATION", inst.flavor, host);
    });
  }

  /** Live migration; an admin may name the target host. */
  liveMigrate(who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
    return this.act(who, uuid, requestId, "live_migrate", async (conn, inst, actionId) => {
      await this.checkTargetHost(conn, who, inst, host, { adminOnly: true });
      return this.beginMove(conn, inst, actionId, requestId, "LIVE_MIGRATION", inst.flavor, host);
    });
  }

  /** Evacuation (admins): rebuild a server whose host is down on another host. */
  evacuate(who: Principal, uuid: string, requestId: string, host: string | null): Promise<Accepted> {
    return this.act(who, uuid, requestId, "evacuate", async (conn, inst, actionId) => {
      if (who.role !== "admin") throw permissionDenied("evacuate needs the admin role");
      const source = inst.host ? await getNodeByHost(conn, inst.host) : null;
      if (!inst.host || !source) throw failedPrecondition(`server ${uuid} has no host to evacuate from`, "NO_HOST");
      if (isUp(source, this.opts.serviceDownTimeSeconds)) {
        throw failedPrecondition(`host ${inst.host} of server ${uuid} is up; evacuate only from a host that is down`, "HOST_UP", { host: inst.host });
      }
      await this.checkTargetHost(conn, who, inst, host, { adminOnly: false });
      // Tasks the dead host left hanging are over: their ops are done.
      for (const op of await pendingOps(conn, uuid)) {
        await finishOp(conn, op.opId, { code: "SUPERSEDED", message: "the server is being evacuated", retryable: false });
        await finishOpEvent(conn, op.opId, { result: "Error", fault: "SUPERSEDED: the server is being evacuated" });
        if (op.actionId !== actionId) await finishAction(conn, op.actionId, { error: { code: status.ABORTED, reason: "SUPERSEDED", message: "the server was evacuated" } });
      }
      // A resize awaiting confirm: the dead host held the new copy. The move
      // is given up; the old copy on its source is destroyed and its
      // capacity released.
      const resize = await openMigration(conn, uuid, { lock: true });
      if (resize) {
        await releaseAllocations(conn, resize.id);
        await updateMigration(conn, resize.id, { status: "CANCELLED" });
        await dispatchOp(conn, { instance: inst, host: resize.sourceHost, actionId, requestId, args: { kind: "confirm_migration" }, subjectPrefix: this.opts.subjectPrefix });
      }
      return this.beginMove(conn, inst, actionId, requestId, "EVACUATION", inst.flavor, host);
    });
  }

  /** Rebuild on the server's host from `image` (null: its current image), optionally renaming it. */
  rebuild(who: Principal, uuid: string, requestId: string, image: Image | null, name: string | null): Promise<Accepted> {
    return this.act(who, uuid, requestId, "rebuild", async (conn, inst, actionId) => {
      if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
      if (image && inst.flavor.diskGb < image.minDiskGb) {
        throw invalidArgument("image_id", `the server's disk ${inst.flavor.diskGb} GiB is below the image's min_disk ${image.minDiskGb} GiB`);
      }
      if (image && inst.flavor.ramMb < image.minRamMb) {
        throw invalidArgument("image_id", `the server's RAM ${inst.flavor.ramMb} MiB is below the image's min_ram ${image.minRamMb} MiB`);
      }
      const busy = await updateInstance(conn, uuid, {
        ...startTask(this.opts.taskTimeouts, "REBUILDING"),
        ...(image ? { imageId: image.id } : {}),
        ...(name ? { name } : {}),
      });
      await dispatchOp(conn, { instance: busy, host: inst.host, actionId, requestId, args: { kind: "rebuild", recreate: false }, subjectPrefix: this.opts.subjectPrefix });
      return { instance: busy };
    });
  }

  /** Snapshot into a new private image (queued until the host stored it). */
  createImage(who: Principal, uuid: string, requestId: string, name: string, metadata: Record<string, string>): Promise<Accepted> {
    return this.act(who, uuid, requestId, "create_image", async (conn, inst, actionId) => {
      if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
      const imageId = await this.queueImage(conn, inst, name, { ...metadata, image_type: "snapshot" });
      await setActionImage(conn, actionId, imageId);
      const busy = await updateInstance(conn, uuid, startTask(this.opts.taskTimeouts, "IMAGE_SNAPSHOT"));
      await dispatchOp(conn, { instance: busy, host: inst.host, actionId, requestId, args: { kind: "snapshot", imageId, imageName: name }, subjectPrefix: this.opts.subjectPrefix });
      return { instance: busy, imageId };
    });
  }

  /** Shelve: snapshot, remove from the host, release the capacity (offloaded at once). */
  shelve(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "shelve", async (conn, inst, actionId) => {
      if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
      const imageName = `${inst.name}-shelved`.slice(0, 255);
      const imageId = await this.queueImage(conn, inst, imageName, { image_type: "shelved" });
      const busy = await updateInstance(conn, uuid, { ...startTask(this.opts.taskTimeouts, "SHELVING"), shelvedImageId: imageId });
      await dispatchOp(conn, {
        instance: busy,
        host: inst.host,
        actionId,
        requestId,
        args: { kind: "shelve", imageId, imageName, timeoutSeconds: this.opts.powerOffTimeoutSeconds },
        subjectPrefix: this.opts.subjectPrefix,
      });
      return { instance: busy };
    });
  }

  /** Unshelve: the scheduler chooses a host, which spawns the server from its shelved image. */
  unshelve(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "unshelve", async (conn, inst) => {
      const waiting = await updateInstance(conn, uuid, { ...startTask(this.opts.taskTimeouts, "UNSHELVING"), attempt: 0, triedHosts: [] });
      return { instance: waiting, kicksScheduler: true };
    });
  }

  /**
   * Cancels a running operation where the action allows it: a live
   * migration is aborted on its source while it copies.
   */
  async cancel(who: Principal, uuid: string, requestId: string): Promise<InstanceAction> {
    const actionId = await withTx(this.pool, async (conn) => {
      await this.visible(conn, who, uuid, true);
      const action = await findAction(conn, uuid, requestId);
      if (!action) throw notFound("operation", requestId);
      const op = await getActionById(conn, action.id);
      if (!op || op.finishTime) throw failedPrecondition(`the operation is already ${op?.state ?? "done"}`, "OPERATION_DONE", { state: op?.state ?? "" });
      if (!op.cancellable) throw failedPrecondition(`a ${op.action} operation cannot be cancelled now`, "NOT_CANCELLABLE", { action: op.action });
      const running = (await pendingOps(conn, uuid)).find((o) => o.actionId === action.id && o.kind === "live_migrate");
      if (!running) throw failedPrecondition(`the ${op.action} operation has nothing running to cancel`, "NOT_CANCELLABLE", { action: op.action });
      const inst = (await getInstance(conn, uuid))!;
      await dispatchOp(conn, { instance: inst, host: running.host, actionId: action.id, requestId, args: { kind: "abort", targetOpId: running.opId }, subjectPrefix: this.opts.subjectPrefix });
      await instantEvent(conn, { actionId: action.id, event: "cancel_requested", result: "Success" });
      await setActionStep(conn, action.id, { cancellable: false, message: "cancelling" });
      return action.id;
    });
    this.wake.outbox();
    this.wake.watchers();
    const operation = await getActionById(this.pool, actionId);
    if (!operation) throw new Error(`action ${actionId} vanished`);
    return operation;
  }

  private async queueImage(conn: PoolConnection, inst: Instance, name: string, properties: Record<string, string>): Promise<string> {
    const id = randomUUID();
    const base = await getImage(conn, inst.imageId, undefined);
    await insertImage(conn, {
      id,
      name,
      projectId: inst.projectId,
      status: "queued",
      visibility: "private",
      diskFormat: base?.diskFormat || "qcow2",
      containerFormat: "bare",
      sizeBytes: 0,
      checksum: "",
      minDiskGb: inst.flavor.diskGb,
      minRamMb: base?.minRamMb ?? 0,
      properties: { ...properties, instance_uuid: inst.uuid, base_image_ref: inst.imageId },
    });
    return id;
  }

  /** Checks an optional target host: admins only where asked, known, not the current one. */
  private async checkTargetHost(conn: PoolConnection, who: Principal, inst: Instance, host: string | null, o: { adminOnly: boolean }): Promise<void> {
    if (host === null) return;
    if (o.adminOnly && who.role !== "admin") throw permissionDenied("choosing the target host needs the admin role");
    if (!(await getNodeByHost(conn, host))) throw notFound("host", host);
    if (host === inst.host) throw invalidArgument("host", "is the server's current host");
  }

  private async beginMove(
    conn: PoolConnection,
    inst: Instance,
    actionId: number,
    requestId: string,
    type: MigrationType,
    newFlavor: MigrationFlavor,
    requestedHost: string | null = null,
  ): Promise<Step> {
    if (!inst.host) throw failedPrecondition(`server ${inst.uuid} has no host`, "NO_HOST");
    await insertMigration(conn, {
      id: randomUUID(),
      instanceUuid: inst.uuid,
      projectId: inst.projectId,
      actionId,
      requestId,
      type,
      status: "PRE_MIGRATING",
      sourceHost: inst.host,
      requestedHost,
      oldFlavor: { ...inst.flavor, extraSpecs: inst.extraSpecs },
      newFlavor,
      oldVmState: inst.vmState,
    });
    const task = type === "LIVE_MIGRATION" ? "MIGRATING" : type === "EVACUATION" ? "REBUILDING" : "RESIZE_PREP";
    const prepping = await updateInstance(conn, inst.uuid, startTask(this.opts.taskTimeouts, task));
    return { instance: prepping, kicksScheduler: true };
  }

  confirmResize(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "confirm_resize", async (conn, inst, actionId) => {
      const m = await openMigration(conn, uuid, { lock: true });
      if (!m || m.status !== "FINISHED") throw failedPrecondition(`server ${uuid} has no finished migration to confirm`, "NO_MIGRATION");
      const confirming = await updateInstance(conn, uuid, startTask(this.opts.taskTimeouts, "RESIZE_CONFIRMING"));
      await dispatchOp(conn, { instance: confirming, host: m.sourceHost, actionId, requestId, args: { kind: "confirm_migration" }, subjectPrefix: this.opts.subjectPrefix });
      return { instance: confirming };
    });
  }

  revertResize(who: Principal, uuid: string, requestId: string): Promise<Accepted> {
    return this.act(who, uuid, requestId, "revert_resize", async (conn, inst, actionId) => {
      const m = await openMigration(conn, uuid, { lock: true });
      if (!m || m.status !== "FINISHED" || !m.targetHost) throw failedPrecondition(`server ${uuid} has no finished migration to revert`, "NO_MIGRATION");
      const reverting = await updateInstance(conn, uuid, startTask(this.opts.taskTimeouts, "RESIZE_REVERTING"));
      await dispatchOp(conn, { instance: reverting, host: m.targetHost, actionId, requestId, args: { kind: "revert_migration" }, subjectPrefix: this.opts.subjectPrefix });
      return { instance: reverting };
    });
  }

  /** An action that sets its task state and sends one op to the server's host. */
  private simple(who: Principal, uuid: string, requestId: string, action: ServerAction, args: OpArgs): Promise<Accepted> {
    return this.act(who, uuid, requestId, action, async (conn, inst, actionId) => {
      if (!inst.host) throw failedPrecondition(`server ${uuid} has no host`, "NO_HOST");
      const task = TASK_OF[action];
      const busy = await updateInstance(conn, inst.uuid, task ? startTask(this.opts.taskTimeouts, task) : {});
      await dispatchOp(conn, { instance: busy, host: inst.host, actionId, requestId, args, subjectPrefix: this.opts.subjectPrefix });
      return { instance: busy };
    });
  }

  /**
   * The frame of every action: lock the server, replay a repeated request id,
   * check the lock and the allowed-state table, record the action, run
   * `body`, commit.
   */
  private async act(
    who: Principal,
    uuid: string,
    requestId: string,
    action: ServerAction,
    body: (conn: PoolConnection, inst: Instance, actionId: number) => Promise<Step>,
  ): Promise<Accepted> {
    const name = actionName(action);
    let kick = false;
    let imageId: string | undefined;
    const { inst, actionId } = await withTx(this.pool, async (conn) => {
      const inst = await this.visible(conn, who, uuid, true);
      const prior = await findAction(conn, uuid, requestId);
      if (prior) {
        if (prior.action !== name) {
          throw new ApiError(status.ALREADY_EXISTS, `request_id ${JSON.stringify(requestId)} was already used for ${prior.action}`, {
            reason: "REQUEST_ID_REUSED",
            fieldViolations: [{ field: "request_id", description: `already used for ${prior.action}` }],
          });
        }
        return { inst, actionId: prior.id };
      }
      // A deleted server is gone for every new action, as in Nova.
      if (inst.deletedAt) throw notFound("server", uuid);
      if (inst.lockedBy && who.role !== "admin" && !ALLOWED_WHEN_LOCKED.has(action)) {
        throw failedPrecondition(`server ${uuid} is locked${inst.lockedReason ? ` (${inst.lockedReason})` : ""}; unlock it first`, "LOCKED", {
          locked_reason: inst.lockedReason,
        });
      }
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
      const task = TASK_OF[action];
      const pending = SCHEDULED_ACTIONS.has(action);
      const deadline = task ? startTask(this.opts.taskTimeouts, task).taskDeadline : null;
      const actionId = await insertAction(conn, { instanceUuid: uuid, requestId, projectId: who.projectId, action: name, state: pending ? "PENDING" : "RUNNING", deadline });
      const step = await body(conn, inst, actionId);
      kick = step.kicksScheduler === true;
      imageId = step.imageId;
      return { inst: step.instance, actionId };
    });
    if (kick) this.wake.scheduler();
    this.wake.outbox();
    this.wake.watchers();
    const operation = await getActionById(this.pool, actionId);
    if (!operation) throw new Error(`action ${actionId} vanished`);
    imageId ??= operation.imageId ?? undefined;
    return { instance: inst, operation, ...(imageId ? { imageId } : {}) };
  }
}
