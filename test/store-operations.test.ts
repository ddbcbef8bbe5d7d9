/**
 * The operation driver (server/src/store/operations/operation.ts): one generator of statements
 * runs on the synchronous driver (SQLite) and the asynchronous one (MySQL) alike, and the MySQL
 * transaction that pipelines them (server/src/store/mysql/pipelined-transaction.ts). The
 * operations themselves are held to the store conformance suite on both dialects; this pins the
 * driver.
 */
import test from "ava";
import mysql from "mysql2";
import { MysqlDialect } from "../server/dist/store/mysql/mysql-dialect.js";
import { PipelinedTransaction, type QueryConnection } from "../server/dist/store/mysql/pipelined-transaction.js";
import {
  type AsyncExecutor,
  type Operation,
  type Param,
  lastTogether,
  rows,
  rowsAndRows,
  run,
  runAsync,
  runSync,
  type Statement,
  type SyncExecutor,
  write,
} from "../server/dist/store/operations/operation.js";
import { complete } from "../server/dist/store/operations/complete.js";
import { NewKeyExpectations, refresh } from "../server/dist/store/operations/refresh.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";

/** Reads, then writes depending on what it read (counting, then not), then answers both results. */
function* readThenWrite(): Operation<{ read: unknown[]; changed: number }> {
  const read = yield* rows<{ id: number }>({ sql: "SELECT id FROM t", params: [] });
  const changed = read.length === 0 ? 0 : yield* run({ sql: "UPDATE t SET x = ? WHERE id = ?", params: [1, 10, 2, 20], perRow: 2 });
  yield* write({ sql: "INSERT INTO log (n) VALUES (?)", params: [changed] });
  return { read, changed };
}

const describe = (kind: string, s: Statement) => `${kind} ${s.sql} [${s.params.join(",")}]${s.perRow === undefined ? "" : ` per ${s.perRow}`}`;

test("runSync and runAsync run each statement once, in order, and hand its result back to the operation", async (t) => {
  const syncLog: string[] = [];
  const sync: SyncExecutor = {
    rows: (s) => {
      syncLog.push(describe("rows", s));
      return [{ id: 1 }];
    },
    run: (s) => {
      syncLog.push(describe("run", s));
      return 2;
    },
  };
  const asyncLog: string[] = [];
  const async: AsyncExecutor = {
    rows: async (s) => {
      asyncLog.push(describe("rows", s));
      return [{ id: 1 }];
    },
    run: async (s) => {
      asyncLog.push(describe("run", s));
      return 2;
    },
    write: async (s) => {
      asyncLog.push(describe("run", s));
    },
  };
  const expected = { read: [{ id: 1 }], changed: 2 };
  t.deepEqual(runSync(readThenWrite(), sync), expected);
  t.deepEqual(await runAsync(readThenWrite(), async), expected);
  t.deepEqual(syncLog, ["rows SELECT id FROM t []", "run UPDATE t SET x = ? WHERE id = ? [1,10,2,20] per 2", "run INSERT INTO log (n) VALUES (?) [2]"]);
  t.deepEqual(asyncLog, syncLog);
});

test("a statement's error leaves the operation at that statement: nothing after it runs", async (t) => {
  const ran: string[] = [];
  const failing: AsyncExecutor = {
    rows: async () => {
      throw new Error("lost connection");
    },
    run: async (s) => {
      ran.push(s.sql);
      return 1;
    },
    write: async (s) => {
      ran.push(s.sql);
    },
  };
  await t.throwsAsync(runAsync(readThenWrite(), failing), { message: "lost connection" });
  t.deepEqual(ran, []);
});

/** A connection that records each query it is sent and answers as a MySQL server would (one result, or one per statement). */
function recordingConnection(sent: { sql: string; values: Param[] }[]): QueryConnection {
  return {
    query(options, callback) {
      sent.push(options);
      const answers = options.sql.split(";\n").map((s) => (s.startsWith("SELECT") ? [{ id: 1 }] : { affectedRows: 2 }));
      setImmediate(() => callback(null, answers.length === 1 ? answers[0] : answers));
    },
  };
}

