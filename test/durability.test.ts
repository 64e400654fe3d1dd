import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { ServiceState } from "../gen/novamesh/compute/v1/host.js";
import { ServerStatus, TaskState } from "../gen/novamesh/compute/v1/server.js";
import { Hosts, freePort, stopAgent, tempDir } from "./agents.js";
import { TestEnv, eventually, waitServers } from "./harness.js";
import type { Clients } from "./harness.js";

async function hostUp(admin: Clients, host: string): Promise<void> {
  await eventually(
    async () => (await admin.hosts.listServices({ host })).services[0]?.state === ServiceState.SERVICE_STATE_UP,
    { what: `${host} up`, timeoutMs: 30_000 },
  );
}

describe("durability", () => {
  const envs: TestEnv[] = [];
  const agents: Hosts[] = [];
  const newEnv = () => {
    const e = new TestEnv();
    envs.push(e);
    return e;
  };
  after(async () => {
    for (const h of agents) await h.stopAll("SIGKILL");
    for (const e of envs) await e.cleanup();
  });

  test("an agent killed while ops are queued runs every op exactly once after it restarts", async () => {
    const env = newEnv();
    const ctl = await env.startController();
    const admin = env.admin(ctl);
    const imageId = await env.image(ctl);
    const host = `kill${env.id}`;
    const hosts = new Hosts(env, () => env.address(ctl), await tempDir("kill"));
    agents.push(hosts);
    let agent = hosts.start({ host, capacity: { vcpus: 64, memoryMb: 65536, diskGb: 1000 }, faults: { spawn: { delayMs: 400 } } });
    await hostUp(admin, host);

    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await admin.servers.createServer({ name: `k-${i}`, flavorId: "m1.tiny", imageId })).server!.id);
    // Let some spawns finish, then kill the agent with the rest queued or in flight.
    await eventually(
      async () => {
        const all = await Promise.all(ids.map((id) => admin.servers.getServer({ id })));
        return all.some((r) => r.server!.status === ServerStatus.SERVER_STATUS_ACTIVE);
      },
      { what: "a first ACTIVE server", intervalMs: 20 },
    );
    const killedPid = agent.pid;
    await stopAgent(agent, "SIGKILL");
    const activeAtKill = (await Promise.all(ids.map((id) => admin.servers.getServer({ id })))).filter(
      (r) => r.server!.status === ServerStatus.SERVER_STATUS_ACTIVE,
    ).length;
    assert.ok(activeAtKill < 12, `the kill came while ops were pending (${activeAtKill} of 12 active)`);

    agent = hosts.restart(host);
    const active = await waitServers(admin, ids, (s) => s.status === ServerStatus.SERVER_STATUS_ACTIVE, "12 ACTIVE", 60_000);
    assert.ok(active.every((s) => s.host === host));

    // The hypervisor saw one spawn op per server. An op that had finished
    // before the kill was re-reported from the journal, not re-run; a queued
    // op ran once after the restart. Only an op the kill interrupted inside
    // the driver call (at most the executor's concurrency) was started again
    // after the restart — reconciled, since its VM did not exist.
    const spawns = (await hosts.calls(host)).filter((c) => c.method === "spawn");
    const opsByServer = new Map<string, Set<string>>();
    const startsByOp = new Map<string, { before: number; after: number }>();
    for (const c of spawns) {
      opsByServer.set(c.instanceId, (opsByServer.get(c.instanceId) ?? new Set()).add(c.opId ?? ""));
      const n = startsByOp.get(c.opId ?? "") ?? { before: 0, after: 0 };
      // By process, not by clock: the killed agent may start a call between
      // the test's decision to kill and the signal's arrival.
      if (c.pid === killedPid) n.before++;
      else n.after++;
      startsByOp.set(c.opId ?? "", n);
    }
    assert.deepEqual([...opsByServer.keys()].sort(), [...ids].sort());
    for (const [, ops] of opsByServer) assert.equal(ops.size, 1, "one spawn op per server");
    let interrupted = 0;
    for (const [opId, n] of startsByOp) {
      assert.ok(n.before <= 1 && n.after <= 1, `op ${opId} started ${n.before} times before and ${n.after} after the kill`);
      if (n.before && n.after) interrupted++;
    }
    assert.ok(interrupted <= 8, `${interrupted} ops were interrupted mid-call`);
    assert.ok(spawns.length - interrupted === 12);
    for (const id of ids) {
      const create = (await admin.servers.listServerActions({ serverId: id })).actions.find((a) => a.action === "create")!;
      assert.deepEqual(
        create.events.map((e) => `${e.name}:${e.result}`),
        ["schedule:Success", "compute_spawn:Success"],
      );
    }
    await stopAgent(agent);
    await env.stopController(ctl);
  });

  test("an op committed but not published before the controller stopped is delivered after restart", async () => {
    const env = newEnv();
    const port = await freePort();
    const listen = `127.0.0.1:${port}`;
    const held = await env.startController({ listen, holdOutbox: true });
    const admin = env.admin(held);
    const imageId = await env.image(held, "held-image");
    const host = `held${env.id}`;
    const hosts = new Hosts(env, () => listen, await tempDir("held"));
    agents.push(hosts);
    hosts.start({ host, capacity: { vcpus: 8, memoryMb: 8192, diskGb: 100 } });
    await hostUp(admin, host);

    const s = (await admin.servers.createServer({ name: "held", flavorId: "m1.tiny", imageId })).server!;
    await waitServers(admin, [s.id], (x) => x.taskState === TaskState.TASK_STATE_SPAWNING && x.host === host, "SPAWNING");
    const queued = await env.sql<{ n: number }>("SELECT COUNT(*) AS n FROM outbox");
    assert.equal(Number(queued[0]!.n), 1, "the spawn op is committed in the outbox");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await admin.servers.getServer({ id: s.id })).server!.taskState, TaskState.TASK_STATE_SPAWNING, "nothing was sent");
    await env.stopController(held);

    const ctl = await env.startController({ listen });
    const admin2 = env.admin(ctl);
    const [active] = await waitServers(admin2, [s.id], (x) => x.status === ServerStatus.SERVER_STATUS_ACTIVE, "ACTIVE after restart", 30_000);
    assert.equal(active!.host, host);
    assert.equal(Number((await env.sql<{ n: number }>("SELECT COUNT(*) AS n FROM outbox"))[0]!.n), 0);
    const spawns = (await hosts.calls(host)).filter((c) => c.method === "spawn" && c.instanceId === s.id);
    assert.equal(spawns.length, 1);
  });
});
