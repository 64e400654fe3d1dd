/**
 * The database URL on the real MariaDB: `?socketPath=` reaches the server
 * over its Unix socket rather than TCP, and a parameter the controller does
 * not know is refused before anything connects.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { after, describe, test } from "node:test";
import mysql from "mysql2/promise";
import { openPool, type Pool } from "../controller/store/db.js";
import { MYSQL_URL } from "./harness.js";

describe("the database URL", () => {
  const db = `nm_test_url_${randomBytes(4).toString("hex")}`;
  let pool: Pool | undefined;

  after(async () => {
    await pool?.end();
    const c = await mysql.createConnection(MYSQL_URL);
    await c.query(`DROP DATABASE IF EXISTS \`${db}\``).finally(() => c.end());
  });

  /** The server's own socket, asked over TCP (null when this machine cannot open it: the server is elsewhere). */
  async function serverSocket(): Promise<string | null> {
    const c = await mysql.createConnection(MYSQL_URL);
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT @@socket AS s");
      const s = rows[0]?.s as string | null;
      return s && existsSync(s) ? s : null;
    } finally {
      await c.end();
    }
  }

  test("socketPath connects over the server's Unix socket, and creates the database", async (t) => {
    const socket = await serverSocket();
    if (!socket) return t.skip("the database server's socket is not on this machine");
    pool = await openPool(`mysql://root@localhost/${db}?socketPath=${encodeURIComponent(socket)}`, { connectionLimit: 1 });
    const [rows] = await pool.query<mysql.RowDataPacket[]>("SELECT host, db FROM information_schema.processlist WHERE id = CONNECTION_ID()");
    // A TCP client's host is its address and port; a socket client's is "localhost".
    assert.deepEqual({ host: rows[0]?.host, db: rows[0]?.db }, { host: "localhost", db });
  });

  test("an unknown parameter and a relative socket path are refused, naming them", async () => {
    await assert.rejects(openPool(`${MYSQL_URL}/${db}?socket=/run/mysqld/mysqld.sock`), /unknown parameter "socket"/);
    await assert.rejects(openPool(`${MYSQL_URL}/${db}?socketPath=mysqld.sock`), /socketPath must be an absolute path/);
  });
});
