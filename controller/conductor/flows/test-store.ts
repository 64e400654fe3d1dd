/**
 * A double of the store as flows see it (`TxStore`), for checking a flow's
 * transitions without MySQL: every call is recorded; reads answer from what
 * the test put in; the instance follows its updates.
 */
import pino from "pino";
import type { OpFailure, OpKind, OpOutcome } from "../../domain/ops.js";
import { DEFAULT_TASK_TIMEOUTS } from "../../domain/states.js";
import { DEFAULT_VOLUME_TIMEOUTS, type Volume, type VolumeAttachment } from "../../domain/volume.js";
import type { Instance, Migration } from "../../domain/types.js";
import type { PoolConnection } from "../../store/db.js";
import type { InstancePatch } from "../../store/instances.js";
import type { ConductorContext } from "../context.js";
import { Tx } from "../context.js";
import { ResultContext, TimeoutContext } from "../flow.js";
import type { TxStore } from "../tx-store.js";

export type StoreCall = { readonly step: keyof TxStore; readonly args: readonly unknown[] };

/** What the double's reads answer. */
export interface World {
  instance: Instance;
  migration?: Migration | null;
  /** Hosts that exist, by name, with their node id and migration URI. */
  nodes?: Record<string, { id: string; migrationUri?: string }>;
  /** Hosts whose claim succeeds. */
  claimable?: readonly string[];
  cancelRequested?: boolean;
  actionImageId?: string | null;
  serverGroupPolicy?: string;
  /** The server's volume attachments, and the volumes they are of. */
  attachments?: VolumeAttachment[];
  volumes?: Volume[];
}

export const CTX: ConductorContext = {
  pool: null as never,
  log: pino({ level: "silent" }),
  subjectPrefix: "t.ops",
  taskTimeouts: DEFAULT_TASK_TIMEOUTS,
  serviceDownTimeSeconds: 60,
  maxAttempts: 3,
  powerOffTimeoutSeconds: 7,
  softRebootTimeoutSeconds: 11,
  allowResizeToSameHost: false,
  volumeTimeouts: DEFAULT_VOLUME_TIMEOUTS,
  volumeOversubscriptionRatio: 1,
};

export function instance(over: Partial<Instance> = {}): Instance {
  const now = new Date();
  return {
    seq: 1,
    uuid: "srv-1",
    name: "web",
    projectId: "alice",
    requestId: "req-create",
    flavor: { id: "m1.small", name: "m1.small", vcpus: 1, ramMb: 2048, diskGb: 20 },
    extraSpecs: {},
    imageId: "img-base",
    availabilityZone: "",
    serverGroupId: null,
    schedulerHints: { sameHost: [], differentHost: [] },
    alternateHosts: [],
    host: "h1",
    vmState: "ACTIVE",
    taskState: null,
    taskDeadline: null,
    powerState: "RUNNING",
    fault: null,
    metadata: {},
    attempt: 1,
    triedHosts: ["h1"],
    lockedBy: null,
    lockedReason: "",
    shelvedImageId: null,
    bootsFromVolume: false,
    keyName: null,
    keyData: null,
    hostname: "web",
    configDrive: false,
    description: "",
    tags: [],
    createdAt: now,
    updatedAt: now,
    launchedAt: now,
    deletedAt: null,
    ...over,
  };
}

export function migration(over: Partial<Migration> = {}): Migration {
  const now = new Date();
  const flavor = { id: "m1.small", name: "m1.small", vcpus: 1, ramMb: 2048, diskGb: 20 };
  return {
    id: "mig-1",
    instanceUuid: "srv-1",
    projectId: "alice",
    actionId: 7,
    requestId: "req-move",
    type: "RESIZE",
    status: "MIGRATING",
    sourceHost: "h1",
    targetHost: "h2",
    requestedHost: null,
    oldFlavor: flavor,
    newFlavor: { ...flavor, id: "m1.medium", name: "m1.medium", vcpus: 2, ramMb: 4096, diskGb: 40 },
    oldVmState: "ACTIVE",
    triedHosts: ["h1", "h2"],
    createdAt: now,
    updatedAt: now,
    ...over,
  };
}