test("a pipelined transaction reads alone until it first writes, then sends START TRANSACTION with that statement and each write with the next statement or COMMIT", async (t) => {
  const sent: { sql: string; values: Param[] }[] = [];
  const transaction = new PipelinedTransaction(recordingConnection(sent));
  t.deepEqual(await runAsync(readThenWrite(), transaction), { read: [{ id: 1 }], changed: 4 });
  await transaction.commit();
  t.deepEqual(sent, [
    // A plain read reads the same at READ COMMITTED in autocommit as inside a transaction.
    { sql: "SELECT id FROM t", values: [] },
    // A per-row statement runs row by row, each run a round trip of its own.
    { sql: "START TRANSACTION;\nUPDATE t SET x = ? WHERE id = ?", values: [1, 10] },
    { sql: "UPDATE t SET x = ? WHERE id = ?", values: [2, 20] },
    { sql: "INSERT INTO log (n) VALUES (?);\nCOMMIT", values: [4] },
  ]);

  const writesOnly: { sql: string; values: Param[] }[] = [];
  const quiet = new PipelinedTransaction(recordingConnection(writesOnly));
  await runAsync(write({ sql: "DELETE FROM t WHERE id = ?", params: [7] }), quiet);
  await runAsync(write({ sql: "UPDATE t SET x = ? WHERE id = ?", params: [1, 10, 2, 20], perRow: 2 }), quiet);
  t.deepEqual(writesOnly, [], "a write waits, a per-row one too");
  await quiet.commit();
  t.deepEqual(writesOnly, [
    {
      sql: "START TRANSACTION;\nDELETE FROM t WHERE id = ?;\nUPDATE t SET x = ? WHERE id = ?;\nUPDATE t SET x = ? WHERE id = ?;\nCOMMIT",
      values: [7, 1, 10, 2, 20],
    },
  ]);
});

test("a pipelined transaction that only reads never begins and sends no COMMIT; a locking read begins it", async (t) => {
  const sent: { sql: string; values: Param[] }[] = [];
  const readOnly = new PipelinedTransaction(recordingConnection(sent));
  await runAsync(rows({ sql: "SELECT id FROM t WHERE x = ?", params: [1] }), readOnly);
  await runAsync(rows({ sql: "  select 1 AS x FROM t LIMIT 1", params: [] }), readOnly);
  await readOnly.commit();
  t.deepEqual(sent, [
    { sql: "SELECT id FROM t WHERE x = ?", values: [1] },
    { sql: "  select 1 AS x FROM t LIMIT 1", values: [] },
  ]);

  for (const locking of ["SELECT id FROM t FOR UPDATE", "SELECT id FROM t ORDER BY id LIMIT 2 FOR UPDATE SKIP LOCKED", "SELECT id FROM t LOCK IN SHARE MODE"]) {
    const lockingSent: { sql: string; values: Param[] }[] = [];
    const locks = new PipelinedTransaction(recordingConnection(lockingSent));
    await runAsync(rows({ sql: locking, params: [] }), locks);
    await locks.commit();
    t.deepEqual(
      lockingSent.map((q) => q.sql),
      [`START TRANSACTION;\n${locking}`, "COMMIT"],
      locking,
    );
  }
  // A statement that reads rows but writes (MariaDB's DELETE ... RETURNING) begins it too.
  const deleting: { sql: string; values: Param[] }[] = [];
  const deletes = new PipelinedTransaction(recordingConnection(deleting));
  await runAsync(rows({ sql: "DELETE FROM t WHERE id = 1 RETURNING id", params: [] }), deletes);
  await deletes.commit();
  t.deepEqual(
    deleting.map((q) => q.sql),
    ["START TRANSACTION;\nDELETE FROM t WHERE id = 1 RETURNING id", "COMMIT"],
  );
});

