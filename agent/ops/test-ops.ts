/** ComputeOps for tests of the executor and the agent. */
import { randomUUID } from "node:crypto";
import type { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { InstanceSpec } from "../drivers/types.js";

/** The operation part of a ComputeOp; fields left out take a plain default. */
export type TestOpBody =
  | { kind: "spawn" }
  | { kind: "destroy" }
  | { kind: "powerOn" }
  | { kind: "powerOff"; timeoutSeconds?: number }
  | { kind: "reboot"; hard: boolean; softTimeoutSeconds?: number }
  | { kind: "pause" }
  | { kind: "unpause" }
  | { kind: "suspend" }
  | { kind: "resume" }
  | { kind: "snapshot"; imageId: string; imageName?: string }
  | { kind: "shelve"; imageId?: string; imageName?: string; timeoutSeconds?: number }
  | { kind: "rebuild"; recreate?: boolean }
  | { kind: "migrateDisk"; targetHost: string; timeoutSeconds?: number }
  | { kind: "finishMigration"; sourceHost: string; powerOn?: boolean }
  | { kind: "confirmMigration" }
  | { kind: "revertMigration" }
  | { kind: "finishRevertMigration"; powerOn?: boolean }
  | { kind: "preLiveMigration"; sourceHost: string }
  | { kind: "liveMigrate"; targetHost: string; targetUri?: string }
  | { kind: "postLiveMigration"; sourceHost: string }
  | { kind: "rollbackLiveMigration" }
  | { kind: "abort"; targetOpId: string };

function opOf(body: TestOpBody): NonNullable<ComputeOp["op"]> {
  switch (body.kind) {
    case "spawn":
      return { $case: "spawn", spawn: {} };
    case "destroy":
      return { $case: "destroy", destroy: {} };
    case "powerOn":
      return { $case: "powerOn", powerOn: {} };
    case "powerOff":
      return { $case: "powerOff", powerOff: { timeoutSeconds: body.timeoutSeconds ?? 0 } };
    case "reboot":
      return { $case: "reboot", reboot: { hard: body.hard, softTimeoutSeconds: body.softTimeoutSeconds ?? 0 } };
    case "pause":
      return { $case: "pause", pause: {} };
    case "unpause":
      return { $case: "unpause", unpause: {} };
    case "suspend":
      return { $case: "suspend", suspend: {} };
    case "resume":
      return { $case: "resume", resume: {} };
    case "snapshot":
      return { $case: "snapshot", snapshot: { imageId: body.imageId, imageName: body.imageName ?? "snap" } };
    case "shelve":
      return {
        $case: "shelve",
        shelve: { imageId: body.imageId ?? "", imageName: body.imageName ?? "shelved", timeoutSeconds: body.timeoutSeconds ?? 0 },
      };
    case "rebuild":
      return { $case: "rebuild", rebuild: { recreate: body.recreate ?? false } };
    case "migrateDisk":
      return { $case: "migrateDisk", migrateDisk: { targetHost: body.targetHost, timeoutSeconds: body.timeoutSeconds ?? 0 } };
    case "finishMigration":
      return { $case: "finishMigration", finishMigration: { sourceHost: body.sourceHost, powerOn: body.powerOn ?? true } };
    case "confirmMigration":
      return { $case: "confirmMigration", confirmMigration: {} };
    case "revertMigration":
      return { $case: "revertMigration", revertMigration: {} };
    case "finishRevertMigration":
      return { $case: "finishRevertMigration", finishRevertMigration: { powerOn: body.powerOn ?? true } };
    case "preLiveMigration":
      return { $case: "preLiveMigration", preLiveMigration: { sourceHost: body.sourceHost } };
    case "liveMigrate":
      return {
        $case: "liveMigrate",
        liveMigrate: { targetHost: body.targetHost, targetUri: body.targetUri ?? `fake://${body.targetHost}` },
      };
    case "postLiveMigration":
      return { $case: "postLiveMigration", postLiveMigration: { sourceHost: body.sourceHost } };
    case "rollbackLiveMigration":
      return { $case: "rollbackLiveMigration", rollbackLiveMigration: {} };
    case "abort":
      return { $case: "abort", abort: { targetOpId: body.targetOpId } };
  }
}

/** A ComputeOp acting on `instance`, with a fresh op id unless given. */
export function testOp(instance: InstanceSpec, body: TestOpBody, opId: string = randomUUID()): ComputeOp {
  return {
    opId,
    requestId: `req-${opId.slice(0, 8)}`,
    attempt: 1,
    createTime: new Date(),
    deadline: undefined,
    instance: {
      id: instance.id,
      name: instance.name,
      projectId: instance.projectId,
      vcpus: instance.vcpus,
      ramMb: instance.memoryMb,
      diskGb: instance.diskGb,
      image: { ...instance.image },
      extraSpecs: { ...instance.extraSpecs },
      metadata: { ...instance.metadata },
    },
    op: opOf(body),
  };
}
