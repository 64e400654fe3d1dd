import { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { Image, Instance } from "../domain/types.js";

/** Arguments of an op, by kind. */
export type OpArgs =
  | { readonly kind: "spawn" }
  | { readonly kind: "destroy" }
  | { readonly kind: "power_on" }
  | { readonly kind: "power_off"; readonly timeoutSeconds: number }
  | { readonly kind: "reboot"; readonly hard: boolean };

/** Encodes a compute op as the protobuf bytes agents consume. */
export function encodeComputeOp(o: {
  opId: string;
  requestId: string;
  attempt: number;
  instance: Instance;
  image: Image | null;
  args: OpArgs;
}): Uint8Array {
  const inst = o.instance;
  const op: ComputeOp["op"] = (() => {
    const a = o.args;
    switch (a.kind) {
      case "spawn":
        return { $case: "spawn" as const, spawn: {} };
      case "destroy":
        return { $case: "destroy" as const, destroy: {} };
      case "power_on":
        return { $case: "powerOn" as const, powerOn: {} };
      case "power_off":
        return { $case: "powerOff" as const, powerOff: { timeoutSeconds: a.timeoutSeconds } };
      case "reboot":
        return { $case: "reboot" as const, reboot: { hard: a.hard } };
    }
  })();
  return ComputeOp.encode({
    opId: o.opId,
    requestId: o.requestId,
    attempt: o.attempt,
    createTime: new Date(),
    instance: {
      id: inst.uuid,
      name: inst.name,
      projectId: inst.projectId,
      vcpus: inst.flavor.vcpus,
      ramMb: inst.flavor.ramMb,
      diskGb: inst.flavor.diskGb,
      image: {
        id: inst.imageId,
        name: o.image?.name ?? "",
        diskFormat: o.image?.diskFormat ?? "",
        checksum: o.image?.checksum ?? "",
        properties: { ...(o.image?.properties ?? {}) },
      },
      extraSpecs: { ...inst.extraSpecs },
      metadata: { ...inst.metadata },
    },
    op,
  }).finish();
}