/** The double: a TxStore over `world`, and the calls made of it. */
export function storeDouble(world: World) {
  const calls: StoreCall[] = [];
  const answers: Partial<{ [K in keyof TxStore]: (...args: never[]) => unknown }> = {
    getInstance: () => world.instance,
    updateInstance: (_uuid: string, patch: InstancePatch) => {
      const next: Record<string, unknown> = { ...world.instance };
      for (const [k, v] of Object.entries(patch)) if (v !== undefined) next[k] = v;
      if (patch.flavor) {
        const { id, name, vcpus, ramMb, diskGb } = patch.flavor;
        next.flavor = { id, name, vcpus, ramMb, diskGb };
      }
      if (patch.taskState === null) next.taskDeadline = null;
      world.instance = next as unknown as Instance;
      return world.instance;
    },
    openMigration: () => world.migration ?? null,
    latestMigration: () => world.migration ?? null,
    getNodeByHost: (host: string) => {
      const n = world.nodes?.[host];
      return n ? { id: n.id, host, migrationUri: n.migrationUri ?? "" } : null;
    },
    claim: (nodeId: string) => Object.entries(world.nodes ?? {}).some(([h, n]) => n.id === nodeId && (world.claimable ?? []).includes(h)),
    bindServerPorts: () => ({ failure: null, portless: true }),
    releaseAllocations: () => 1,
    moveAllocations: () => 1,
    migrationIdsOf: () => (world.migration ? [world.migration.id] : []),
    cancelRequested: () => world.cancelRequested ?? false,
    getActionById: () => ({ imageId: world.actionImageId ?? null }),
    runningAction: () => ({ id: 7, requestId: "req-create" }),
    getServerGroup: () => (world.serverGroupPolicy ? { policy: world.serverGroupPolicy } : null),
    getImage: () => null,
    dispatchOp: () => `op-${calls.length}`,
    pendingOps: () => [],
    attachmentsOf: () => world.attachments ?? [],
    getVolume: (id: string) => world.volumes?.find((v) => v.id === id) ?? null,
    updateAttachment: (id: string, patch: Partial<VolumeAttachment>) => {
      world.attachments = (world.attachments ?? []).map((a) => (a.id === id ? { ...a, ...patch } : a));
    },
  };
  const store = new Proxy({} as TxStore, {
    get: (_t, step: string) =>
      async (...args: unknown[]) => {
        calls.push({ step: step as keyof TxStore, args });
        const answer = answers[step as keyof TxStore] as ((...a: unknown[]) => unknown) | undefined;
        return answer ? answer(...args) : undefined;
      },
  });
  return { store, calls, world };
}

/** The calls of one step, by their arguments. */
export function callsOf(calls: readonly StoreCall[], step: keyof TxStore): unknown[][] {
  return calls.filter((c) => c.step === step).map((c) => [...c.args]);
}

/** The ops dispatched, as [host, kind, the request]. */
export function dispatched(calls: readonly StoreCall[]): { host: string; kind: OpKind; attempt?: number; imageId?: string }[] {
  return callsOf(calls, "dispatchOp").map(([o]) => {
    const r = o as { host: string; args: { kind: OpKind }; attempt?: number; imageId?: string };
    return { host: r.host, kind: r.args.kind, ...(r.attempt !== undefined ? { attempt: r.attempt } : {}), ...(r.imageId !== undefined ? { imageId: r.imageId } : {}) };
  });
}

/** A ResultContext for an op of `kind` from `host`, over a store double of `world`. */
export function resultOf(world: World, kind: OpKind, host: string, o: { error?: OpFailure; powerState?: OpOutcome["powerState"]; snapshot?: OpOutcome["snapshot"] } = {}) {
  const d = storeDouble(world);
  const tx = new Tx(null as unknown as PoolConnection, CTX, d.store);
  const op = { opId: "op-r", instanceUuid: world.instance.uuid, actionId: 7, host, kind, attempt: 1, state: "PENDING" as const, requestId: "req-r", createdAt: new Date(), traceParent: null };
  const outcome: OpOutcome = { opId: "op-r", error: o.error ?? null, powerState: o.powerState ?? null, startTime: null, finishTime: null, snapshot: o.snapshot ?? null };
  return { r: new ResultContext(tx, op, world.instance, outcome), ...d };
}

/** A TimeoutContext for the instance's task, over a store double of `world`. */
export function timeoutOf(world: World) {
  const d = storeDouble(world);
  const tx = new Tx(null as unknown as PoolConnection, CTX, d.store);
  const fault = { code: "TASK_TIMED_OUT", message: "timed out", details: {}, createdAt: new Date().toISOString() };
  const t = new TimeoutContext(tx, world.instance, world.instance.taskState!, 7, fault, { code: 4, reason: "TASK_TIMED_OUT", message: "timed out" });
  return { t, ...d };
}