test("lastTogether sends the held writes, its statements and COMMIT in one round trip; rowsAndRows its two reads; both run in order on SQLite's driver", async (t) => {
  function* readInsertAndLog(): Operation<{ found: unknown[]; inserted: number }> {
    yield* write({ sql: "DELETE FROM t WHERE id = ?", params: [4] });
    const [found, inserted] = (yield* lastTogether(
      { kind: "rows", statement: { sql: "SELECT id FROM t", params: [] } },
      { kind: "run", statement: { sql: "INSERT INTO t (id) VALUES (?)", params: [3] } },
      { kind: "run", statement: { sql: "INSERT INTO log (n) SELECT ROW_COUNT()", params: [] } },
    )) as [unknown[], number, number];
    return { found, inserted };
  }
  const sent: { sql: string; values: Param[] }[] = [];
  const transaction = new PipelinedTransaction(recordingConnection(sent));
  t.deepEqual(await runAsync(readInsertAndLog(), transaction), { found: [{ id: 1 }], inserted: 2 });
  await transaction.commit();
  t.deepEqual(
    sent,
    [
      {
        sql: "START TRANSACTION;\nDELETE FROM t WHERE id = ?;\nSELECT id FROM t;\nINSERT INTO t (id) VALUES (?);\nINSERT INTO log (n) SELECT ROW_COUNT();\nCOMMIT",
        values: [4, 3],
      },
    ],
    "commit() after it sends nothing more",
  );

  // An operation must end with its last statements: its commit has gone with them.
  function* goesOn(): Operation<void> {
    yield* lastTogether({ kind: "run", statement: { sql: "DELETE FROM t", params: [] } });
    yield* run({ sql: "DELETE FROM u", params: [] });
  }
  const afterLast: { sql: string; values: Param[] }[] = [];
  await t.throwsAsync(runAsync(goesOn(), new PipelinedTransaction(recordingConnection(afterLast))), { message: /went on after its last statements/ });
  t.deepEqual(
    afterLast.map((q) => q.sql),
    ["START TRANSACTION;\nDELETE FROM t;\nCOMMIT"],
    "the statement after it is never sent",
  );
  t.throws(() => runSync(goesOn(), { rows: () => [], run: () => 1 }), { message: /went on after its last statements/ });

  // Two plain reads together need no transaction; a locking one begins it.
  const reads: { sql: string; values: Param[] }[] = [];
  const reading = new PipelinedTransaction(recordingConnection(reads));
  t.deepEqual(await runAsync(rowsAndRows({ sql: "SELECT a FROM t", params: [] }, { sql: "SELECT b FROM u WHERE c = ?", params: [5] }), reading), [
    [{ id: 1 }],
    [{ id: 1 }],
  ]);
  await runAsync(rowsAndRows({ sql: "SELECT a FROM t FOR UPDATE", params: [] }, { sql: "SELECT b FROM u", params: [] }), reading);
  await reading.commit();
  t.deepEqual(
    reads.map((q) => q.sql),
    ["SELECT a FROM t;\nSELECT b FROM u WHERE c = ?", "START TRANSACTION;\nSELECT a FROM t FOR UPDATE;\nSELECT b FROM u", "COMMIT"],
  );

  const order: string[] = [];
  const sync: SyncExecutor = {
    rows: (s) => {
      order.push(s.sql);
      return [{ id: 9 }];
    },
    run: (s) => {
      order.push(s.sql);
      return 1;
    },
  };
  t.deepEqual(runSync(readInsertAndLog(), sync), { found: [{ id: 9 }], inserted: 1 });
  t.deepEqual(order, ["DELETE FROM t WHERE id = ?", "SELECT id FROM t", "INSERT INTO t (id) VALUES (?)", "INSERT INTO log (n) SELECT ROW_COUNT()"]);
});

const mysqlTest = testDialects().includes("mysql") ? test : test.skip;

/** A connection to a database of its own on the tests' MariaDB, and a query on it, for `fn`; all dropped after. */
async function onMariaDb(fn: (connection: QueryConnection, query: (sql: string) => Promise<unknown>) => Promise<void>): Promise<void> {
  const db = await createTestDatabase("mysql");
  const pool = mysql.createPool({ uri: db.url, multipleStatements: true, connectionLimit: 1 });
  const connection = await new Promise<mysql.PoolConnection>((resolve, reject) => pool.getConnection((err, c) => (err ? reject(err) : resolve(c))));
  const query = (sql: string) => new Promise<unknown>((resolve, reject) => connection.query(sql, (err, results) => (err ? reject(err) : resolve(results))));
  try {
    await fn(connection as unknown as QueryConnection, query);
  } finally {
    connection.release();
    await new Promise((resolve) => pool.end(resolve));
    await db.drop();
  }
}

