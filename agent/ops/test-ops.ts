/** Ops for tests of the executor and the agent. */
import { randomUUID } from "node:crypto";
import type { InstanceSpec } from "../drivers/types.js";
import type { AgentOp, AgentOpKind, OpArgsByKind } from "./agent-op.js";

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
  pre_live_migration: { sourceHost: "" },
  live_migrate: { targetHost: "", targetUri: "" },
  post_live_migration: { sourceHost: "" },
  rollback_live_migration: {},
  abort: { targetOpId: "" },
  attach_interface: { portId: "" },
  detach_interface: { portId: "", macAddress: "fa:16:3e:00:00:01" },
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
