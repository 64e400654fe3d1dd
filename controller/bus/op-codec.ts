import { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { Image, Instance } from "../domain/types.js";

/** Arguments of an op, by kind. */
export type OpArgs =
  | { readonly kind: "spawn" }
  | { readonly kind: "destroy" }
  | { readonly kind: "power_on" }
  | { readonly kind: "power_off"; readonly timeoutSeconds: number }
  | { readonly kind: "reboot"; readonly hard: boolean; readonly softTimeoutSeconds: number }
  | { readonly kind: "pause" }
  | { readonly kind: "unpause" }
  | { readonly kind: "suspend" }
  | { readonly kind: "resume" }
  | { readonly kind: "migrate_disk"; readonly targetHost: string; readonly timeoutSeconds: number }
  | { readonly kind: "finish_migration"; readonly sourceHost: string; readonly powerOn: boolean }
  | { readonly kind: "confirm_migration" }
  | { readonly kind: "revert_migration" }
  | { readonly kind: "finish_revert_migration"; readonly powerOn: boolean }
  | { readonly kind: "abort"; readonly targetOpId: string }
  | { readonly kind: "snapshot"; readonly imageId: string; readonly imageName: string }
  | { readonly kind: "shelve"; readonly imageId: string; readonly imageName: string; readonly timeoutSeconds: number }
  | { readonly kind: "rebuild"; readonly recreate: boolean }
  | { readonly kind: "pre_live_migration"; readonly sourceHost: string }
  | { readonly kind: "live_migrate"; readonly targetHost: string; readonly targetUri: string }
  | { readonly kind: "post_live_migration"; readonly sourceHost: string }
  | { readonly kind: "rollback_live_migration" };

export type OpKind = OpArgs["kind"];

function opOf(a: OpArgs): ComputeOp["op"] {
  switch (a.kind) {
    case "spawn":
      return { $case: "spawn", spawn: {} };
    case "destroy":
      return { $case: "destroy", destroy: {} };
    case "power_on":
      return { $case: "powerOn", powerOn: {} };
    case "power_off":
      return { $case: "powerOff", powerOff: { timeoutSeconds: a.timeoutSeconds } };
    case "reboot":
      return { $case: "reboot", reboot: { hard: a.hard, softTimeoutSeconds: a.softTimeoutSeconds } };
    case "pause":
      return { $case: "pause", pause: {} };
    case "unpause":
      return { $case: "unpause", unpause: {} };
    case "suspend":
      return { $case: "suspend", suspend: {} };
    case "resume":
      return { $case: "resume", resume: {} };
    case "migrate_disk":
      return { $case: "migrateDisk", migrateDisk: { targetHost: a.targetHost, timeoutSeconds: a.timeoutSeconds } };
    case "finish_migration":
      return { $case: "finishMigration", finishMigration: { sourceHost: a.sourceHost, powerOn: a.powerOn } };
    case "confirm_migration":
      return { $case: "confirmMigration", confirmMigration: {} };
    case "revert_migration":
      return { $case: "revertMigration", revertMigration: {} };
    case "finish_revert_migration":
      return { $case: "finishRevertMigration", finishRevertMigration: { powerOn: a.powerOn } };
    case "abort":
      return { $case: "abort", abort: { targetOpId: a.targetOpId } };
    case "snapshot":
      return { $case: "snapshot", snapshot: { imageId: a.imageId, imageName: a.imageName } };
    case "shelve":
      return { $case: "shelve", shelve: { imageId: a.imageId, imageName: a.imageName, timeoutSeconds: a.timeoutSeconds } };
    case "rebuild":
      return { $case: "rebuild", rebuild: { recreate: a.recreate } };
    case "pre_live_migration":
      return { $case: "preLiveMigration", preLiveMigration: { sourceHost: a.sourceHost } };
    case "live_migrate":
      return { $case: "liveMigrate", liveMigrate: { targetHost: a.targetHost, targetUri: a.targetUri } };
    case "post_live_migration":
      return { $case: "postLiveMigration", postLiveMigration: { sourceHost: a.sourceHost } };
    case "rollback_live_migration":
      return { $case: "rollbackLiveMigration", rollbackLiveMigration: {} };
  }
}

/** Encodes a compute op as the protobuf bytes agents consume. */
export function encodeComputeOp(o: {
  opId: string;
  requestId: string;
  attempt: number;
  instance: Instance;
  image: Image | null;
  args: OpArgs;
  deadline: Date | null;
}): Uint8Array {
  const inst = o.instance;
  return ComputeOp.encode({
    opId: o.opId,
    requestId: o.requestId,
    attempt: o.attempt,
    createTime: new Date(),
    deadline: o.deadline ?? undefined,
    instance: {
      id: inst.uuid,
      name: inst.name,
      projectId: inst.projectId,
      vcpus: inst.flavor.vcpus,
      ramMb: inst.flavor.ramMb,
      diskGb: inst.flavor.diskGb,
      image: {
        id: o.image?.id ?? inst.imageId,
        name: o.image?.name ?? "",
        diskFormat: o.image?.diskFormat ?? "",
        checksum: o.image?.checksum ?? "",
        properties: { ...(o.image?.properties ?? {}) },
      },
      extraSpecs: { ...inst.extraSpecs },
      metadata: { ...inst.metadata },
    },
    op: opOf(o.args),
  }).finish();
}