for (const compound of [false, true]) {
  mysqlTest(
    `on MariaDB, a pipelined transaction${compound ? " of compound statements" : ""} whose held write fails rolls back every statement before it, and one that commits keeps them`,
    async (t) => {
      await onMariaDb(async (connection, query) => {
        await query("CREATE TABLE t (id INT PRIMARY KEY, x INT NOT NULL)");
        await query("INSERT INTO t VALUES (1, 0)");
        function* bump(insertId: number): Operation<number> {
          const changed = yield* run({ sql: "UPDATE t SET x = x + 1 WHERE id = ?", params: [1] });
          yield* write({ sql: "INSERT INTO t VALUES (?, 0)", params: [insertId] });
          return changed;
        }
        const failing = new PipelinedTransaction(connection, { compound });
        t.is(await runAsync(bump(1), failing), 1, "the UPDATE's count is answered at once");
        const err = await t.throwsAsync(failing.commit());
        t.is((err as { errno?: number }).errno, 1062, "the held INSERT's duplicate key surfaces at commit, with its errno");
        await failing.rollback();
        t.deepEqual(await query("SELECT id, x FROM t ORDER BY id"), [{ id: 1, x: 0 }], "the UPDATE before it was rolled back");

        const committing = new PipelinedTransaction(connection, { compound });
        t.is(await runAsync(bump(2), committing), 1);
        await committing.commit();
        t.deepEqual(await query("SELECT id, x FROM t ORDER BY id"), [
          { id: 1, x: 1 },
          { id: 2, x: 0 },
        ]);
      });
    },
  );
}

test("a worker's keyless refresh answers from its one state read, stages nothing on an old table, and reads pending again after a statement that may have waited on a lock", (t) => {
  const d = new MysqlDialect(true);
  const input = (orphanTimeoutMs: number | null) => ({
    table: "T",
    displayName: "T",
    keyAttributes: null,
    keyHash: "ordered" as const,
    keys: [],
    refreshId: null,
    final: true,
    priority: 5,
    delayMs: 0,
    staleTimeoutMs: 1000,
    orphanTimeoutMs,
    now: 1_000_000,
  });
  /** A table whose oldest job is far older than the stale cutoff, with none pending and none success. */
  const scripted = (log: string[]): SyncExecutor => ({
    rows: (s) => {
      log.push(s.sql);
      if (s.sql.includes("AS oldest")) return [{ oldest: 1, any_success: null, any_pending: null }];
      if (s.sql.includes("status = 'pending'")) return [{ x: 1 }];
      return [];
    },
    run: (s) => {
      log.push(s.sql);
      return 0;
    },
  });
  const idle: string[] = [];
  const passed = runSync(refresh(d, input(null), "s", { maxLostAttempts: 3 }, new NewKeyExpectations()), scripted(idle));
  t.is(idle.length, 1, `one statement: ${idle.join(" | ")}`);
  t.deepEqual(passed, { counts: { added: 0, removed: 0, orphaned: 0, rePended: 0, anyPending: false }, dropStaging: false });

  // The orphan reset locks rows after the state read: a job released meanwhile is pending now.
  const orphans: string[] = [];
  const reset = runSync(refresh(d, input(60_000), "s", { maxLostAttempts: 3 }, new NewKeyExpectations()), scripted(orphans));
  t.is(reset.counts.anyPending, true, "pending read again after the orphan reset");
  t.true(orphans.some((q) => q.includes("status = 'reserved'") && q.includes("FOR UPDATE")));
  t.false(reset.dropStaging);
});

