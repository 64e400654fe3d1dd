/** ComputeOps for tests that put ops on the wire, as the controller would. */
import type { ComputeOp } from "../gen/novamesh/agent/v1/ops.js";
import type { AgentOp } from "./ops/agent-op.js";
import { portSpecToProto } from "./proto-convert.js";

/**
 * `op` as a ComputeOp: the proto case is the kind in camelCase and carries
 * the kind's arguments under the same names (the convention both sides of
 * the wire keep).
 */
export function computeOpOf(op: AgentOp): ComputeOp {
  const { opId, requestId, attempt, deadline, instance, kind, ...args } = op;
  const $case = kind.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return {
    opId,
    requestId,
    attempt,
    createTime: new Date(),
    deadline: deadline ?? undefined,
    volume: undefined,
    instance: {
      id: instance.id,
      name: instance.name,
      projectId: instance.projectId,
      vcpus: instance.vcpus,
      ramMb: instance.memoryMb,
      diskGb: instance.diskGb,
      image: { ...instance.image, properties: { ...instance.image.properties } },
      extraSpecs: { ...instance.extraSpecs },
      metadata: { ...instance.metadata },
      ports: (instance.ports ?? []).map(portSpecToProto),
    },
    op: { $case, [$case]: args } as unknown as ComputeOp["op"],
  };
}
