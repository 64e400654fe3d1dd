/**
 * Two controller processes against one database: this test's process runs
 * one, a child process (`controller/main.ts`) the other. 300 concurrent
 * CreateServer calls, half to each, for capacity of exactly 200. The claims
 * (conditional UPDATEs in MySQL) must neither double-book nor lose a slot.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, describe, test } from "node:test";
import { ServerStatus } from "../gen/novamesh/compute/v1/server.js";
import { stopAgent } from "./agents.js";
import { assertCapacityExact, waitServers } from "./harness.js";
import { secondController, stack } from "./stack.js";

describe("concurrent scheduling", () => {
  const children: ChildProcess[] = [];
  // Stops the second controller before the stack goes (after() hooks run in order).
  after(async () => {
    for (const c of children) await stopAgent(c);
  });
  // vCPUs are the limit: 10 hosts × 20 vCPUs at ratio 1.0, flavor 1 vCPU (memory and disk have room for more).
  const cfg = { cpuAllocationRatio: 1.0, ramAllocationRatio: 1.0, diskAllocationRatio: 1.0 };
  const fx = stack({
    name: "sched-concurrency",
    controller: cfg,
    members: [],
    agents: ({ id }) => [{ host: `cc${id}`, hosts: 10, capacity: { vcpus: 20, memoryMb: 65536, diskGb: 1000 } }],
    removeDir: true,
  });
  const { env, admin: a, imageId, dir } = fx;

  test("two controllers, 300 creates, room for 200: exactly 200 ACTIVE, 100 ERROR explained, no host over capacity", async (t) => {
    // The second controller: its own process, the same database, stream and subjects.
    const second = await secondController(env, dir, cfg, ["--cpu-allocation-ratio", "1", "--ram-allocation-ratio", "1", "--disk-allocation-ratio", "1"]);
    children.push(second.process);
    const b = second.clients;
    await a.flavors.createFlavor({ flavor: { id: "c.1", name: "c.1", vcpus: 1, ramMb: 256, diskGb: 1, description: "", extraSpecs: {} } });

    const started = Date.now();
    const created = await Promise.all(
      Array.from({ length: 300 }, (_, i) => (i % 2 ? b : a).servers.createServer({ name: `c-${i}`, flavorId: "c.1", imageId, requestId: `cc-${i}` })),
    );
    const ids = created.map((r) => r.server!.id);
    assert.equal(new Set(ids).size, 300);
    const done = await waitServers(
      a,
      ids,
      (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE || s.status === ServerStatus.SERVER_STATUS_ERROR,
      "ACTIVE or ERROR",
      180_000,
    );
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`300 creates through two controllers settled in ${seconds.toFixed(1)} s`);
    const active = done.filter((s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE);
    const failed = done.filter((s) => s.status === ServerStatus.SERVER_STATUS_ERROR);
    assert.equal(active.length, 200, `ACTIVE after ${seconds.toFixed(1)} s`);
    assert.equal(failed.length, 100);
    for (const s of failed) {
      assert.equal(s.fault?.code, "NO_VALID_HOST", JSON.stringify(s.fault));
      assert.equal(s.fault!.details.hosts_considered, "10");
      // Every host is accounted for: removed by a filter (vcpu: full) or lost to a concurrent claim.
      const removed = Object.entries(s.fault!.details)
        .filter(([k]) => k.startsWith("filter.") || k === "claim_conflict")
        .reduce((n, [, v]) => n + Number(v), 0);
      assert.equal(removed, 10, JSON.stringify(s.fault!.details));
      assert.match(s.fault!.message, /10 hosts considered; removed by vcpu: \d+/);
    }
    t.diagnostic(`${failed.filter((s) => s.fault!.details.claim_conflict).length} of the 100 faults counted lost claims`);
    const usage = await assertCapacityExact(env, a);
    const hv = (await a.hypervisors()).filter((h) => h.hostname.startsWith(`cc${env.id}`));
    assert.equal(hv.length, 10);
    for (const h of hv) {
      assert.ok(h.vcpusUsed <= h.vcpus * h.cpuAllocationRatio, `${h.hostname}: ${h.vcpusUsed} of ${h.vcpus}`);
      assert.equal(h.vcpusUsed, 20, `${h.hostname} is full`);
    }
    assert.equal([...usage.values()].reduce((n, u) => n + u.vms, 0), 200);
    // The servers really run where they are placed.
    const perHost = new Map<string, number>();
    for (const s of active) perHost.set(s.host, (perHost.get(s.host) ?? 0) + 1);
    assert.deepEqual([...perHost.values()].sort(), Array(10).fill(20));
  });
});
