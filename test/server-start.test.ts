/**
 * The server on its own: it starts on each database, migrates it, restarts on
 * it without migrating twice or losing data, starts on the embedded default
 * with no configuration, survives several servers migrating one fresh
 * database at once, and drains on SIGTERM with exit code 0.
 *
 * Migrations are checked by reading the database directly (better-sqlite3,
 * mysql2), not through the server.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import BetterSqlite3 from "better-sqlite3";
import mysql from "mysql2/promise";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { gaugeValue } from "./helpers/prometheus.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";
import { until } from "./helpers/jobs-client.js";

/** The migrations so far, as TypeORM records them in `~populus_migrations`. */
const MIGRATIONS = [
  "Initial0000000000001",
  "ChangeLog0000000000002",
  "ReserveRequests0000000000003",
  "KeyHashScheme0000000000004",
  "LeaseRows0000000000005",
  "RefreshClaims0000000000006",
  "ClaimsMadeDue0000000000007",
];

const databases: TestDatabase[] = [];
const servers: ServerProcess[] = [];
const tempDirs: string[] = [];

async function database(dialect: Dialect): Promise<TestDatabase> {
  const db = await createTestDatabase(dialect);
  databases.push(db);
  return db;
}

async function server(database: string | undefined, options: { cwd?: string } = {}): Promise<ServerProcess> {
  // Without --database the server falls back to POPULUS_DATABASE_URL: unset it so the default is what runs.
  const s = await startServer({ database, cwd: options.cwd, env: { POPULUS_DATABASE_URL: undefined } });
  servers.push(s);
  return s;
}

