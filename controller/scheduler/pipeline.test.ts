import assert from "node:assert/strict";
import { test } from "node:test";
import { computeFilter } from "./filters/compute.js";
import { diskFilter } from "./filters/disk.js";
import { ramFilter } from "./filters/ram.js";
import { vcpuFilter } from "./filters/vcpu.js";
import { Pipeline, normalise } from "./pipeline.js";
import type { HostState, RequestSpec } from "./types.js";
import { ramWeigher } from "./weighers/ram.js";
import { noValidHostFault } from "./scheduler-worker.js";

function host(name: string, over: Partial<HostState> = {}): HostState {
  return {
    id: `id-${name}`,
    host: name,
    version: "",
    freeMemoryMbReported: 0,
    freeDiskGbReported: 0,
    disabledReason: "",
    lastSeenAt: new Date(),
    migrationUri: "",
    zone: "nova",
    hypervisorType: "fake",
    enabled: true,
    up: true,
    vcpus: 4,
    memoryMb: 8192,
    diskGb: 100,
    vcpusUsed: 0,
    memoryMbUsed: 0,
    diskGbUsed: 0,
    runningVms: 0,
    cpuAllocationRatio: 1,
    ramAllocationRatio: 1,
    diskAllocationRatio: 1,
    reservedMemoryMb: 0,
    ...over,
  };
}

const spec = (vcpus: number, memoryMb: number, diskGb: number, ignore: string[] = []): RequestSpec => ({
  instanceUuid: "u",
  resources: { vcpus, memoryMb, diskGb },
  ignoreHosts: new Set(ignore),
});

test("ram filter honours the allocation ratio and the host's reserved memory", () => {
  const h = host("a", { memoryMb: 4096, memoryMbUsed: 3000, ramAllocationRatio: 1.5, reservedMemoryMb: 512 });
  // (4096 - 512) * 1.5 - 3000 = 2376 MiB free
  assert.equal(ramFilter.check(h, spec(1, 2376, 0)).pass, true);
  const r = ramFilter.check(h, spec(1, 2377, 0));
  assert.equal(r.pass, false);
  assert.match((r as { reason: string }).reason, /2377 MiB, 2376 free/);
});

test("vcpu and disk filters honour their ratios", () => {
  const h = host("a", { vcpus: 4, vcpusUsed: 15, cpuAllocationRatio: 4, diskGb: 100, diskGbUsed: 90, diskAllocationRatio: 1.2 });
  assert.equal(vcpuFilter.check(h, spec(1, 0, 0)).pass, true);
  assert.equal(vcpuFilter.check(h, spec(2, 0, 0)).pass, false);
  assert.equal(diskFilter.check(h, spec(0, 0, 30)).pass, true);
  assert.equal(diskFilter.check(h, spec(0, 0, 31)).pass, false);
});

test("compute filter removes disabled and down hosts", () => {
  assert.equal(computeFilter.check(host("a"), spec(1, 1, 1)).pass, true);
  assert.deepEqual(computeFilter.check(host("a", { enabled: false }), spec(1, 1, 1)), { pass: false, reason: "service disabled" });
  assert.deepEqual(computeFilter.check(host("a", { up: false }), spec(1, 1, 1)), { pass: false, reason: "service down" });
});

test("normalise scales to 0..1 and maps equal values to 0", () => {
  assert.deepEqual(normalise([10, 20, 30]), [0, 0.5, 1]);
  assert.deepEqual(normalise([5, 5]), [0, 0]);
  assert.deepEqual(normalise([]), []);
});

test("the pipeline spreads by free RAM and packs with a negative multiplier", () => {
  const hosts = [host("a", { memoryMbUsed: 4096 }), host("b", { memoryMbUsed: 1024 }), host("c", { memoryMbUsed: 2048 })];
  const spread = new Pipeline().place(hosts, spec(1, 512, 1));
  assert.deepEqual(
    spread.candidates.map((h) => h.host),
    ["b", "c", "a"],
  );
  const pack = new Pipeline({ weighers: [ramWeigher(-1)] }).place(hosts, spec(1, 512, 1));
  assert.deepEqual(
    pack.candidates.map((h) => h.host),
    ["a", "c", "b"],
  );
});

test("the pipeline counts each rejected host against the first filter it fails", () => {
  const hosts = [
    host("down", { up: false, memoryMbUsed: 8192 }),
    host("full-ram", { memoryMbUsed: 8000 }),
    host("full-cpu", { vcpusUsed: 4 }),
    host("failed-before"),
    host("ok"),
  ];
  const p = new Pipeline().place(hosts, spec(1, 1024, 10, ["failed-before"]));
  assert.deepEqual(
    p.candidates.map((h) => h.host),
    ["ok"],
  );
  assert.equal(p.considered, 5);
  assert.deepEqual(p.rejections, { compute: 1, ram: 1, vcpu: 1, retry: 1 });
  const fault = noValidHostFault({ candidates: [], considered: 5, rejections: p.rejections }, 0);
  assert.equal(fault.code, "NO_VALID_HOST");
  assert.match(fault.message, /5 hosts considered; removed by/);
  assert.equal(fault.details["filter.ram"], "1");
  assert.equal(fault.details.hosts_considered, "5");
});
