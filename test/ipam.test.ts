/**
 * IPAM on the real MariaDB, through the store: the lowest free address of
 * the allocation pools, in pool order, whatever is taken where; a full
 * subnet is RESOURCE_EXHAUSTED naming it; and the time of one allocation
 * in a /16 with 5,000 addresses taken (a diagnostic, not an assertion).
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import { status } from "@grpc/grpc-js";
import { formatIpv4, parseIpv4 } from "../controller/domain/ipv4.js";
import type { AddressRange } from "../controller/domain/network.js";
import { openPool, withTx, type Pool } from "../controller/store/db.js";
import { migrate } from "../controller/store/migrations.js";
import { createNetwork, createSubnet } from "../controller/store/networks.js";
import { createPort, deletePort } from "../controller/store/ports.js";
import { MYSQL_URL } from "./harness.js";

describe("IPAM", () => {
  const db = `nm_test_ipam_${randomBytes(4).toString("hex")}`;
  let pool: Pool;
  let networkId: string;

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 4 });
    await migrate(pool);
    networkId = (
      await createNetwork(pool, { name: "ipam", projectId: "p", shared: false, segmentation: "flat", physicalNetwork: "br", mtu: 1500, portSecurity: true }, { min: 1, max: 10 })
    ).id;
  });
  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  /** A subnet of the network with these pools (each test its own range of addresses). */
  async function subnet(cidr: string, pools: AddressRange[]): Promise<string> {
    const [base, bits] = cidr.split("/") as [string, string];
    const first = parseIpv4(base)!;
    const last = first + 2 ** (32 - Number(bits)) - 1;
    return withTx(pool, async (c) =>
      (
        await createSubnet(c, {
          networkId,
          projectId: "p",
          name: cidr,
          cidr,
          gatewayIp: null,
          allocationPools: pools,
          dnsNameservers: [],
          hostRoutes: [],
          enableDhcp: false,
          first,
          last,
        })
      ).id,
    );
  }

  /** Marks addresses taken without ports (as other ports would). */
  async function take(subnetId: string, addresses: readonly string[]): Promise<void> {
    for (let i = 0; i < addresses.length; i += 1000) {
      await pool.query("INSERT INTO ip_allocations (subnet_id, address, port_id) VALUES ?", [
        addresses.slice(i, i + 1000).map((a) => [subnetId, parseIpv4(a)!, randomUUID()]),
      ]);
    }
  }

  /** A port with one address on `subnetId`: its id and address. */
  async function allocate(subnetId: string): Promise<{ id: string; address: string }> {
    const p = await withTx(pool, (c) => createPort(c, { networkId, projectId: "p", fixedIps: [{ subnetId }], securityGroupIds: [], portSecurity: false }));
    assert.equal(p.fixedIps.length, 1);
    return { id: p.id, address: p.fixedIps[0]!.ipAddress };
  }

  test("the lowest free address of the pools, in pool order, fills holes first; a full subnet is exhausted, named", async () => {
    const s = await subnet("10.61.0.0/24", [
      { start: "10.61.0.100", end: "10.61.0.104" },
      { start: "10.61.0.10", end: "10.61.0.12" },
    ]);
    assert.equal((await allocate(s)).address, "10.61.0.100", "the first pool's first address");
    await take(s, ["10.61.0.101", "10.61.0.103"]);
    const p102 = await allocate(s);
    assert.equal(p102.address, "10.61.0.102", "the hole after a taken address");
    assert.equal((await allocate(s)).address, "10.61.0.104", "the pool's last address");
    assert.equal((await allocate(s)).address, "10.61.0.10", "the second pool once the first is full");
    await take(s, ["10.61.0.11"]);
    assert.equal((await allocate(s)).address, "10.61.0.12");
    await withTx(pool, (c) => deletePort(c, p102.id));
    assert.equal((await allocate(s)).address, "10.61.0.102", "a freed address is the lowest again");
    const full = await withTx(pool, (c) => createPort(c, { networkId, projectId: "p", fixedIps: [{ subnetId: s }], securityGroupIds: [], portSecurity: false })).then(
      () => assert.fail("a full subnet allocated"),
      (err: { code?: number; reason?: string; message: string }) => err,
    );
    assert.equal(full.code, status.RESOURCE_EXHAUSTED);
    assert.equal(full.reason, "IP_ADDRESS_EXHAUSTED");
    assert.match(full.message, new RegExp(`subnet ${s} \\(10\\.61\\.0\\.0/24\\)`));
  });

  test("addresses outside the pools do not count; a pool whose first address is free gets it; a freed address is found below the last allocated", async () => {
    const s = await subnet("10.62.0.0/24", [{ start: "10.62.0.20", end: "10.62.0.30" }]);
    await take(s, ["10.62.0.19", "10.62.0.31", "10.62.0.5"]);
    assert.equal((await allocate(s)).address, "10.62.0.20");
    await take(s, ["10.62.0.22", "10.62.0.23"]);
    const p21 = await allocate(s);
    assert.equal(p21.address, "10.62.0.21");
    assert.equal((await allocate(s)).address, "10.62.0.24");
    await withTx(pool, (c) => deletePort(c, p21.id));
    assert.equal((await allocate(s)).address, "10.62.0.21", "an address freed below the last allocated one is the lowest again");
    assert.equal((await allocate(s)).address, "10.62.0.25");
  });

  test("a /16 with 5,000 addresses taken: the next address is the first hole, found without reading them all", async (t) => {
    const s = await subnet("10.63.0.0/16", [{ start: "10.63.0.2", end: "10.63.255.254" }]);
    const first = parseIpv4("10.63.0.2")!;
    await take(
      s,
      Array.from({ length: 5000 }, (_, i) => formatIpv4(first + i)),
    );
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      const p = await allocate(s);
      times.push(performance.now() - t0);
      assert.equal(p.address, formatIpv4(first + 5000 + i), "addresses follow the taken ones in order");
    }
    const [firstMs, ...rest] = times;
    rest.sort((a, b) => a - b);
    t.diagnostic(
      `port creation with 5,000 addresses taken in a /16: the first ${firstMs!.toFixed(1)} ms, then median ${rest[9]!.toFixed(1)} ms, max ${rest[18]!.toFixed(1)} ms over 19`,
    );
  });
});
