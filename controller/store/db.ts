import mysql from "mysql2/promise";
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from "mysql2/promise";

export type { Pool, PoolConnection };

/** Anything queries can run on: the pool or a connection inside a transaction. */
/** The column type of a creation time: milliseconds, set by the database. */
export const CREATED_NOW = "DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)";

/** A numbered schema change. Applied once, in order, never edited after release. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly statements: readonly string[];
}

export type Queryable = Pick<Pool, "query" | "execute">;

export type Row = RowDataPacket;

/**
 * `?socketPath=/run/mysqld/mysqld.sock`: the server's Unix socket instead of
 * TCP, for a database on the same machine (mysql2's own name for it; host
 * and port are then unused). A socket costs both ends far less CPU per
 * statement than loopback TCP. No other parameter is known.
 */
function socketOf(parsed: URL): { socketPath?: string } {
  const unknown = [...parsed.searchParams.keys()].filter((k) => k !== "socketPath");
  if (unknown.length) throw new Error(`the database URL has an unknown parameter ${JSON.stringify(unknown[0])} (only socketPath is known)`);
  const socketPath = parsed.searchParams.get("socketPath");
  if (socketPath === null) return {};
  if (!socketPath.startsWith("/")) throw new Error(`the database URL's socketPath must be an absolute path (got ${JSON.stringify(socketPath)})`);
  return { socketPath };
}

