/** Ops for tests of the executor and the agent. */
import { randomUUID } from "node:crypto";
import { GIB, type VolumeTarget } from "../../controller/domain/volume-ops.js";
import type { InstanceSpec } from "../drivers/types.js";
import type { AgentOp, AgentOpKind, AgentVolumeOp, AgentVolumeOpKind, OpArgsByKind, VolumeOpArgsByKind } from "./agent-op.js";

/** The kind of a test op and those of its arguments that are not left to a plain default. */
export type TestOpBody<K extends AgentOpKind = AgentOpKind> = { readonly kind: K } & Partial<OpArgsByKind[K]>;

const DEFAULT_ARGS: { readonly [K in AgentOpKind]: OpArgsByKind[K] } = {
  spawn: {},
  destroy: {},
  power_on: {},
  power_off: { timeoutSeconds: 0 },
  reboot: { hard: false, softTimeoutSeconds: 0 },
  pause: {},
  unpause: {},
  suspend: {},
  resume: {},
  snapshot: { imageId: "", imageName: "snap" },
  shelve: { imageId: "", imageName: "shelved", timeoutSeconds: 0 },
  rebuild: { recreate: false },
  migrate_disk: { targetHost: "", timeoutSeconds: 0 },
  finish_migration: { sourceHost: "", powerOn: true },
  confirm_migration: {},
  revert_migration: {},
  finish_revert_migration: { powerOn: true },
  pre_live_migration: { sourceHost: "", bootsFromVolume: false },
  live_migrate: { targetHost: "", targetUri: "", volumes: [] },
  post_live_migration: { sourceHost: "" },
  rollback_live_migration: {},
  abort: { targetOpId: "" },
  attach_interface: { portId: "" },
  detach_interface: { portId: "", macAddress: "fa:16:3e:00:00:01" },
  attach_volume: { attachmentId: "att-1", volumeId: "vol-1", export: { host: "192.0.2.1", port: 10809, exportName: "att-1" }, device: "" },
  detach_volume: { attachmentId: "att-1" },
  extend_volume_disk: { attachmentId: "att-1", sizeBytes: 2 * GIB },
  hold_volume_disk: { attachmentId: "att-1" },
};

/**
 * An op acting on `instance`, with a fresh op id unless given. A live
 * migration without a target URI goes to `fake://<targetHost>`.
 */
export function testOp<K extends AgentOpKind>(instance: InstanceSpec, body: TestOpBody<K>, opId: string = randomUUID()): AgentOp<K> {
  const args: Record<string, unknown> = { ...DEFAULT_ARGS[body.kind], ...body };
  if (body.kind === "live_migrate" && !args.targetUri) args.targetUri = `fake://${String(args.targetHost)}`;
  const header = { opId, requestId: `req-${opId.slice(0, 8)}`, attempt: 1, deadline: null, instance };
  return { ...header, ...args } as AgentOp<K>;
}

/** A volume of 1 GiB in pool "p1", with a fresh id unless given. */
export function testVolume(overrides: Partial<VolumeTarget> = {}): VolumeTarget {
  return { id: randomUUID(), projectId: "alice", pool: "p1", sizeBytes: GIB, ...overrides };
}

const DEFAULT_VOLUME_ARGS: { readonly [K in AgentVolumeOpKind]: VolumeOpArgsByKind[K] } = {
  create_volume: { source: { kind: "blank" } },
  delete_volume: {},
  extend_volume: { sizeBytes: 2 * GIB },
  export_volume: { attachmentId: "att-1", client: "compute-1" },
  unexport_volume: { attachmentId: "att-1" },
  grow_volume: { sizeBytes: 2 * GIB },
  reimage_volume: { image: { id: "img-1", name: "cirros", diskFormat: "qcow2", checksum: "" } },
  create_volume_snapshot: { snapshotId: "snap-1" },
  delete_volume_snapshot: { snapshotId: "snap-1" },
};

/**
 * A volume op on `volume` (create: blank; extend, grow: to 2 GiB; export: of
 * attachment att-1 to compute-1; snapshot ops: of snap-1; unless given),
 * for no server unless given, with a fresh op id unless given.
 */
export function testVolumeOp<K extends AgentVolumeOpKind>(
  volume: VolumeTarget,
  body: { readonly kind: K; readonly serverId?: string } & Partial<VolumeOpArgsByKind[K]>,
  opId: string = randomUUID(),
): AgentVolumeOp<K> {
  const header = { opId, requestId: `req-${opId.slice(0, 8)}`, attempt: 1, deadline: null, volume, serverId: "" };
  return { ...header, ...DEFAULT_VOLUME_ARGS[body.kind], ...body } as AgentVolumeOp<K>;
}
