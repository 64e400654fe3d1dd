import assert from "node:assert/strict";
import { test } from "node:test";
import { computeFilter } from "./filters/compute.js";
import { diskFilter } from "./filters/disk.js";
import { ramFilter } from "./filters/ram.js";
import { vcpuFilter } from "./filters/vcpu.js";
import { Pipeline, normalise } from "./pipeline.js";
import { host, spec } from "./test-hosts.js";
import { ramWeigher } from "./weighers/ram.js";
import { noValidHostFault } from "./no-valid-host.js";

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

test("weights: each weigher is normalised to 0..1 and multiplied, then summed", () => {
  const hosts = [host("a", { vcpus: 8, memoryMbUsed: 0, vcpusUsed: 4 }), host("b", { vcpus: 8, memoryMbUsed: 4096, vcpusUsed: 0 })];
  const ex = new Pipeline({ multipliers: { ram: 2, vcpu: 1, disk: 0, softAffinity: 0, softAntiAffinity: 0, buildFailure: 0, numInstances: 0 } }).explain(hosts, spec(1, 512, 1));
  const a = ex.hosts.find((h) => h.host === "a")!;
  const b = ex.hosts.find((h) => h.host === "b")!;
  assert.deepEqual(a.weights, { ram: 2, vcpu: 0 });
  assert.deepEqual(b.weights, { ram: 0, vcpu: 1 });
  assert.deepEqual([a.score, a.rank, b.score, b.rank], [2, 1, 1, 2], "ram counts double: a wins");
});

test("a host that failed builds loses to one that did not, whatever the rest says", () => {
  const hosts = [host("roomy", { failedBuilds: 1 }), host("tight", { memoryMbUsed: 6000, vcpusUsed: 3 })];
  assert.deepEqual(new Pipeline().place(hosts, spec(1, 512, 1)).candidates.map((h) => h.host), ["tight", "roomy"]);
});

test("explain lists every filter's verdict for every host, without stopping at the first failure", () => {
  const hosts = [host("full", { memoryMbUsed: 8192, vcpusUsed: 4 }), host("ok")];
  const ex = new Pipeline().explain(hosts, spec(1, 1024, 1));
  assert.deepEqual(ex.hosts.map((h) => [h.host, h.passed, h.rank]), [["ok", true, 1], ["full", false, 0]]);
  const full = ex.hosts.find((h) => h.host === "full")!;
  const failed = full.filters.filter((f) => !f.pass).map((f) => f.filter);
  assert.deepEqual(failed, ["ram", "vcpu"], "both failing filters are named");
  assert.match(full.filters.find((f) => f.filter === "ram")!.reason, /needs 1024 MiB, 0 free/);
  assert.ok(full.filters.length >= 10, "every filter ran");
  assert.deepEqual(ex.placement.rejections, { ram: 1 }, "the count still names only the first");
});

test("algorithms: least-loaded orders by vCPUs in use, chance and zone at random (zone within the requested zone)", () => {
  const hosts = [host("a", { vcpusUsed: 3 }), host("b", { vcpusUsed: 1 }), host("c", { vcpusUsed: 2, zone: "az2" })];
  const names = (p: Pipeline, extra = {}) => p.place(hosts, spec(1, 1, 1, [], extra)).candidates.map((h) => h.host);
  assert.deepEqual(names(new Pipeline({ algorithm: "least-loaded" })), ["b", "c", "a"]);
  // A fixed random source: Fisher-Yates with j = 0 each time.
  assert.deepEqual(names(new Pipeline({ algorithm: "chance", random: () => 0 })), ["b", "c", "a"]);
  assert.deepEqual(new Set(names(new Pipeline({ algorithm: "chance" }))), new Set(["a", "b", "c"]), "chance keeps every host that passed");
  assert.deepEqual(names(new Pipeline({ algorithm: "zone" })).sort(), ["a", "b"], "the default zone nova");
  assert.deepEqual(names(new Pipeline({ algorithm: "zone" }), { availabilityZone: "az2" }), ["c"]);
});

