/**
 * Network sync on the real MariaDB with twenty hosts (subscribers standing
 * in for their agents' streams): a change is computed and sent only to the
 * hosts it concerns (a group's rules, a remote group's members, a server's
 * ports), every host for a tunnel address, and every host when the rows
 * past the last read were pruned; a change whose row commits after a later
 * one was read still reaches its host. Polls are driven by the test.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import pino from "pino";
import type { HostNetwork } from "../controller/conductor/host-ports.js";
import { NetworkSync } from "../controller/conductor/network-sync.js";
import type { HostPort } from "../controller/domain/network.js";
import { openPool, withTx, type Pool } from "../controller/store/db.js";
import { migrate } from "../controller/store/migrations.js";
import { setTunnelIp } from "../controller/store/network-changes.js";
import { createNetwork, createSubnet } from "../controller/store/networks.js";
import { createPort, releaseServerPorts, updatePort } from "../controller/store/ports.js";
import { createRule, createSecurityGroup, deleteRule } from "../controller/store/security-groups.js";
import { MYSQL_URL } from "./harness.js";

const N = 20;
const hosts = Array.from({ length: N }, (_, i) => `sync-h${i}`);

describe("network sync", () => {
  const db = `nm_test_netsync_${randomBytes(4).toString("hex")}`;
  let pool: Pool;
  let sync: NetworkSync;
  /** Updates each host was sent, in order. */
  const sent = new Map<string, HostNetwork[]>(hosts.map((h) => [h, []]));
  const servers = new Map<string, string>();
  let networkId: string;
  /** `all`: every host's port is in it; `solo`: only sync-h0's. */
  let all: string;
  let solo: string;

  /** Polls until no host is due; the hosts sent an update meanwhile. */
  async function quiet(): Promise<Set<string>> {
    const before = new Map(hosts.map((h) => [h, sent.get(h)!.length]));
    for (let i = 0; ; i++) {
      await sync.poll();
      if (!sync.due()) break;
      if (i > 100) assert.fail("hosts still due after 100 polls");
      await new Promise((r) => setTimeout(r, 10));
    }
    return new Set(hosts.filter((h) => sent.get(h)!.length > before.get(h)!));
  }
  const last = (h: string): HostNetwork => sent.get(h)!.at(-1)!;
  const portsOn = (h: string): HostPort[] => [...last(h).instances.values()].flat();
  const rules = (h: string) => portsOn(h).flatMap((p) => p.securityRules);

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 8 });
    await migrate(pool);
    networkId = (
      await createNetwork(pool, { name: "sync", projectId: "p", shared: false, segmentation: "flat", physicalNetwork: "br", mtu: 1500, portSecurity: true }, { min: 1, max: 10 })
    ).id;
    await withTx(pool, (c) =>
        createSubnet(c, {
          networkId,
          projectId: "p",
          name: "s",
          cidr: "10.50.0.0/24",
          gatewayIp: "10.50.0.1",
          allocationPools: [{ start: "10.50.0.2", end: "10.50.0.254" }],
          dnsNameservers: [],
          hostRoutes: [],
          enableDhcp: false,
          first: 0x0a320000,
          last: 0x0a3200ff,
        }),
    );
    all = (await withTx(pool, (c) => createSecurityGroup(c, { projectId: "p", name: "all", description: "" }))).id;
    solo = (await withTx(pool, (c) => createSecurityGroup(c, { projectId: "p", name: "solo", description: "" }))).id;
    for (const [i, host] of hosts.entries()) {
      await pool.query(
        `INSERT INTO compute_nodes (id, host, hypervisor_type, zone, version, vcpus, memory_mb, disk_gb, cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio)
         VALUES (?, ?, 'fake', '', '', 8, 8192, 80, 1, 1, 1)`,
        [randomUUID(), host],
      );
      const uuid = randomUUID();
      servers.set(host, uuid);
      await pool.query(
        `INSERT INTO instances (uuid, name, project_id, request_id, flavor_id, flavor_name, vcpus, ram_mb, disk_gb, extra_specs, image_id, host, vm_state, power_state, metadata, tried_hosts)
         VALUES (?, ?, 'p', ?, 'f', 'f', 1, 64, 1, '{}', ?, ?, 'ACTIVE', 'RUNNING', '{}', '[]')`,
        [uuid, `s${i}`, uuid, randomUUID(), host],
      );
      await withTx(pool, (c) =>
        createPort(c, { networkId, projectId: "p", securityGroupIds: i === 0 ? [all, solo] : [all], portSecurity: true, deviceId: uuid, autoDelete: true, deviceOwner: "compute:nova" }),
      );
    }
    sync = new NetworkSync(pool, pino({ level: "silent" }), 3_600_000);
    for (const h of hosts) sync.subscribe(h, (u) => sent.get(h)!.push(u));
    await quiet();
  });
  after(async () => {
    sync?.stop();
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  test("every host is sent its server's port at once", () => {
    for (const h of hosts) assert.deepEqual([...last(h).instances.keys()], [servers.get(h)], h);
  });

  test("a rule of a group used on one host is computed and sent to that host only; one of a group every host uses, to all", async () => {
    const before = sync.stats.hostsComputed;
    await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "tcp", portMin: 22, portMax: 22, remoteCidr: "", remoteGroupId: null }));
    assert.deepEqual([...(await quiet())], ["sync-h0"]);
    assert.equal(sync.stats.hostsComputed - before, 1, "one host computed");
    assert.ok(rules("sync-h0").some((r) => r.protocol === "tcp" && r.portMin === 22), "sync-h0 has the new rule");

    const before2 = sync.stats.hostsComputed;
    await withTx(pool, (c) => createRule(c, all, { direction: "ingress", protocol: "icmp", portMin: null, portMax: null, remoteCidr: "", remoteGroupId: null }));
    assert.equal((await quiet()).size, N);
    assert.equal(sync.stats.hostsComputed - before2, N, "every host computed");
    for (const h of hosts) assert.ok(rules(h).some((r) => r.protocol === "icmp"), `${h} has the ICMP rule`);
  });

  test("a new member of a remote group reaches the hosts whose rules name it; a server's ports released, its host and those", async () => {
    await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "udp", portMin: 53, portMax: 53, remoteCidr: "", remoteGroupId: all }));
    await quiet();
    const before = sync.stats.hostsComputed;
    // A free port joins `all`: only sync-h0's rule names it.
    const free = await withTx(pool, (c) => createPort(c, { networkId, projectId: "p", securityGroupIds: [all], portSecurity: true }));
    assert.deepEqual([...(await quiet())], ["sync-h0"]);
    assert.equal(sync.stats.hostsComputed - before, 1);
    const dns = rules("sync-h0").find((r) => r.protocol === "udp")!;
    assert.ok(dns.remoteAddresses.includes(free.fixedIps[0]!.ipAddress), "the new member's address in sync-h0's rule");

    // sync-h3's server loses its port (made for it, so deleted): sync-h3, and sync-h0 whose rule lists its address.
    const gone = portsOn("sync-h3")[0]!.fixedIps[0]!.ipAddress;
    await withTx(pool, (c) => releaseServerPorts(c, servers.get("sync-h3")!));
    assert.deepEqual([...(await quiet())].sort(), ["sync-h0", "sync-h3"]);
    assert.equal(last("sync-h3").instances.size, 0, "sync-h3 has no port left");
    assert.ok(!rules("sync-h0").find((r) => r.protocol === "udp")!.remoteAddresses.includes(gone), "the released address left sync-h0's rule");
  });

  test("a host's tunnel address reaches every other host", async () => {
    const before = sync.stats.hostsComputed;
    await setTunnelIp(pool, "sync-h5", "192.0.2.55");
    assert.equal((await quiet()).size, N);
    assert.equal(sync.stats.hostsComputed - before, N);
    for (const h of hosts) assert.deepEqual(last(h).tunnelPeers, h === "sync-h5" ? [] : ["192.0.2.55"], h);
  });

  test("a change whose row commits after a later row was read still reaches its host", async () => {
    const conn = await mysql.createConnection(`${MYSQL_URL}/${db}`);
    try {
      await conn.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
      await conn.beginTransaction();
      // Its row takes an id now and commits last.
      await createRule(conn, solo, { direction: "ingress", protocol: "tcp", portMin: 443, portMax: 443, remoteCidr: "", remoteGroupId: null });
      await withTx(pool, (c) => createRule(c, all, { direction: "ingress", protocol: "tcp", portMin: 80, portMax: 80, remoteCidr: "", remoteGroupId: null }));
      // Every host with a port in `all`: sync-h3 has none left.
      assert.deepEqual([...(await quiet())].sort(), hosts.filter((h) => h !== "sync-h3").sort());
      assert.ok(!rules("sync-h0").some((r) => r.portMin === 443));
      await conn.commit();
    } finally {
      await conn.end();
    }
    assert.deepEqual([...(await quiet())], ["sync-h0"]);
    assert.ok(rules("sync-h0").some((r) => r.portMin === 443), "sync-h0 has the late rule");
  });

  test("when the rows past the last read were pruned, every host is sent its full network", async () => {
    await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "tcp", portMin: 8080, portMax: 8080, remoteCidr: "", remoteGroupId: null }));
    // Another controller pruned it (and what came before) before this one read it.
    const [[{ m }]] = (await pool.query("SELECT MAX(id) AS m FROM network_changes")) as unknown as [[{ m: number }]];
    await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "tcp", portMin: 8081, portMax: 8081, remoteCidr: "", remoteGroupId: null }));
    await pool.query("DELETE FROM network_changes WHERE id <= ?", [m]);
    const before = sync.stats.hostsComputed;
    assert.equal((await quiet()).size, N);
    assert.equal(sync.stats.hostsComputed - before, N);
    assert.ok(rules("sync-h0").some((r) => r.portMin === 8080) && rules("sync-h0").some((r) => r.portMin === 8081));
  });

  test("a rule deleted, and a port leaving the group a rule names, reach exactly the hosts they concern", async () => {
    const rule = await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "tcp", portMin: 7000, portMax: 7000, remoteCidr: "", remoteGroupId: null }));
    await quiet();
    assert.ok(rules("sync-h0").some((r) => r.portMin === 7000));
    await withTx(pool, (c) => deleteRule(c, rule.id));
    assert.deepEqual([...(await quiet())], ["sync-h0"], "only the host whose port is in the rule's group");
    assert.ok(!rules("sync-h0").some((r) => r.portMin === 7000), "the rule is gone from sync-h0");

    // sync-h0's rule lets in `all`'s members on UDP 53; sync-h7's port leaves `all`.
    const leaving = portsOn("sync-h7")[0]!;
    await withTx(pool, (c) => updatePort(c, leaving.id, { securityGroupIds: [solo] }));
    assert.deepEqual([...(await quiet())].sort(), ["sync-h0", "sync-h7"], "the host whose rule names the group, and the port's own");
    assert.ok(!rules("sync-h0").find((r) => r.protocol === "udp")!.remoteAddresses.includes(leaving.fixedIps[0]!.ipAddress), "sync-h7's address left sync-h0's rule");
  });

  test("a poll that fails after reading the changes computes every host again, so none misses its change", async () => {
    // A second sync (another controller) whose database connection fails once, right after it read the changes.
    let armed = false;
    const flakyPool = new Proxy(pool, {
      get(target, key) {
        if (key !== "query") return Reflect.get(target, key);
        return (sql: string, params?: unknown) => {
          if (armed && !/FROM network_changes/.test(sql)) {
            armed = false;
            return Promise.reject(new Error("connection reset"));
          }
          return target.query(sql, params as never[]);
        };
      },
    });
    const flaky = new NetworkSync(flakyPool, pino({ level: "silent" }), 3_600_000);
    const got: HostNetwork[] = [];
    flaky.subscribe("sync-h0", (u) => got.push(u));
    try {
      const settle = async () => {
        for (let i = 0; i < 100 && (await flaky.poll(), flaky.due()); i++) await new Promise((r) => setTimeout(r, 10));
      };
      await settle();
      const rulesOf = () => [...got.at(-1)!.instances.values()].flat().flatMap((p) => p.securityRules);
      await withTx(pool, (c) => createRule(c, solo, { direction: "ingress", protocol: "tcp", portMin: 9090, portMax: 9090, remoteCidr: "", remoteGroupId: null }));
      armed = true;
      await flaky.poll();
      assert.equal(armed, false, "the poll's query after the read failed");
      await settle();
      assert.ok(rulesOf().some((r) => r.portMin === 9090), "sync-h0 was sent the rule whose change the failed poll had read");
    } finally {
      flaky.stop();
    }
  });
});