/** The statements of a MariaDB round trip: those of its BEGIN NOT ATOMIC ... END block. */
function blockStatements(sql: string): string[] {
  const inner = /^BEGIN NOT ATOMIC\n([\s\S]*);\nEND$/.exec(sql);
  if (inner === null) throw new Error(`not a compound statement: ${sql}`);
  return (inner[1] as string).split(";\n");
}

/**
 * A connection that answers compound statements as MariaDB does: the result set of each read (by
 * `rowsOf`), none for a SELECT ... INTO or a write, then the block's OK; the OK alone when there is
 * no result set.
 */
function compoundConnection(sent: { sql: string; values: Param[] }[], rowsOf: (statement: string) => unknown[] | undefined): QueryConnection {
  return {
    query(options, callback) {
      sent.push(options);
      const sets = blockStatements(options.sql).flatMap((s) => {
        const counts = /^SELECT (@populus_n\d+(?:, @populus_n\d+)*)$/.exec(s);
        if (counts !== null) return [[Object.fromEntries((counts[1] as string).split(", ").map((name) => [name, 2]))]];
        const found = rowsOf(s);
        return found === undefined ? [] : [found];
      });
      const ok = { affectedRows: 0 };
      setImmediate(() => callback(null, sets.length === 0 ? ok : [...sets, ok]));
    },
  };
}

test("on MariaDB a Complete is two round trips, each one compound statement: the read of its leases' holders and the delete that reads its jobs, then the target rows, the change log (counting them in SQL) and COMMIT", async (t) => {
  const sent: { sql: string; values: Param[] }[] = [];
  const tokens = ["p-1", "p-2"];
  const connection = compoundConnection(sent, (s) =>
    /^DELETE .* RETURNING/s.test(s)
      ? tokens.map((_, i) => ({ id: i + 1, key_hash: `h${i}`, key_json: `{"id":"${i}"}`, lease_batch: "p" }))
      : /^SELECT batch, worker_id/.test(s)
        ? [{ batch: "p", worker_id: "w", host: "h", pid: 1, user: "u", code_version: "v" }]
        : undefined,
  );
  const transaction = new PipelinedTransaction(connection, { compound: true });
  const completions = tokens.map((leaseToken) => ({ leaseToken, resultJson: "{}" }));
  t.deepEqual(await runAsync(complete(new MysqlDialect(true), "T", completions, false, 5), transaction), { committed: 2, alreadyCommitted: 0 });
  await transaction.commit();
  t.is(sent.length, 2, sent.map((q) => q.sql).join("\n---\n"));
  const [deleting, committing] = sent.map((q) => blockStatements(q.sql));
  t.deepEqual(
    deleting?.map((s) => s.split(" ")[0]),
    ["START", "SELECT", "DELETE"],
  );
  t.deepEqual(
    committing?.map((s) => s.split(" ")[0]),
    ["INSERT", "SELECT", "INSERT", "COMMIT"],
  );
  t.is(committing?.[1], "SELECT ROW_COUNT() INTO @populus_rc", "the insert's count is kept for the statement after it");
  t.regex(
    committing?.[2] ?? "",
    /JSON_SET\('\{[^']*\}', '\$\.target', CAST\(@populus_rc AS SIGNED\)\)/,
    "the change log's target count is the rows the insert before it wrote",
  );
  t.deepEqual(
    sent.map((q) => q.values),
    [[], []],
    "every value is a literal in the text: mysql2 has no placeholder to look for",
  );
});

