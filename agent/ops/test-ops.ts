/** ComputeOps for tests of the executor and the agent. */
import { randomUUID } from "node:crypto";
import type { ComputeOp } from "../../gen/novamesh/agent/v1/ops.js";
import type { InstanceSpec } from "../drivers/types.js";

/** The operation part of a ComputeOp. */
export type TestOpBody =
  | { kind: "spawn" }
  | { kind: "destroy" }
  | { kind: "powerOn" }
  | { kind: "powerOff"; timeoutSeconds?: number }
  | { kind: "reboot"; hard: boolean };

/** A ComputeOp acting on `instance`, with a fresh op id unless given. */
export function testOp(instance: InstanceSpec, body: TestOpBody, opId: string = randomUUID()): ComputeOp {
  const op: ComputeOp["op"] =
    body.kind === "spawn"
      ? { $case: "spawn", spawn: {} }
      : body.kind === "destroy"
        ? { $case: "destroy", destroy: {} }
        : body.kind === "powerOn"
          ? { $case: "powerOn", powerOn: {} }
          : body.kind === "powerOff"
            ? { $case: "powerOff", powerOff: { timeoutSeconds: body.timeoutSeconds ?? 0 } }
            : { $case: "reboot", reboot: { hard: body.hard } };
  return {
    opId,
    requestId: `req-${opId.slice(0, 8)}`,
    attempt: 1,
    createTime: new Date(),
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
    op,
  };
}
