/**
 * What a transaction changed is told after it commits, never after it rolls
 * back: the one mechanism by which the controller wakes the outbox,
 * placement, the host view and watchers.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import type { Change, Pool } from "../controller/store/db.js";
import { exec, noteChange, onCommitted, openPool, withTx } from "../controller/store/db.js";
import { MYSQL_URL } from "./harness.js";

describe("change notes after commit", () => {
  const db = `nm_test_notes_${randomBytes(4).toString("hex")}`;
  let pool: Pool;
  const told: { changes: Change[]; rows: number }[] = [];
  const reads: Promise<unknown>[] = [];
  const settle = () => Promise.all(reads.splice(0));

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 2 });
    await pool.query("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB");
    // Each note is told with what a fresh connection sees then: the commit is visible.
    onCommitted(pool, (changes) => {
      const entry = { changes: [...changes].sort(), rows: -1 };
      told.push(entry);
      reads.push(pool.query<mysql.RowDataPacket[]>("SELECT COUNT(*) AS n FROM t").then(([r]) => (entry.rows = Number(r[0]!.n))));
    });
  });
  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  test("a committed transaction's notes are told once, together, after the commit", async () => {
    told.length = 0;
    await withTx(pool, async (conn) => {
      await exec(conn, "INSERT INTO t (id) VALUES (1)");
      noteChange(conn, "outbox");
      noteChange(conn, "servers");
      noteChange(conn, "outbox");
      assert.equal(told.length, 0, "nothing is told before the commit");
    });
    await settle();
    assert.deepEqual(told, [{ changes: ["outbox", "servers"], rows: 1 }]);
  });

  test("a rolled-back transaction's notes are never told", async () => {
    told.length = 0;
    await assert.rejects(
      withTx(pool, async (conn) => {
        await exec(conn, "INSERT INTO t (id) VALUES (2)");
        noteChange(conn, "placements");
        throw new Error("changed my mind");
      }),
      /changed my mind/,
    );
    assert.deepEqual(told, []);
    const [rows] = await pool.query<mysql.RowDataPacket[]>("SELECT id FROM t WHERE id = 2");
    assert.equal(rows.length, 0);
  });

  test("a write on the pool itself (autocommit) is told at once", async () => {
    told.length = 0;
    await exec(pool, "INSERT INTO t (id) VALUES (3)");
    noteChange(pool, "hosts");
    assert.deepEqual(told.map((t) => t.changes), [["hosts"]]);
    await settle();
  });
});