test("a compound round trip answers each read's rows and each counted write's count, keeps a write's count for a statement that reads it in SQL, and refuses such a statement without its write", async (t) => {
  const sent: { sql: string; values: Param[] }[] = [];
  const transaction = new PipelinedTransaction(
    compoundConnection(sent, (s) => (s.startsWith("SELECT id") ? [{ id: 1 }] : undefined)),
    { compound: true },
  );
  function* steps(): Operation<unknown[]> {
    yield* write({ sql: "DELETE FROM t WHERE id = ?", params: [4] });
    return yield* lastTogether(
      { kind: "rows", statement: { sql: "SELECT id FROM t FOR UPDATE", params: [] } },
      { kind: "run", statement: { sql: "UPDATE t SET x = ?", params: [1] } },
      { kind: "run", statement: { sql: "INSERT INTO log (n) SELECT @populus_rc", params: [], readsPreviousCount: true } },
    );
  }
  t.deepEqual(await runAsync(steps(), transaction), [[{ id: 1 }], 2, 2]);
  await transaction.commit();
  t.deepEqual(sent, [
    {
      sql: [
        "BEGIN NOT ATOMIC",
        "START TRANSACTION;",
        "DELETE FROM t WHERE id = ?;",
        "SELECT id FROM t FOR UPDATE;",
        "UPDATE t SET x = ?;",
        "SELECT ROW_COUNT(), ROW_COUNT() INTO @populus_n0, @populus_rc;",
        "INSERT INTO log (n) SELECT @populus_rc;",
        "SELECT ROW_COUNT() INTO @populus_n1;",
        "COMMIT;",
        "SELECT @populus_n0, @populus_n1;",
        "END",
      ].join("\n"),
      values: [4, 1],
    },
  ]);

  // Its write went in an earlier round trip: @populus_rc would be some other write's count.
  const orphan = new PipelinedTransaction(
    compoundConnection([], () => undefined),
    { compound: true },
  );
  await runAsync(run({ sql: "UPDATE t SET x = 1", params: [] }), orphan);
  await t.throwsAsync(runAsync(run({ sql: "INSERT INTO log (n) SELECT @populus_rc", params: [], readsPreviousCount: true }), orphan), {
    message: /must go in that write's round trip/,
  });

  // The variable's name in a value (a key, a result) is text, not a read of a count.
  const valueSent: { sql: string; values: Param[] }[] = [];
  const values = new PipelinedTransaction(
    compoundConnection(valueSent, () => undefined),
    { compound: true },
  );
  await runAsync(write({ sql: 'INSERT INTO target (result_json) VALUES (\'{"a":"@populus_rc"}\')', params: [] }), values);
  await values.commit();
  t.deepEqual(blockStatements(valueSent[0]?.sql ?? ""), ["START TRANSACTION", 'INSERT INTO target (result_json) VALUES (\'{"a":"@populus_rc"}\')', "COMMIT"]);
});

mysqlTest("on MariaDB, a compound round trip reads rows, counts each write, and hands the count of a write to the statement after it", async (t) => {
  await onMariaDb(async (connection, query) => {
    await query("CREATE TABLE t (id INT PRIMARY KEY, x INT NOT NULL)");
    await query("CREATE TABLE log (n INT NOT NULL)");
    await query("INSERT INTO t VALUES (1, 0), (2, 0), (3, 5)");
    const d = new MysqlDialect(true);
    function* steps(): Operation<unknown[]> {
      const [zero] = yield* rowsAndRows<{ id: number }, never>(
        { sql: "SELECT id FROM t WHERE x = ? ORDER BY id FOR UPDATE", params: [0] },
        { sql: "SELECT id FROM t WHERE id > 9", params: [] },
      );
      // A write whose count the statement after it logs in SQL, as the change log does.
      yield* write({ sql: "UPDATE t SET x = x + 1 WHERE x = 0", params: [] });
      yield* write({ sql: `INSERT INTO log (n) VALUES (${d.previousRowCount})`, params: [], readsPreviousCount: true });
      return [
        zero,
        ...(yield* lastTogether(
          { kind: "run", statement: { sql: "DELETE FROM t WHERE x = ?", params: [5] } },
          { kind: "rows", statement: { sql: "SELECT n FROM log", params: [] } },
        )),
      ];
    }
    const transaction = new PipelinedTransaction(connection, { compound: true });
    t.deepEqual(await runAsync(steps(), transaction), [[{ id: 1 }, { id: 2 }], 1, [{ n: 2 }]]);
    await transaction.commit();
    t.deepEqual(await query("SELECT id, x FROM t ORDER BY id"), [
      { id: 1, x: 1 },
      { id: 2, x: 1 },
    ]);
    t.deepEqual(await query("SELECT @@in_transaction AS open"), [{ open: 0 }], "committed with the last statements");
  });
});
