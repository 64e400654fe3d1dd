/**
 * `withTx` on the real MariaDB: a transaction InnoDB picks as a deadlock
 * victim runs again when its caller allows it, and fails as before when not.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import { openPool, withTx, type Pool } from "../controller/store/db.js";
import { MYSQL_URL } from "./harness.js";

describe("withTx and deadlocks", () => {
  const db = `nm_test_tx_${randomBytes(4).toString("hex")}`;
  let pool: Pool;

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 2 });
    await pool.query("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB");
    await pool.query("INSERT INTO t (id, v) VALUES ?", [Array.from({ length: 100 }, (_, i) => [i + 1, 0])]);
  });
  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  /**
   * Runs `fn` as the light side of a deadlock: a heavier transaction holds
   * rows 2..100 and then wants row 1, which `fn` takes before it wants row
   * 2; InnoDB rolls back the lighter one, `fn`'s. Resolves what withTx did.
   */
  async function deadlocked(deadlockRetries: number): Promise<{ result: unknown; attempts: number }> {
    const heavy = await mysql.createConnection(`${MYSQL_URL}/${db}`);
    let attempts = 0;
    let tookRow1!: () => void;
    const row1 = new Promise<void>((r) => (tookRow1 = r));
    try {
      await heavy.beginTransaction();
      await heavy.query("UPDATE t SET v = v + 1 WHERE id >= 2");
      const light = withTx(
        pool,
        async (conn) => {
          attempts++;
          await conn.query("UPDATE t SET v = v + 10 WHERE id = 1");
          tookRow1();
          await conn.query("UPDATE t SET v = v + 10 WHERE id = 2");
          return "committed";
        },
        { deadlockRetries },
      ).then(
        (result) => ({ result, attempts }),
        (err: unknown) => ({ result: err, attempts }),
      );
      await row1;
      // Let the light transaction block on row 2 before closing the cycle.
      await new Promise((r) => setTimeout(r, 200));
      await heavy.query("UPDATE t SET v = v + 1 WHERE id = 1");
      await heavy.commit();
      return await light;
    } finally {
      await heavy.end();
    }
  }

  test("with retries, the victim runs again and commits", async () => {
    const { result, attempts } = await deadlocked(3);
    assert.equal(result, "committed");
    assert.equal(attempts, 2, "rolled back once, then run again");
    const [rows] = await pool.query<mysql.RowDataPacket[]>("SELECT id, v FROM t WHERE id IN (1, 2) ORDER BY id");
    assert.deepEqual(rows.map((r) => [r.id, r.v]), [[1, 11], [2, 11]], "both transactions' updates, each once");
  });

  test("without retries, the deadlock is the caller's error", async () => {
    const { result, attempts } = await deadlocked(0);
    assert.equal(attempts, 1);
    assert.equal((result as { code?: string }).code, "ER_LOCK_DEADLOCK");
  });
});