test.after.always(async () => {
  // Servers a failed test left running: killed, so that the databases can be dropped.
  await Promise.all(servers.map((s) => s.kill()));
  await Promise.all(databases.map((db) => db.drop()));
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Migration names recorded in the database, in the order they ran, read directly. */
async function migrationRows(url: string): Promise<string[]> {
  return (await sqlOn(url, [['SELECT name FROM "~populus_migrations" ORDER BY "timestamp"', []]])).map((r) => r.name as string);
}

/** Runs statements on the database directly, in order; answers the rows of the last. */
async function sqlOn(url: string, statements: readonly [string, unknown[]][]): Promise<Record<string, unknown>[]> {
  let last: Record<string, unknown>[] = [];
  if (url.startsWith("sqlite:")) {
    const file = new BetterSqlite3(url.slice("sqlite:".length), { fileMustExist: true });
    try {
      for (const [sql, params] of statements) {
        const statement = file.prepare(sql);
        if (statement.reader) last = statement.all(...params) as Record<string, unknown>[];
        else {
          statement.run(...params);
          last = [];
        }
      }
      return last;
    } finally {
      file.close();
    }
  }
  const c = await mysql.createConnection({ uri: url });
  try {
    for (const [sql, params] of statements) {
      const [rows] = await c.query(sql.replaceAll('"', "`"), params);
      last = Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
    }
    return last;
  } finally {
    await c.end();
  }
}

/** Tables in the database, read directly. */
async function tableNames(url: string): Promise<string[]> {
  if (url.startsWith("sqlite:")) {
    if (!existsSync(url.slice("sqlite:".length))) return [];
    const file = new BetterSqlite3(url.slice("sqlite:".length), { readonly: true, fileMustExist: true });
    try {
      return (file.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    } finally {
      file.close();
    }
  }
  const c = await mysql.createConnection({ uri: url });
  try {
    const [rows] = await c.query("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY table_name");
    return (rows as { name: string }[]).map((r) => r.name);
  } finally {
    await c.end();
  }
}

/**
 * A unary RPC as Connect JSON over a fresh HTTP/1.1 connection that closes
 * after the answer (curl's way): an idle keep-alive connection would hold up
 * the server's SIGTERM drain (see the keep-alive test at the end).
 */
function rpc(s: ServerProcess, method: string, body: unknown): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = http.request(
      `${s.url}/populus.v1.JobService/${method}`,
      { method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), connection: "close" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as unknown });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

const KEYS = [1, 2, 3].map((id) => ({ attributes: { subject_id: { intValue: String(id) } } }));

/** The server's populus_reserve_waiting gauge, from /metrics. */
function reservesWaiting(s: ServerProcess): Promise<number> {
  return gaugeValue(s.url, "populus_reserve_waiting");
}

function logged(s: ServerProcess, msg: string): Record<string, unknown> | undefined {
  return s.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === msg);
}

const startsMigratesAndRestarts = test.macro({
  title: (_, dialect: Dialect) => `${dialect}: starts on a fresh database, migrates it, and restarts on it idempotently`,
  async exec(t, dialect: Dialect) {
    const db = await database(dialect);
    t.deepEqual(await tableNames(db.url), [], "the database starts empty");

    const first = await server(db.url);
    t.is(logged(first, "database ready, migrations applied")?.dialect, dialect);
    t.deepEqual(await migrationRows(db.url), MIGRATIONS);
    t.true((await tableNames(db.url)).includes("~populus_tables"), "the migration created the table registry");

    t.deepEqual(await rpc(first, "Refresh", { table: "ProcessedData", keys: KEYS }), { status: 200, json: { added: "3", anyPending: true } });
    t.is(await first.stop(), 0, "SIGTERM: exit 0");

    const second = await server(db.url);
    t.deepEqual(await migrationRows(db.url), MIGRATIONS, "a restart runs no migration twice");
    t.deepEqual(
      await rpc(second, "GetProgress", { table: "ProcessedData" }),
      { status: 200, json: { progress: { table: "processed_data", pending: "3", remaining: "3" } } },
      "the jobs written before the restart are there",
    );
    t.deepEqual(await rpc(second, "Refresh", { table: "ProcessedData", keys: KEYS }), { status: 200, json: { anyPending: true } }, "nothing is added twice");
    t.is(await second.stop(), 0);
  },
});

const refreshCallsAtOnce = test.macro({
  title: (_, dialect: Dialect) =>
    `${dialect}: a refresh's calls before its final one are told how many calls the store writes side by side (${dialect === "mysql" ? "3, fewer with a smaller pool" : 2}); a final call and a refresh of one call are not`,
  async exec(t, dialect: Dialect) {
    const s = await server((await database(dialect)).url);
    const refreshId = "calls-at-once-test";
    const call = (body: Record<string, unknown>) => rpc(s, "Refresh", { table: "ProcessedData", keys: KEYS, ...body });
    t.deepEqual(await call({ refreshId, final: false }), { status: 200, json: { added: "3", callsAtOnce: dialect === "mysql" ? 3 : 2 } });
    t.deepEqual(await call({ refreshId, final: true }), { status: 200, json: { anyPending: true } });
    t.deepEqual(await call({}), { status: 200, json: { anyPending: true } });
    t.is(await s.stop(), 0);
    if (dialect === "mysql") {
      // No more calls than the pool has connections: a third would only wait for one.
      const small = await startServer({ database: (await database(dialect)).url, args: ["--db-pool-size", "2"] });
      servers.push(small);
      t.deepEqual(await rpc(small, "Refresh", { table: "ProcessedData", keys: KEYS, refreshId, final: false }), {
        status: 200,
        json: { added: "3", callsAtOnce: 2 },
      });
      t.is(await small.stop(), 0);
    }
  },
});

const concurrentMigrations = test.macro({
  title: (_, dialect: Dialect, n: number) => `${dialect}: ${n} servers migrating one fresh database at the same moment all start; the migration runs once`,
  async exec(t, dialect: Dialect, n: number) {
    const db = await database(dialect);
    const started = await Promise.all(Array.from({ length: n }, () => server(db.url)));
    t.deepEqual(await migrationRows(db.url), MIGRATIONS);
    // Each of them serves on the migrated schema; the first refresh declares the table, the others see it.
    const added = await Promise.all(started.map((s, i) => rpc(s, "Refresh", { table: "Shared", keys: [KEYS[i % KEYS.length]] })));
    for (const r of added) t.is(r.status, 200, JSON.stringify(r.json));
    t.deepEqual((await rpc(started[0] as ServerProcess, "GetProgress", { table: "Shared" })).json, {
      progress: { table: "shared", pending: String(Math.min(n, KEYS.length)), remaining: String(Math.min(n, KEYS.length)) },
    });
    t.deepEqual(
      await Promise.all(started.map((s) => s.stop())),
      started.map(() => 0),
    );
  },
});

const sha256Hash = (json: string) => createHash("sha256").update(json, "utf8").digest("hex").slice(0, 32);

const upgradeKeepsKeyHashes = test.macro({
  title: (_, dialect: Dialect) =>
    `${dialect}: a table declared before migration 0004 keeps its SHA-256 key hashes after the upgrade; tables declared after it hash in key order`,
  async exec(t, dialect: Dialect) {
    const db = await database(dialect);
    const first = await server(db.url);
    t.is((await rpc(first, "Refresh", { table: "Before", keys: KEYS })).status, 200);
    const reserved = (await rpc(first, "Reserve", { table: "Before", maxJobs: 1, worker: { workerId: "w" } })).json as { leases: { leaseToken: string }[] };
    const completed = await rpc(first, "Complete", { table: "Before", completions: [{ leaseToken: reserved.leases[0]!.leaseToken, result: { n: 1 } }] });
    t.is(completed.status, 200, JSON.stringify(completed.json));
    t.is(await first.stop(), 0);
    // The database as the version before 0004 leaves it: no key_hash column, no record of the
    // migration, and every stored key hashed by SHA-256.
    const json = (id: number) => `{"subject_id":"${id}"}`;
    await sqlOn(db.url, [
      ['ALTER TABLE "~populus_tables" DROP COLUMN key_hash', []],
      [`DELETE FROM "~populus_migrations" WHERE name = 'KeyHashScheme0000000000004'`, []],
      ...[1, 2, 3].flatMap((id): [string, unknown[]][] => [
        ['UPDATE "~~before" SET key_hash = ? WHERE key_json = ?', [sha256Hash(json(id)), json(id)]],
        ['UPDATE "before" SET key_hash = ? WHERE key_json = ?', [sha256Hash(json(id)), json(id)]],
      ]),
    ]);
    t.is((await sqlOn(db.url, [['SELECT COUNT(*) AS n FROM "before"', []]]))[0]?.n as number, 1, "one key computed");

    const second = await server(db.url);
    t.deepEqual(await migrationRows(db.url), MIGRATIONS, "the upgrade ran 0004");
    t.deepEqual(await sqlOn(db.url, [['SELECT key_hash FROM "~populus_tables" WHERE name = ?', ["before"]]]), [{ key_hash: "sha256" }]);
    const again = await rpc(second, "Refresh", { table: "Before", keys: [...KEYS, { attributes: { subject_id: { intValue: "4" } } }] });
    t.deepEqual(again, { status: 200, json: { added: "1", anyPending: true } }, "its three keys are found again; only the new one is added");
    t.deepEqual(
      await sqlOn(db.url, [['SELECT key_hash FROM "~~before" WHERE key_json = ?', [json(4)]]]),
      [{ key_hash: sha256Hash(json(4)) }],
      "a new key of the old table is hashed as its others",
    );
    const deleted = await rpc(second, "DeleteTargets", { table: "Before", keys: KEYS });
    t.deepEqual(deleted, { status: 200, json: { deleted: "1" } }, "its computed row is found by its key");

    t.is((await rpc(second, "Refresh", { table: "After", keys: KEYS })).status, 200);
    t.deepEqual(await sqlOn(db.url, [['SELECT key_hash FROM "~populus_tables" WHERE name = ?', ["after"]]]), [{ key_hash: "ordered" }]);
    const after = await sqlOn(db.url, [['SELECT key_hash FROM "~~after" ORDER BY key_hash', []]]);
    t.deepEqual(
      after.map((r) => (r.key_hash as string).slice(0, 12)),
      ["g00000000000", "g00000000000", "g00000000000"],
      "1, 2 and 3 share their 60 ordered bits",
    );
    t.is(await second.stop(), 0);
  },
});

/** A jobs table as servers before migration 0005 made it (each lease's holder and token in the job's own nullable columns). */
function jobsTableBefore0005(dialect: Dialect, name: string): string[] {
  const [text, big, ascii, tail] =
    dialect === "sqlite"
      ? ["TEXT", "INTEGER", "", ""]
      : ["VARCHAR(255)", "BIGINT", " CHARACTER SET ascii", " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"];
  const ready = "(status, priority, scheduled_time, id)";
  const create = `CREATE TABLE "${name}" (
    id ${dialect === "sqlite" ? "INTEGER PRIMARY KEY" : "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"},
    key_hash CHAR(32)${ascii} NOT NULL UNIQUE, key_json ${dialect === "sqlite" ? "TEXT" : "MEDIUMTEXT"} NOT NULL,
    status VARCHAR(8)${ascii} NOT NULL, priority SMALLINT NOT NULL, create_time ${big} NOT NULL, scheduled_time ${big} NOT NULL,
    reserve_time ${big} NULL, complete_time ${big} NULL, duration_ms ${big} NULL, lease_token VARCHAR(64)${ascii} NULL,
    lease_expire_time ${big} NULL, attempts INT NOT NULL DEFAULT 0, worker_id ${text} NULL, host ${text} NULL, pid INT NULL,
    user ${text} NULL, code_version ${text} NULL, error_message TEXT NULL, error_stack TEXT NULL, progress DOUBLE NULL,
    progress_message ${text} NULL${dialect === "sqlite" ? "" : `, KEY ready_idx ${ready}`}
  )${tail}`;
  return dialect === "sqlite" ? [create, `CREATE INDEX "${name}~ready" ON "${name}" ${ready}`] : [create];
}

interface ListedJob {
  key: { attributes: { subject_id: { intValue: string } } };
  status: string;
  worker?: { workerId: string };
}

const upgradeMovesHoldersToLeaseRows = test.macro({
  title: (_, dialect: Dialect) =>
    `${dialect}: a jobs table made before migration 0005 gets lease_batch and works as before: a lease held across the upgrade still commits, a Fail made before it repeats, and new leases, their holders, failures and completions work on it`,
  async exec(t, dialect: Dialect) {
    const db = await database(dialect);
    const first = await server(db.url);
    const keys = [...KEYS, { attributes: { subject_id: { intValue: "4" } } }];
    t.is((await rpc(first, "Refresh", { table: "Before", keys })).status, 200);
    t.is(await first.stop(), 0);
    // The database as the version before 0005 leaves it: the old shape of the jobs table, with the
    // same four jobs; key 1's leased and key 2's failed the old way (token and holder on the row).
    const json = (id: number) => `{"subject_id":"${id}"}`;
    const columns = "id, key_hash, key_json, status, priority, create_time, scheduled_time, attempts";
    const [create, ...indexes] = jobsTableBefore0005(dialect, "~~before");
    await sqlOn(db.url, [
      ['ALTER TABLE "~~before" RENAME TO "~~before_0005"', []],
      [create as string, []],
      [`INSERT INTO "~~before" (${columns}) SELECT ${columns} FROM "~~before_0005"`, []],
      ['DROP TABLE "~~before_0005"', []],
      ...indexes.map((index): [string, unknown[]] => [index, []]),
      ['DROP TABLE "~populus_leases"', []],
      [`DELETE FROM "~populus_migrations" WHERE name = 'LeaseRows0000000000005'`, []],
    ]);
    const idOfKey = async (id: number) => Number((await sqlOn(db.url, [['SELECT id FROM "~~before" WHERE key_json = ?', [json(id)]]]))[0]?.id);
    const heldToken = `${"a".repeat(32)}-${(await idOfKey(1)).toString(36)}`;
    const failedToken = `${"b".repeat(32)}-${(await idOfKey(2)).toString(36)}`;
    await sqlOn(db.url, [
      [
        `UPDATE "~~before" SET status = 'reserved', lease_token = ?, reserve_time = ?, lease_expire_time = ?, attempts = 1, worker_id = 'old-worker', host = 'old-host'
         WHERE key_json = ?`,
        [heldToken, Date.now(), Date.now() + 60_000, json(1)],
      ],
      [
        `UPDATE "~~before" SET status = 'error', lease_token = ?, attempts = 1, worker_id = 'old-failer', error_message = 'old failure' WHERE key_json = ?`,
        [failedToken, json(2)],
      ],
    ]);

    const second = await server(db.url);
    t.deepEqual(await migrationRows(db.url), MIGRATIONS, "the upgrade ran 0005");
    const batches = await sqlOn(db.url, [['SELECT key_json, lease_batch FROM "~~before" ORDER BY key_json', []]]);
    t.deepEqual(
      batches.map((r) => r.lease_batch),
      ["a".repeat(32), "b".repeat(32), "", ""],
      "lease_batch was added beside the old columns, and filled from the tokens of the reserved and error jobs",
    );
    t.deepEqual(await sqlOn(db.url, [['SELECT batch, worker_id, host FROM "~populus_leases"', []]]), [
      { batch: "a".repeat(32), worker_id: "old-worker", host: "old-host" },
    ]);

    const reserved = await rpc(second, "Reserve", { table: "Before", maxJobs: 3, worker: { workerId: "new-worker", host: "h" } });
    const leases = (reserved.json as { leases: { leaseToken: string }[] }).leases;
    t.is(leases.length, 2, "the two pending jobs are leased; key 1's is still held");
    const listed = (await rpc(second, "ListJobs", { table: "Before" })).json as { jobs: ListedJob[] };
    t.deepEqual(
      listed.jobs.map((j) => [j.key.attributes.subject_id.intValue, j.status, j.worker?.workerId]),
      [
        ["1", "JOB_STATUS_RESERVED", "old-worker"],
        ["2", "JOB_STATUS_ERROR", "old-failer"],
        ["3", "JOB_STATUS_RESERVED", "new-worker"],
        ["4", "JOB_STATUS_RESERVED", "new-worker"],
      ],
      "each lease's holder is its batch's row; the failed job's, its own columns",
    );
    const [failing, completing] = leases.map((l) => l.leaseToken);
    t.is((await rpc(second, "Fail", { table: "Before", leaseToken: failing, errorMessage: "boom" })).status, 200);
    t.is(
      (await rpc(second, "Fail", { table: "Before", leaseToken: failedToken, errorMessage: "old failure" })).status,
      200,
      "a Fail from before the upgrade repeats",
    );
    const completions = [heldToken, completing].map((leaseToken) => ({ leaseToken, result: { n: 1 } }));
    t.deepEqual(
      await rpc(second, "Complete", { table: "Before", completions }),
      { status: 200, json: { committed: "2" } },
      "the lease from before the upgrade commits",
    );
    const after = (await rpc(second, "ListJobs", { table: "Before" })).json as { jobs: ListedJob[] };
    t.deepEqual(
      after.jobs.map((j) => [j.key.attributes.subject_id.intValue, j.status, j.worker?.workerId]),
      [
        ["2", "JOB_STATUS_ERROR", "old-failer"],
        ["3", "JOB_STATUS_ERROR", "new-worker"],
      ],
      "a failed job keeps who failed it; the completed ones are gone",
    );
    const progress = ((await rpc(second, "GetProgress", { table: "Before" })).json as { progress: Record<string, string> }).progress;
    t.deepEqual([progress.pending, progress.reserved, progress.error, progress.target], [undefined, undefined, "2", "2"]);
    t.is(await second.stop(), 0);
  },
});

for (const dialect of testDialects()) {
  test(startsMigratesAndRestarts, dialect);
  test(refreshCallsAtOnce, dialect);
  test(upgradeMovesHoldersToLeaseRows, dialect);
  test(concurrentMigrations, dialect, 2);
  test(upgradeKeepsKeyHashes, dialect);
}

test("with no --database and no POPULUS_DATABASE_URL, the server creates populus.db in its working directory", async (t) => {
  const cwd = mkdtempSync(join(tmpdir(), "populus-cwd-"));
  tempDirs.push(cwd);
  t.deepEqual(readdirSync(cwd), []);
  const s = await server(undefined, { cwd });
  t.like(logged(s, "database ready, migrations applied"), { database: "sqlite:populus.db", pageCacheMib: 64 });
  t.true(existsSync(join(cwd, "populus.db")), `populus.db in ${cwd}: ${readdirSync(cwd).join(", ")}`);
  t.deepEqual(await migrationRows(`sqlite:${join(cwd, "populus.db")}`), MIGRATIONS);
  t.deepEqual(await rpc(s, "Refresh", { table: "ProcessedData", keys: KEYS }), { status: 200, json: { added: "3", anyPending: true } });
  t.is(await s.stop(), 0);
});

test("SQLite's page cache is what --sqlite-cache or POPULUS_SQLITE_CACHE says, as SQLite reports it; a MySQL server has none to report", async (t) => {
  const sqlite = await database("sqlite");
  const byFlag = await startServer({ database: sqlite.url, args: ["--sqlite-cache", "16"], env: { POPULUS_SQLITE_CACHE: "8" } });
  servers.push(byFlag);
  t.is(logged(byFlag, "database ready, migrations applied")?.pageCacheMib, 16, "the flag wins over the environment");
  t.is(await byFlag.stop(), 0);
  const byEnv = await startServer({ database: sqlite.url, env: { POPULUS_SQLITE_CACHE: "8" } });
  servers.push(byEnv);
  t.is(logged(byEnv, "database ready, migrations applied")?.pageCacheMib, 8);
  // The file is in WAL mode since the first server: without its own pragma the store would open it at NORMAL.
  t.is(logged(byEnv, "database ready, migrations applied")?.synchronous, "full");
  t.is(logged(byEnv, "database ready, migrations applied")?.largeWritesSynced, "off the event loop, before they are answered");
  t.deepEqual(await rpc(byEnv, "Refresh", { table: "Cached", keys: KEYS }), { status: 200, json: { added: "3", anyPending: true } });
  t.is(await byEnv.stop(), 0);
  if (!testDialects().includes("mysql")) return;
  const mysqlDb = await database("mysql");
  const onMysql = await startServer({ database: mysqlDb.url, args: ["--sqlite-cache", "16"] });
  servers.push(onMysql);
  const ready = logged(onMysql, "database ready, migrations applied");
  t.is(ready?.dialect, "mysql");
  t.false(ready !== undefined && "pageCacheMib" in ready);
  t.is(await onMysql.stop(), 0);
});

test("SIGTERM while a Reserve long-polls: the call answers, the server exits 0 within the grace period", async (t) => {
  const db = await database("sqlite");
  const s = await server(db.url, {});
  t.deepEqual((await rpc(s, "Refresh", { table: "Idle", keys: [KEYS[0]] })).json, { added: "1", anyPending: true });
  t.is(((await rpc(s, "Reserve", { table: "Idle", maxJobs: 1 })).json as { leases: unknown[] }).leases.length, 1);

  // Nothing is pending now: this Reserve waits up to 30 s for work. The stop comes once the server counts it waiting.
  const longPoll = rpc(s, "Reserve", { table: "Idle", maxJobs: 1, wait: "30s" });
  await until("the long-poll shows in populus_reserve_waiting", async () => (await reservesWaiting(s)) >= 1, 10_000, 20);
  const t0 = Date.now();
  const exit = s.stop();
  t.deepEqual(await longPoll, { status: 200, json: {} }, "the long-poll ends with an empty answer, a normal one");
  t.is(await exit, 0);
  const elapsed = Date.now() - t0;
  // Well under the 10 s grace it must not wait for, with room for a loaded machine's slower stop.
  t.true(elapsed < 7000, `exited after ${elapsed} ms; the default grace is 10 s and nothing had to wait for it`);
  t.truthy(logged(s, "draining"));
  t.truthy(logged(s, "stopped"));
});

// server/src/http-server.ts hands sockets to its http1 server with emit("connection"), so Node's
// own idle-connection tracking never runs; close() tracks in-flight requests per socket itself.
// Without that, an idle keep-alive connection held SIGTERM up for Node's 5 s keepAliveTimeout.
test("SIGTERM with an idle HTTP/1.1 keep-alive connection open: exits at once, not after the keep-alive timeout", async (t) => {
  const db = await database("sqlite");
  const s = await server(db.url);
  const socket = net.connect(s.port, "127.0.0.1");
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once("connect", r));
  socket.write("POST /populus.v1.JobService/ListTables HTTP/1.1\r\nHost: populus\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  const head = await new Promise<string>((r) => socket.once("data", (d: Buffer) => r(d.toString())));
  t.regex(head, /^HTTP\/1\.1 200 OK\r\n/);
  t.notRegex(head, /\r\nconnection: close\r\n/i, "the server keeps the connection open");
  const t0 = Date.now();
  t.is(await s.stop(), 0);
  const elapsed = Date.now() - t0;
  // What must not happen is a wait for Node's 5 s keepAliveTimeout; a clean stop took up to 2.6 s
  // when CI's other tests loaded both cores.
  t.true(elapsed < 4500, `exited ${elapsed} ms after SIGTERM with nothing in flight`);
});

test("mysql: ?socket= connects through the database's Unix socket instead of TCP", async (t) => {
  if (!testDialects().includes("mysql")) return t.pass("no MySQL tests in this run");
  const db = await database("mysql");
  const c = await mysql.createConnection({ uri: db.url });
  const [[row]] = (await c.query("SELECT @@socket AS socket, DATABASE() AS name")) as unknown as [{ socket: string; name: string }[]];
  await c.end();
  if (!existsSync(row!.socket)) {
    // testcontainers or a remote server: its socket is not on this machine.
    t.log(`not run: the MySQL server's socket ${row!.socket} is not on this machine`);
    return t.pass();
  }
  // A host that answers nothing over TCP: only the socket can reach the database.
  const s = await server(`mysql://root@192.0.2.1:9/${row!.name}?socket=${row!.socket}`);
  t.deepEqual(await rpc(s, "Refresh", { table: "ThroughSocket", keys: KEYS }), { status: 200, json: { added: "3", anyPending: true } });
  const connections = await mysql.createConnection({ uri: db.url });
  const [threads] = (await connections.query("SELECT COUNT(*) AS n FROM information_schema.processlist WHERE db = ? AND host = 'localhost'", [
    row!.name,
  ])) as unknown as [{ n: number }[]];
  await connections.end();
  t.true(Number(threads[0]!.n) > 0, "the server's connections come through the socket (host localhost)");
  t.log(`through ${row!.socket}: ${threads[0]!.n} connection(s)`);
});
