import assert from "node:assert/strict";
import { test } from "node:test";
import { host, spec } from "../test-hosts.js";
import type { GroupView } from "../types.js";
import { buildFailureWeigher } from "./build-failure.js";
import { diskWeigher } from "./disk.js";
import { numInstancesWeigher } from "./num-instances.js";
import { ramWeigher } from "./ram.js";
import { softAffinityWeigher, softAntiAffinityWeigher } from "./server-group.js";
import { vcpuWeigher } from "./vcpu.js";

const s = spec(1, 1, 1);

test("resource weighers return what is free under ratio and reservation", () => {
  const h = host("a", { vcpus: 8, reservedVcpus: 2, cpuAllocationRatio: 2, vcpusUsed: 4, memoryMb: 4096, memoryMbUsed: 1024, diskGb: 100, reservedDiskGb: 10, diskGbUsed: 30 });
  assert.equal(vcpuWeigher().weigh(h, s), 8);
  assert.equal(ramWeigher().weigh(h, s), 3072);
  assert.equal(diskWeigher().weigh(h, s), 60);
  assert.equal(ramWeigher(-1).multiplier, -1, "negative packs");
});

test("soft affinity weighs hosts with more members higher, soft anti-affinity lower; other policies are neutral", () => {
  const group = (policy: GroupView["policy"]): GroupView => ({ id: "g", policy, maxServerPerHost: 1, memberHosts: new Map([["a", 2], ["b", 1]]) });
  const aff = spec(1, 1, 1, [], { group: group("soft-affinity") });
  const anti = spec(1, 1, 1, [], { group: group("soft-anti-affinity") });
  assert.deepEqual(["a", "b", "c"].map((n) => softAffinityWeigher().weigh(host(n), aff)), [2, 1, 0]);
  assert.deepEqual(["a", "b", "c"].map((n) => softAntiAffinityWeigher().weigh(host(n), anti)), [-2, -1, -0]);
  assert.equal(softAffinityWeigher().weigh(host("a"), anti), 0);
  assert.equal(softAntiAffinityWeigher().weigh(host("a"), s), 0);
});

test("build failures and instance counts weigh against a host", () => {
  assert.equal(buildFailureWeigher().weigh(host("a", { failedBuilds: 3 }), s), -3);
  assert.equal(buildFailureWeigher().multiplier, 1_000_000, "Nova's default outweighs the rest");
  assert.equal(numInstancesWeigher().weigh(host("a", { runningVms: 7 }), s), -7);
});
