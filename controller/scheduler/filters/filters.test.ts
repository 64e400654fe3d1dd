import assert from "node:assert/strict";
import { test } from "node:test";
import { host, spec } from "../test-hosts.js";
import type { GroupView } from "../types.js";
import { aggregateExtraSpecsFilter } from "./aggregate-extra-specs.js";
import { matchExtraSpec } from "./extra-specs-ops.js";
import { availabilityZoneFilter } from "./availability-zone.js";
import { diskFilter } from "./disk.js";
import { differentHostFilter, sameHostFilter } from "./host-hints.js";
import { imagePropertiesFilter } from "./image-properties.js";
import { numInstancesFilter } from "./num-instances.js";
import { ramFilter } from "./ram.js";
import { retryFilter } from "./retry.js";
import { affinityFilter, antiAffinityFilter } from "./server-group.js";
import { vcpuFilter } from "./vcpu.js";

const reason = (r: { pass: boolean; reason?: string }) => (r.pass ? "" : (r as { reason: string }).reason);
const group = (policy: GroupView["policy"], members: Record<string, number>, maxServerPerHost = 1): GroupView => ({
  id: "g1",
  policy,
  maxServerPerHost,
  memberHosts: new Map(Object.entries(members)),
});

test("reserved vCPUs and disk come off before the ratio", () => {
  // (8 - 2) * 2 - 10 = 2 vCPUs free; (100 - 20) * 1.5 - 100 = 20 GiB free
  const h = host("a", { vcpus: 8, reservedVcpus: 2, cpuAllocationRatio: 2, vcpusUsed: 10, diskGb: 100, reservedDiskGb: 20, diskAllocationRatio: 1.5, diskGbUsed: 100 });
  assert.equal(vcpuFilter.check(h, spec(2, 0, 0)).pass, true);
  assert.match(reason(vcpuFilter.check(h, spec(3, 0, 0))), /needs 3 vCPUs, 2 free/);
  assert.equal(diskFilter.check(h, spec(0, 0, 20)).pass, true);
  assert.match(reason(diskFilter.check(h, spec(0, 0, 21))), /needs 21 GiB, 20 free/);
  assert.equal(ramFilter.check(host("b", { memoryMb: 1024, reservedMemoryMb: 1024 }), spec(0, 1, 0)).pass, false, "all memory reserved");
});

test("retry skips hosts the request failed on", () => {
  assert.equal(retryFilter.check(host("a"), spec(1, 1, 1, ["a"])).pass, false);
  assert.equal(retryFilter.check(host("b"), spec(1, 1, 1, ["a"])).pass, true);
});

test("availability zone: the agent's zone, or an aggregate's availability_zone metadata over it", () => {
  const az = (zone: string) => spec(1, 1, 1, [], { availabilityZone: zone });
  assert.equal(availabilityZoneFilter.check(host("a", { zone: "az1" }), az("az1")).pass, true);
  assert.match(reason(availabilityZoneFilter.check(host("a", { zone: "az1" }), az("az2"))), /in zone "az1", not "az2"/);
  assert.equal(availabilityZoneFilter.check(host("a", { zone: "az1" }), az("")).pass, true, "no zone requested");
  const inAgg = host("a", { zone: "nova", aggregates: [{ name: "rack-2", metadata: { availability_zone: "az2" } }] });
  assert.equal(availabilityZoneFilter.check(inAgg, az("az2")).pass, true);
  assert.equal(availabilityZoneFilter.check(inAgg, az("nova")).pass, false);
});

test("aggregate extra specs: every scoped spec must match some aggregate's metadata (lists allowed)", () => {
  const ssd = host("a", { aggregates: [{ name: "fast", metadata: { disk: "ssd,nvme", gpu: "yes" } }] });
  const plain = host("b");
  const want = (specs: Record<string, string>) => spec(1, 1, 1, [], { flavorExtraSpecs: specs });
  assert.equal(aggregateExtraSpecsFilter.check(ssd, want({ "aggregate_instance_extra_specs:disk": "nvme" })).pass, true);
  assert.equal(aggregateExtraSpecsFilter.check(ssd, want({ "aggregate_instance_extra_specs:disk": "ssd", "aggregate_instance_extra_specs:gpu": "yes" })).pass, true);
  assert.match(reason(aggregateExtraSpecsFilter.check(ssd, want({ "aggregate_instance_extra_specs:disk": "hdd" }))), /disk is ssd,nvme, not hdd/);
  assert.match(reason(aggregateExtraSpecsFilter.check(plain, want({ "aggregate_instance_extra_specs:disk": "ssd" }))), /no aggregate with disk=ssd/);
  assert.equal(aggregateExtraSpecsFilter.check(plain, want({ "hw:cpu_policy": "dedicated" })).pass, true, "unscoped specs are not this filter's");
});