test("host_subset_size picks the first host among the best N; the rest stay as alternates", () => {
  const hosts = [host("a", { memoryMbUsed: 0 }), host("b", { memoryMbUsed: 1000 }), host("c", { memoryMbUsed: 2000 }), host("d", { memoryMbUsed: 3000 })];
  const pick = (r: number) => new Pipeline({ hostSubsetSize: 3, random: () => r }).place(hosts, spec(1, 1, 1)).candidates.map((h) => h.host);
  assert.deepEqual(pick(0), ["a", "b", "c", "d"]);
  assert.deepEqual(pick(0.5), ["b", "a", "c", "d"]);
  assert.deepEqual(pick(0.99), ["c", "a", "b", "d"], "never beyond the best 3");
});

test("the zone algorithm counts the hosts it leaves out; max_instances_per_host 0 means no limit", () => {
  const hosts = [host("a", { zone: "az1" }), host("b", { zone: "az2" })];
  const p = new Pipeline({ algorithm: "zone" }).place(hosts, spec(1, 1, 1, [], { availabilityZone: "" }));
  assert.deepEqual([p.candidates.length, p.rejections], [0, { zone: 2 }], "neither is in the default zone nova");
  const busy = [host("a", { runningVms: 500 })];
  assert.equal(new Pipeline().place(busy, spec(1, 1, 1)).candidates.length, 1, "no limit by default");
  assert.deepEqual(new Pipeline({ maxInstancesPerHost: 500 }).place(busy, spec(1, 1, 1)).rejections, { num_instances: 1 });
});

test("past maxScoredHosts, a random stretch of hosts is visited until that many passed; the best of them is chosen", () => {
  const hosts = Array.from({ length: 1000 }, (_, i) => host(`h${i}`, { memoryMbUsed: (i * 7) % 8000, vcpusUsed: i % 5 === 0 ? 4 : 0 }));
  let r = 0.42;
  const p = new Pipeline({ maxScoredHosts: 10, random: () => r });
  const placement = p.place(hosts, spec(1, 64, 1));
  // Every fifth host is full: about 12 visited to find 10 that pass.
  assert.equal(placement.candidates.length, 10);
  assert.ok(placement.considered >= 10 && placement.considered <= 14, `considered ${placement.considered}`);
  assert.equal(placement.considered, 10 + (placement.rejections.vcpu ?? 0));
  const best = Math.min(...placement.candidates.map((h) => h.memoryMbUsed));
  assert.equal(placement.candidates[0]!.memoryMbUsed, best, "the most free memory of the sample first");
  // Another random point, another sample.
  r = 0.9;
  const other = p.place(hosts, spec(1, 64, 1));
  assert.notDeepEqual(other.candidates.map((h) => h.host), placement.candidates.map((h) => h.host));
});

test("every host is visited when few pass, for a server group, for a dry run, and for least-loaded", () => {
  const hosts = Array.from({ length: 300 }, (_, i) => host(`h${i}`, { vcpusUsed: i === 123 ? 0 : 4 }));
  const ask = spec(1, 64, 1);
  const p = new Pipeline({ maxScoredHosts: 5, random: () => 0.5 });
  const one = p.place(hosts, ask);
  assert.deepEqual(one.candidates.map((h) => h.host), ["h123"]);
  assert.equal(one.considered, 300);
  assert.equal(one.rejections.vcpu, 299, "NO_VALID_HOST's counts stay complete");
  const roomy = hosts.map((h) => ({ ...h, vcpusUsed: 0 }));
  const group = { id: "g", policy: "soft-affinity" as const, maxServerPerHost: 1, memberHosts: new Map([["h250", 1]]) };
  assert.equal(p.place(roomy, { ...ask, group }).considered, 300);
  assert.equal(p.explain(roomy, ask).placement.considered, 300);
  assert.equal(new Pipeline({ maxScoredHosts: 5, algorithm: "least-loaded" }).place(roomy, ask).considered, 300);
  assert.equal(p.place(roomy, ask).considered, 5);
});

test("scoreAll scores every host whatever maxScoredHosts says", () => {
  const hosts = Array.from({ length: 300 }, (_, i) => host(`h${i}`));
  const p = new Pipeline({ maxScoredHosts: 5, random: () => 0.5 });
  assert.equal(p.place(hosts, spec(1, 64, 1)).considered, 5);
  assert.equal(p.place(hosts, spec(1, 64, 1), { scoreAll: true }).considered, 300);
});
