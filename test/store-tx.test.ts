/**
 * `withTx` on the real MariaDB: a transaction InnoDB picks as a deadlock
 * victim runs again when its caller allows it, and fails as before when not;
 * rows inserted later go in one statement per table, in order, and are seen
 * by the transaction's own reads and undone with it or its savepoints.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import mysql from "mysql2/promise";
import { afterCommit, insertLater, openPool, rollbackToSavepoint, savepoint, select, withTx, type Pool } from "../controller/store/db.js";
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

describe("rows inserted later", () => {
  const db = `nm_test_later_${randomBytes(4).toString("hex")}`;
  let pool: Pool;
  const COLS = ["tag", "n"];

  before(async () => {
    pool = await openPool(`${MYSQL_URL}/${db}`, { connectionLimit: 2 });
    await pool.query("CREATE TABLE later_rows (id BIGINT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(32) NOT NULL, n INT NOT NULL) ENGINE=InnoDB");
  });
  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  const rowsOf = async (tag: string) => (await select<{ id: number; n: number }>(pool, "SELECT id, n FROM later_rows WHERE tag = ? ORDER BY id", [tag])).map((r) => r.n);

  /** Runs `fn` in a transaction, counting the INSERT statements it sends. */
  async function counted(fn: (conn: mysql.PoolConnection) => Promise<void>): Promise<number> {
    let inserts = 0;
    await withTx(pool, async (conn) => {
      const query = conn.query.bind(conn);
      (conn as { query: unknown }).query = (sql: string, ...rest: unknown[]) => {
        if (/^INSERT/.test(sql)) inserts++;
        return (query as (...a: unknown[]) => unknown)(sql, ...rest);
      };
      // Counted until the commit, which writes the rows.
      afterCommit(conn, () => ((conn as { query: unknown }).query = query));
      await fn(conn);
    });
    return inserts;
  }

  test("a transaction's rows go in one statement at commit, in the order given", async () => {
    const inserts = await counted(async (conn) => {
      for (let n = 1; n <= 30; n++) await insertLater(conn, "later_rows", COLS, ["order", n]);
      assert.deepEqual(await rowsOf("order"), [], "nothing is visible before the commit");
    });
    assert.equal(inserts, 1);
    assert.deepEqual(await rowsOf("order"), Array.from({ length: 30 }, (_, i) => i + 1));
  });

  test("a statement naming the table reads the transaction's own rows", async () => {
    await withTx(pool, async (conn) => {
      await insertLater(conn, "later_rows", COLS, ["own", 1]);
      const seen = await select<{ n: number }>(conn, "SELECT n FROM later_rows WHERE tag = 'own'");
      assert.deepEqual(seen.map((r) => r.n), [1]);
      await insertLater(conn, "later_rows", COLS, ["own", 2]);
    });
    assert.deepEqual(await rowsOf("own"), [1, 2]);
  });

  test("a rollback to a savepoint drops the rows given since, and keeps those before", async () => {
    await withTx(pool, async (conn) => {
      await insertLater(conn, "later_rows", COLS, ["sp", 1]);
      await savepoint(conn, "s1");
      await insertLater(conn, "later_rows", COLS, ["sp", 2]);
      await rollbackToSavepoint(conn, "s1");
      await insertLater(conn, "later_rows", COLS, ["sp", 3]);
    });
    assert.deepEqual(await rowsOf("sp"), [1, 3]);
  });

  test("a transaction that fails inserts none of its rows; outside one a row goes in at once", async () => {
    await assert.rejects(
      withTx(pool, async (conn) => {
        await insertLater(conn, "later_rows", COLS, ["undone", 1]);
        throw new Error("undo");
      }),
      /undo/,
    );
    assert.deepEqual(await rowsOf("undone"), []);
    await insertLater(pool, "later_rows", COLS, ["now", 7]);
    assert.deepEqual(await rowsOf("now"), [7]);
  });

  test("a table takes one list of columns in a transaction", async () => {
    await assert.rejects(
      withTx(pool, async (conn) => {
        await insertLater(conn, "later_rows", COLS, ["cols", 1]);
        await insertLater(conn, "later_rows", ["tag"], ["cols"]);
      }),
      /wait with columns \(tag, n\), not \(tag\)/,
    );
    assert.deepEqual(await rowsOf("cols"), []);
  });

  test("rows whose INSERT failed stay waiting: a caller that catches the error cannot commit without them", async () => {
    await pool.query("INSERT INTO later_rows (id, tag, n) VALUES (900001, 'taken', 0)");
    const cols = ["id", "tag", "n"];
    await assert.rejects(
      withTx(pool, async (conn) => {
        await insertLater(conn, "later_rows", cols, [900002, "fails", 1]);
        await insertLater(conn, "later_rows", cols, [900001, "fails", 2]);
        // The read writes the waiting rows first; the duplicate fails it, and the caller swallows that.
        await select(conn, "SELECT COUNT(*) AS n FROM later_rows").catch(() => undefined);
      }),
      (err: { code?: string }) => err.code === "ER_DUP_ENTRY",
    );
    assert.deepEqual(await rowsOf("fails"), []);
  });

  test("a statement naming another table that contains this one's name does not write its rows", async () => {
    await pool.query("CREATE TABLE IF NOT EXISTS other_later_rows (id INT PRIMARY KEY) ENGINE=InnoDB");
    let inserts = 0;
    await withTx(pool, async (conn) => {
      await insertLater(conn, "later_rows", COLS, ["names", 1]);
      const query = conn.query.bind(conn);
      (conn as { query: unknown }).query = (sql: string, ...rest: unknown[]) => {
        if (/^INSERT INTO later_rows/.test(sql)) inserts++;
        return (query as (...a: unknown[]) => unknown)(sql, ...rest);
      };
      afterCommit(conn, () => ((conn as { query: unknown }).query = query));
      await select(conn, "SELECT COUNT(*) AS n FROM other_later_rows");
      assert.equal(inserts, 0, "not written for other_later_rows");
      await select(conn, "SELECT COUNT(*) AS n FROM later_rows");
      assert.equal(inserts, 1, "written for later_rows");
    });
    assert.deepEqual(await rowsOf("names"), [1]);
  });
});