test("image properties: architecture and hypervisor type must match the host (qemu and kvm are one)", () => {
  const props = (p: Record<string, string>) => spec(1, 1, 1, [], { imageProperties: p });
  const qemu = host("a", { hypervisorType: "QEMU", architecture: "x86_64" });
  assert.equal(imagePropertiesFilter.check(qemu, props({ architecture: "x86_64", hypervisor_type: "kvm" })).pass, true);
  assert.match(reason(imagePropertiesFilter.check(qemu, props({ architecture: "aarch64" }))), /architecture aarch64, host x86_64/);
  assert.match(reason(imagePropertiesFilter.check(qemu, props({ img_hv_type: "xen" }))), /hypervisor_type xen, host QEMU/);
  assert.equal(imagePropertiesFilter.check(host("b", { architecture: "" }), props({ architecture: "aarch64" })).pass, true, "unknown host architecture");
  assert.equal(imagePropertiesFilter.check(qemu, props({})).pass, true);
});

test("hard affinity: once members run, only their host; hard anti-affinity: at most max_server_per_host", () => {
  const g = (policy: GroupView["policy"], m: Record<string, number>, max?: number) => spec(1, 1, 1, [], { group: group(policy, m, max) });
  assert.equal(affinityFilter.check(host("a"), g("affinity", {})).pass, true, "the first member goes anywhere");
  assert.equal(affinityFilter.check(host("a"), g("affinity", { a: 2 })).pass, true);
  assert.match(reason(affinityFilter.check(host("b"), g("affinity", { a: 2 }))), /group g1 \(affinity\) runs on a/);
  assert.equal(antiAffinityFilter.check(host("b"), g("anti-affinity", { a: 1 })).pass, true);
  assert.match(reason(antiAffinityFilter.check(host("a"), g("anti-affinity", { a: 1 }))), /holds 1 of group g1 \(anti-affinity, max 1 per host\)/);
  assert.equal(antiAffinityFilter.check(host("a"), g("anti-affinity", { a: 1 }, 2)).pass, true, "max_server_per_host 2");
  assert.equal(antiAffinityFilter.check(host("a"), g("soft-anti-affinity", { a: 5 })).pass, true, "soft policies never filter");
  assert.equal(affinityFilter.check(host("b"), g("soft-affinity", { a: 5 })).pass, true);
});

test("same_host and different_host hints", () => {
  assert.equal(sameHostFilter.check(host("a"), spec(1, 1, 1, [], { sameHost: new Set(["a"]) })).pass, true);
  assert.equal(sameHostFilter.check(host("b"), spec(1, 1, 1, [], { sameHost: new Set(["a"]) })).pass, false);
  assert.equal(differentHostFilter.check(host("a"), spec(1, 1, 1, [], { differentHost: new Set(["a"]) })).pass, false);
  assert.equal(differentHostFilter.check(host("b"), spec(1, 1, 1, [], { differentHost: new Set(["a"]) })).pass, true);
  assert.equal(sameHostFilter.check(host("b"), spec(1, 1, 1)).pass, true, "no hint");
});

test("num instances caps instances per host", () => {
  const f = numInstancesFilter(3);
  assert.equal(f.check(host("a", { runningVms: 2 }), spec(1, 1, 1)).pass, true);
  assert.match(reason(f.check(host("a", { runningVms: 3 }), spec(1, 1, 1))), /holds 3 instances, the most a host takes is 3/);
});

test("Nova's extra spec operators", () => {
  const cases: [string, string, boolean][] = [
    ["ssd,nvme", "<in> nvme", true],
    ["ssd", "<in> hdd", false],
    ["avx2, sse4", "<all-in> avx2 sse4", true],
    ["avx2", "<all-in> avx2 sse4", false],
    ["gold", "<or> silver <or> gold", true],
    ["bronze", "<or> silver <or> gold", false],
    ["8", "= 4", true],
    ["2", "= 4", false],
    ["4", "== 4.0", true],
    ["4", "!= 4", false],
    ["16", ">= 16", true],
    ["8", "<= 4", false],
    ["abc", "s== abc", true],
    ["abd", "s> abc", true],
    ["fast", "fast", true],
    ["fast", "faster", false],
  ];
  for (const [value, req, want] of cases) assert.equal(matchExtraSpec(value, req), want, `${JSON.stringify(value)} vs ${JSON.stringify(req)}`);
  const h = host("a", { aggregates: [{ name: "big", metadata: { cores: "32", tier: "gold" } }] });
  const want = (specs: Record<string, string>) => spec(1, 1, 1, [], { flavorExtraSpecs: specs });
  assert.equal(aggregateExtraSpecsFilter.check(h, want({ "aggregate_instance_extra_specs:cores": ">= 16", "aggregate_instance_extra_specs:tier": "<or> silver <or> gold" })).pass, true);
  assert.equal(aggregateExtraSpecsFilter.check(h, want({ "aggregate_instance_extra_specs:cores": ">= 64" })).pass, false);
});

test("architecture spellings are one (amd64 is x86_64, arm64 is aarch64)", () => {
  const props = (a: string) => spec(1, 1, 1, [], { imageProperties: { architecture: a } });
  assert.equal(imagePropertiesFilter.check(host("a", { architecture: "x86_64" }), props("amd64")).pass, true);
  assert.equal(imagePropertiesFilter.check(host("a", { architecture: "aarch64" }), props("arm64")).pass, true);
  assert.equal(imagePropertiesFilter.check(host("a", { architecture: "aarch64" }), props("amd64")).pass, false);
});
