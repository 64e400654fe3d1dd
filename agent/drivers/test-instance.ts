/** Instance specs for tests of drivers and of the agent. */
import { randomUUID } from "node:crypto";
import type { InstanceSpec } from "./types.js";

/** A small instance (1 vCPU, 512 MiB, 1 GiB) with a fresh id; fields can be overridden. */
export function testInstance(overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  const id = overrides.id ?? randomUUID();
  return {
    id,
    name: `test-${id.slice(0, 8)}`,
    projectId: "test-project",
    vcpus: 1,
    memoryMb: 512,
    diskGb: 1,
    image: { id: "00000000-0000-4000-8000-000000000001", name: "cirros", diskFormat: "qcow2", checksum: "", properties: {} },
    extraSpecs: {},
    metadata: {},
    ...overrides,
  };
}
