/**
 * Instance rows a transaction holds locked are not read back from MariaDB:
 * an insert's result and an update's are made from what the transaction
 * knows. Here each is compared with the row as the database has it after the
 * commit, for every field an update may change, and a row read without its
 * lock is still read again.
 */
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import type { Instance } from "../controller/domain/types.js";
import { openPool, withTx, type Pool } from "../controller/store/db.js";
import { migrate } from "../controller/store/migrations.js";
import { getInstance, insertInstance, updateInstance, type InstancePatch } from "../controller/store/instances.js";
import { listChanges } from "../controller/store/changes.js";
import { createAction, getActionById } from "../controller/store/actions.js";
import { MYSQL_URL } from "./harness.js";

describe("instance rows held by a transaction", () => {
  const db = `nm_test_rows_${randomBytes(4).toString("hex")}`;
  let pool: Pool;

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 4 });
    await migrate(pool);
  });
  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  /** Counts the statements `fn` sends on its transaction's connection. */
  async function inTx<T>(fn: (conn: mysql.PoolConnection) => Promise<T>): Promise<{ result: T; statements: string[] }> {
    const statements: string[] = [];
    const result = await withTx(pool, async (conn) => {
      const query = conn.query.bind(conn);
      (conn as { query: unknown }).query = (sql: string, ...rest: unknown[]) => {
        statements.push(sql);
        return (query as (...a: unknown[]) => unknown)(sql, ...rest);
      };
      try {
        return await fn(conn);
      } finally {
        (conn as { query: unknown }).query = query;
      }
    });
    return { result, statements };
  }

  async function fresh(uuid: string): Promise<Instance> {
    const inst = await getInstance(pool, uuid);
    assert.ok(inst, `${uuid} is in the database`);
    return inst;
  }

  async function newServer(): Promise<Instance> {
    const uuid = randomUUID();
    const { result, statements } = await inTx((c) =>
      insertInstance(
        c,
        {
          uuid,
          // Quotes, a backslash and non-ASCII letters: the change log's snapshot must keep them as given.
          name: 'web "1" \\ ünï',
          projectId: "p1",
          requestId: `req-${uuid}`,
          flavor: { id: "f1", name: "m1.tiny", vcpus: 1, ramMb: 512, diskGb: 1 },
          extraSpecs: { "hw:cpu_policy": "shared" },
          imageId: randomUUID(),
          metadata: { role: "web" },
          availabilityZone: "az1",
          schedulerHints: { sameHost: [], differentHost: [randomUUID()] },
          requestedNetworks: { networks: [], securityGroups: [] } as never,
          keypair: { name: "k", publicKey: "ssh-ed25519 AAAA k" },
          userData: new Uint8Array([1, 2, 3]),
          configDrive: true,
          description: "a web server",
          tags: ["a", "b"],
        },
        new Date(Date.now() + 60_000),
      ),
    );
    assert.ok(!statements.some((s) => /^SELECT .* FROM instances/s.test(s)), `the insert reads nothing back: ${statements.join(" | ")}`);
    assert.deepEqual(result, await fresh(uuid), "what the insert returned is what the database has");
    return result;
  }

  test("an insert returns the row as stored, and records that state in the change log", async () => {
    const inst = await newServer();
    const [change] = (await listChanges(pool, { afterIndex: 0, limit: 1000 })).filter((c) => c.instance.uuid === inst.uuid);
    assert.deepEqual(change?.instance, inst);
  });

  const patches: InstancePatch[] = [
    { vmState: "ACTIVE", powerState: "RUNNING", host: "h1", launchedAt: new Date(Date.now() - 1234) },
    { taskState: "REBOOTING", taskDeadline: new Date(Date.now() + 5000), attempt: 2, triedHosts: ["h0", "h1"], alternateHosts: ["h2"] },
    { taskState: null, fault: { code: "X", message: "it failed", details: { a: "b" }, createdAt: new Date().toISOString() } },
    { flavor: { id: "f2", name: "m1.small", vcpus: 2, ramMb: 2048, diskGb: 20, extraSpecs: { k: "v" } }, imageId: randomUUID() },
    { flavor: { id: "f3", name: "m1.big", vcpus: 4, ramMb: 4096, diskGb: 40 } },
    { lockedBy: "owner", lockedReason: "maintenance", shelvedImageId: randomUUID(), fault: null },
    { name: "web 2", hostname: "web-2", description: "", metadata: {}, tags: [] },
    { tags: ["z"], metadata: { x: "y" }, host: null, lockedBy: null, shelvedImageId: null },
    { vmState: "DELETED", deletedAt: new Date() },
  ];

  test("updates of a row read FOR UPDATE return it as stored, with no read after the first", async () => {
    const inst = await newServer();
    for (const patch of patches) {
      const { result, statements } = await inTx(async (c) => {
        await getInstance(c, inst.uuid, { lock: true });
        const once = await updateInstance(c, inst.uuid, patch);
        // A second read and a second update in the same transaction come from what it holds.
        assert.deepEqual(await getInstance(c, inst.uuid), once);
        return updateInstance(c, inst.uuid, { description: `${once.description}.` });
      });
      const reads = statements.filter((s) => /^SELECT .* FROM instances/s.test(s));
      assert.equal(reads.length, 1, `one read (the lock) for ${JSON.stringify(patch)}: ${statements.join(" | ")}`);
      assert.deepEqual(result, await fresh(inst.uuid), `after ${JSON.stringify(patch)}`);
    }
  });

  test("an update of a row the transaction had not locked reads it once, after the update", async () => {
    const inst = await newServer();
    const { result, statements } = await inTx(async (c) => {
      // Read without a lock: someone else may change it before the update, so it is not what the update builds on.
      await getInstance(c, inst.uuid);
      await pool.query("UPDATE instances SET description = 'changed by another' WHERE uuid = ?", [inst.uuid]);
      return updateInstance(c, inst.uuid, { powerState: "SHUTDOWN" });
    });
    assert.equal(statements.filter((s) => /^SELECT .* FROM instances/s.test(s)).length, 2);
    assert.equal(result.description, "changed by another");
    assert.deepEqual(result, await fresh(inst.uuid));
  });

  test("what a rolled-back transaction held is not held by the next one on the same connection", async () => {
    const inst = await newServer();
    await assert.rejects(
      withTx(pool, async (c) => {
        await updateInstance(c, inst.uuid, { description: "rolled back" });
        throw new Error("undo");
      }),
      /undo/,
    );
    await pool.query("UPDATE instances SET name = 'renamed' WHERE uuid = ?", [inst.uuid]);
    const seen = await withTx(pool, async (c) => getInstance(c, inst.uuid, { lock: true }));
    assert.equal(seen?.name, "renamed");
    assert.equal(seen?.description, "a web server");
  });

  test("a transaction on a connection whose last transaction rolled back records its own changes, and only those", async () => {
    const one = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 1 });
    try {
      const inst = await newServer();
      const after = (await listChanges(pool, { afterIndex: 0, limit: 100_000 })).at(-1)?.index ?? 0;
      await assert.rejects(
        withTx(one, async (c) => {
          await updateInstance(c, inst.uuid, { description: "rolled back" });
          throw new Error("undo");
        }),
        /undo/,
      );
      await withTx(one, (c) => updateInstance(c, inst.uuid, { description: "committed" }));
      const changes = (await listChanges(pool, { afterIndex: after, limit: 100 })).filter((c) => c.instance.uuid === inst.uuid);
      assert.deepEqual(changes.map((c) => c.instance.description), ["committed"]);
    } finally {
      await one.end();
    }
  });

  test("a new action is returned as stored, without a read", async () => {
    const inst = await newServer();
    for (const a of [
      { state: "PENDING" as const, deadline: new Date(Date.now() + 30_000), request: { name: "web" }, traceParent: "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01" },
      {},
    ]) {
      const { result, statements } = await inTx((c) => createAction(c, { instanceUuid: inst.uuid, requestId: `r-${randomUUID()}`, projectId: "p1", action: "create", ...a }));
      assert.ok(!statements.some((s) => /^SELECT/.test(s)), statements.join(" | "));
      assert.deepEqual(result, await getActionById(pool, result.id));
    }
  });
});