/** Opens a pool on `url`, creating the database first when it is missing. */
export async function openPool(url: string, opts: { connectionLimit?: number } = {}): Promise<Pool> {
  const parsed = new URL(url);
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  if (!/^[A-Za-z0-9_]{1,64}$/.test(database)) {
    throw new Error(`database name in ${JSON.stringify(url)} must be 1-64 letters, digits or '_'`);
  }
  const base = {
    host: parsed.hostname || "127.0.0.1",
    port: parsed.port ? Number(parsed.port) : 3306,
    user: decodeURIComponent(parsed.username || "root"),
    password: decodeURIComponent(parsed.password || ""),
    ...socketOf(parsed),
  };
  const admin = await mysql.createConnection(base);
  try {
    await admin.query(`CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await admin.end();
  }
  const pool = mysql.createPool({
    ...base,
    database,
    connectionLimit: opts.connectionLimit ?? 16,
    waitForConnections: true,
    enableKeepAlive: true,
    timezone: "Z",
    dateStrings: false,
    supportBigNumbers: true,
    bigNumberStrings: false,
    // No stack captured at every query for the error it might give: that
    // capture cost a tenth of the controller's CPU under load. Errors keep
    // mysql2's own stack and are wrapped where they are handled.
    trace: false,
  });
  // Row locks only on rows that match: a failed conditional claim must not
  // hold the host's row for the rest of the transaction.
  pool.pool.on("connection", (conn) => {
    conn.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    // mysql2 reads and writes DATETIMEs as UTC ("Z"): so must the server's
    // CURRENT_TIMESTAMP/NOW() the SQL compares them with (token expiry,
    // deadlines, retention), whatever the server's own time zone.
    conn.query("SET SESSION time_zone = '+00:00'");
  });
  return pool;
}

/** What one transaction (one attempt of {@link withTx}) keeps beside its connection, until it ends. */
interface TxState {
  /** What ends it in place of a plain COMMIT ({@link commitWith}). */
  committer: { readonly key: string; readonly fn: (conn: PoolConnection) => Promise<void> } | null;
  /** What it changed, told after the commit ({@link noteChange}). */
  readonly changes: Set<Change>;
  /** What runs after the commit ({@link afterCommit}). */
  readonly after: (() => void)[];
  /** {@link txLocal}'s state. */
  readonly locals: Map<symbol, { value: unknown; cache: boolean }>;
  /** Rows inserted at the latest just before the commit ({@link insertLater}), by table, in the order given. */
  readonly deferred: Map<string, { columns: string; rows: unknown[][]; names: RegExp }>;
  /** Savepoints open. */
  savepoints: number;
}

const txs = new WeakMap<object, TxState>();

/**
 * Has `fn` end `conn`'s transaction in place of a plain COMMIT: its last
 * statements and the commit itself, such as a stored procedure that
 * writes and commits in one round trip, so that a lock it takes last is
 * held only inside the server. Registered once per key; one key per
 * transaction. `fn` must commit, or throw (the transaction is then rolled
 * back). Only inside {@link withTx}.
 */
export function commitWith(conn: Queryable, key: string, fn: (conn: PoolConnection) => Promise<void>): void {
  const tx = txs.get(conn);
  if (!tx) throw new Error("commitWith needs a connection inside withTx");
  if (tx.committer && tx.committer.key !== key) throw new Error(`this transaction is already committed by ${tx.committer.key}, not ${key}`);
  tx.committer ??= { key, fn };
}

/** Options of {@link withTx}. */
export interface TxOptions {
  /**
   * Runs `fn` again, up to this many times, when InnoDB rolled the
   * transaction back to break a deadlock (ER_LOCK_DEADLOCK), as MySQL asks
   * applications to (default 0). Only for an `fn` whose every effect is in
   * the transaction, so that running it again is the same as running it once.
   */
  readonly deadlockRetries?: number;
}

/**
 * Deadlock retries for the transactions that apply what agents send
 * (results, reports, progress), which meet the API's and each other's on
 * the same instance and action rows.
 */
export const DEADLOCK_RETRIES = 3;

function isDeadlock(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === "ER_LOCK_DEADLOCK";
}

/** Runs `fn` in a transaction; commits on success, rolls back on error. */
export async function withTx<T>(pool: Pool, fn: (conn: PoolConnection) => Promise<T>, options: TxOptions = {}): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await attemptTx(pool, fn);
    } catch (err) {
      if (!isDeadlock(err) || attempt >= (options.deadlockRetries ?? 0)) throw err;
    }
  }
}

async function attemptTx<T>(pool: Pool, fn: (conn: PoolConnection) => Promise<T>): Promise<T> {
  const asked = performance.now();
  const conn = await pool.getConnection();
  connectionWaitListeners.get(pool)?.((performance.now() - asked) / 1000);
  const tx: TxState = { committer: null, changes: new Set(), after: [], locals: new Map(), deferred: new Map(), savepoints: 0 };
  txs.set(conn, tx);
  let result: T;
  let broken = false;
  try {
    await conn.beginTransaction();
    result = await fn(conn);
    await writeDeferred(conn);
    if (tx.committer) await tx.committer.fn(conn);
    else await conn.commit();
  } catch (err) {
    try {
      await conn.rollback();
    } catch {
      // A connection that cannot roll back is broken: it is closed rather
      // than pooled, and the server rolls its transaction back. The error
      // that matters is the one that ended the transaction.
      broken = true;
    }
    throw err;
  } finally {
    txs.delete(conn);
    if (broken) conn.destroy();
    else conn.release();
  }
  if (tx.changes.size) committedListeners.get(pool)?.(tx.changes);
  for (const fn of tx.after) {
    // What runs after the commit (log lines, metrics) cannot undo it: its failure is reported, and the committed work stands.
    try {
      fn();
    } catch (err) {
      process.emitWarning(err instanceof Error ? err : new Error(String(err)), "AfterCommitWarning");
    }
  }
  return result;
}

/**
 * What a committed write changed, so the controller wakes what depends on
 * it: `outbox` (ops were queued), `servers` (the change log grew),
 * `hosts` (capacity or the hosts themselves changed), `placements`
 * (servers wait for a host).
 */
export type Change = "outbox" | "servers" | "hosts" | "placements";

/**
 * State that lives as long as `q`'s transaction (one attempt of it: a
 * deadlock retry starts afresh), made by `init` on first use; undefined
 * outside {@link withTx}. For what a transaction knows to be true only while
 * it holds its locks, such as the rows it has locked. A `cache` (what the
 * transaction read, which it may read again) is dropped at a rollback to a
 * savepoint, which may undo what it had seen written.
 */
export function txLocal<T>(q: Queryable, key: symbol, init: () => T, o: { cache?: boolean } = {}): T | undefined {
  const locals = txs.get(q)?.locals;
  if (!locals) return undefined;
  let entry = locals.get(key);
  if (!entry) locals.set(key, (entry = { value: init(), cache: o.cache ?? false }));
  return entry.value as T;
}

/** Whether `q`'s transaction is inside a savepoint (what cannot be undone to one must not be done there). */
export function inSavepoint(q: Queryable): boolean {
  return (txs.get(q)?.savepoints ?? 0) > 0;
}
const connectionWaitListeners = new WeakMap<object, (seconds: number) => void>();

/** Calls `listener` with how long each transaction on `pool` waited for its connection. */
export function onConnectionWait(pool: Pool, listener: (seconds: number) => void): void {
  connectionWaitListeners.set(pool, listener);
}

/**
 * Runs `fn` once what `q` wrote is committed: inside {@link withTx} after
 * the commit (never after a rollback, and once per attempt that commits);
 * on the pool itself (autocommit) at once. For what must not be told of a
 * write that may yet be undone, such as the log line of an op sent.
 */
export function afterCommit(q: Queryable, fn: () => void): void {
  const inTx = txs.get(q);
  if (inTx) inTx.after.push(fn);
  else fn();
}
const committedListeners = new WeakMap<object, (changes: ReadonlySet<Change>) => void>();

/** Calls `listener` after each commit on `pool` with what the transaction changed. */
export function onCommitted(pool: Pool, listener: (changes: ReadonlySet<Change>) => void): void {
  committedListeners.set(pool, listener);
}

/**
 * Notes that a write on `q` changed `change`: inside {@link withTx} it is
 * told after the commit (never after a rollback); on the pool itself
 * (autocommit) at once. Store functions call this after their write.
 */
export function noteChange(q: Queryable, change: Change): void {
  const inTx = txs.get(q);
  if (inTx) inTx.changes.add(change);
  else committedListeners.get(q)?.(new Set([change]));
}

export async function select<T = Row>(q: Queryable, sql: string, params: unknown[] = []): Promise<T[]> {
  await writeDeferred(q, sql);
  const [rows] = await q.query<RowDataPacket[]>(sql, params);
  return rows as unknown as T[];
}

export async function exec(q: Queryable, sql: string, params: unknown[] = []): Promise<ResultSetHeader> {
  await writeDeferred(q, sql);
  const [res] = await q.query<ResultSetHeader>(sql, params);
  return res;
}

/** Rows and bytes (roughly) per INSERT when waiting rows are written: well inside max_allowed_packet. */
const DEFERRED_ROWS_PER_INSERT = 500;
const DEFERRED_BYTES_PER_INSERT = 4 << 20;

/** About how many bytes a row takes in an INSERT (a Buffer goes as hex). */
function rowBytes(row: readonly unknown[]): number {
  let n = 0;
  for (const v of row) n += Buffer.isBuffer(v) ? 2 * v.length + 3 : typeof v === "string" ? v.length + 3 : 16;
  return n;
}

/**
 * Inserts a row into `table` (its `columns`, one value each in `row`).
 * Inside {@link withTx} the insert waits, at the latest until just before
 * the commit, and goes with every other row the transaction waits to
 * insert into that table in one statement: a batch of servers placed
 * together writes its ops, outbox messages and events in a few statements,
 * not a few per server. Rows keep the order they were given in (their
 * AUTO_INCREMENT ids follow it); a table takes one list of columns. Any
 * statement of the transaction that names the table, and any savepoint,
 * writes them first, so the transaction always reads its own rows. Only for
 * inserts whose caller needs nothing back (no insert id, no duplicate key
 * to catch): a failure shows when the rows are written, and fails the
 * transaction. Outside a transaction the row is inserted at once.
 */
export async function insertLater(q: Queryable, table: string, columns: readonly string[], row: readonly unknown[]): Promise<void> {
  const cols = columns.join(", ");
  const pending = txs.get(q)?.deferred;
  if (!pending) {
    await exec(q, `INSERT INTO ${table} (${cols}) VALUES ?`, [[row]]);
    return;
  }
  const waiting = pending.get(table);
  if (waiting && waiting.columns !== cols) throw new Error(`rows for ${table} wait with columns (${waiting.columns}), not (${cols})`);
  if (waiting) waiting.rows.push([...row]);
  else pending.set(table, { columns: cols, rows: [[...row]], names: new RegExp(`\\b${table}\\b`) });
}

/** Writes the rows the transaction of `q` waits to insert: those of the tables `sql` names, or all. */
async function writeDeferred(q: Queryable, sql?: string): Promise<void> {
  const pending = txs.get(q)?.deferred;
  if (!pending?.size) return;
  for (const [table, waiting] of pending) {
    if (sql !== undefined && !waiting.names.test(sql)) continue;
    // Rows leave the list only once written: a failed INSERT leaves them waiting, and the commit fails on them again.
    while (waiting.rows.length) {
      let n = 0;
      for (let bytes = 0; n < waiting.rows.length && n < DEFERRED_ROWS_PER_INSERT && (n === 0 || bytes < DEFERRED_BYTES_PER_INSERT); n++) bytes += rowBytes(waiting.rows[n]!);
      await q.query(`INSERT INTO ${table} (${waiting.columns}) VALUES ?`, [waiting.rows.slice(0, n)]);
      waiting.rows.splice(0, n);
    }
    pending.delete(table);
  }
}

/**
 * Savepoints of a transaction, which what it keeps in memory must respect:
 * a savepoint writes the rows waiting to be inserted ({@link insertLater})
 * first, and a rollback to it drops those that waited since, and the
 * transaction's caches ({@link txLocal}). What cannot be undone to a
 * savepoint (the server changes a transaction records) refuses to be done
 * inside one ({@link inSavepoint}).
 */
export async function savepoint(conn: Queryable, name: string): Promise<void> {
  await writeDeferred(conn);
  await conn.query(`SAVEPOINT ${name}`);
  const tx = txs.get(conn);
  if (tx) tx.savepoints++;
}

export async function releaseSavepoint(conn: Queryable, name: string): Promise<void> {
  await conn.query(`RELEASE SAVEPOINT ${name}`);
  const tx = txs.get(conn);
  if (tx) tx.savepoints = Math.max(0, tx.savepoints - 1);
}

export async function rollbackToSavepoint(conn: Queryable, name: string): Promise<void> {
  // Every row waiting now was given after the savepoint, which wrote all that waited before it.
  const tx = txs.get(conn);
  tx?.deferred.clear();
  for (const [key, entry] of tx?.locals ?? []) if (entry.cache) tx!.locals.delete(key);
  await conn.query(`ROLLBACK TO SAVEPOINT ${name}`);
  if (tx) tx.savepoints = Math.max(0, tx.savepoints - 1);
}

/** Parses a JSON column (mysql2 returns MariaDB JSON columns as strings). */
export function json<T>(v: unknown, fallback: T): T {
  if (v === null || v === undefined) return fallback;
  if (typeof v === "string") return v === "" ? fallback : (JSON.parse(v) as T);
  return v as T;
}

export function isDuplicateKey(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === "ER_DUP_ENTRY";
}
