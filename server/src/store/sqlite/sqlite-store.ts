/**
 * The embedded store: one SQLite file through better-sqlite3.
 *
 * TypeORM opens the file and runs the migrations; the operations (store/operations/) then run on
 * TypeORM's own better-sqlite3 connection as synchronous `BEGIN IMMEDIATE` transactions.
 * better-sqlite3 is synchronous, so no other request can interleave inside a transaction of this
 * process, and IMMEDIATE takes the write lock up front, so another process on the same file waits
 * (busy timeout) instead of failing half-way. That is promise 1 on SQLite: one writer transaction
 * per reservation.
 */
import type BetterSqlite3 from "better-sqlite3";
import { DataSource } from "typeorm";
import { Initial0000000000001 } from "../migrations/sqlite/0001-initial.js";
import { ChangeLog0000000000002 } from "../migrations/sqlite/0002-change-log.js";
import { ReserveRequests0000000000003 } from "../migrations/sqlite/0003-reserve-requests.js";
import { KeyHashScheme0000000000004 } from "../migrations/sqlite/0004-key-hash-scheme.js";
import { LeaseRows0000000000005 } from "../migrations/sqlite/0005-lease-rows.js";
import { RefreshClaims0000000000006 } from "../migrations/sqlite/0006-refresh-claims.js";
import { ClaimsMadeDue0000000000007 } from "../migrations/sqlite/0007-claims-made-due.js";
import { type Operation, type Param, runSync, type Statement, type SyncExecutor } from "../operations/operation.js";
import { describeTable } from "../operations/tables.js";
import { SharedStore } from "../shared-store.js";
import type { RefreshInput, StoreOptions } from "../store.js";
import { BackgroundCheckpointer } from "./checkpointer.js";
import { GroupCommit } from "./group-commit.js";
import { WalSync } from "./wal-sync.js";
import { SqliteDialect } from "./sqlite-dialect.js";
import { createTableStatements } from "./table-ddl.js";

/** The migrations, in order; numbered alike for MySQL. */
export const SQLITE_MIGRATIONS = [
  Initial0000000000001,
  ChangeLog0000000000002,
  ReserveRequests0000000000003,
  KeyHashScheme0000000000004,
  LeaseRows0000000000005,
  RefreshClaims0000000000006,
  ClaimsMadeDue0000000000007,
];

/** What the SQLite store takes beyond every store's options. */
export interface SqliteOptions {
  /**
   * The connection's page cache, MiB (SQLite's own default is 2). A refresh looks up and inserts
   * keys by their hash, all over the key indexes: with 1,000,000 jobs those are some 50 MB, so a
   * 2 MiB cache read most pages from the OS again and spilled dirty pages to the WAL
   * mid-transaction (bench scenario 2, 1M keys: 42-46k / 100-119k / 78-96k keys/s into an empty
   * table / the same again / 10% changed; with 64 MiB 49-54k / 169-189k / 103-134k; 256 MiB did no
   * better). SQLite allocates it as pages are used, so a small database does not pay for it.
   */
  readonly cacheMib: number;
  /** Hears of a WAL checkpointer thread that failed (checkpointer.ts); the store goes on without it. */
  readonly onCheckpointerError?: (err: Error) => void;
}

/** Opens (creating if needed) and migrates the SQLite file at `path`. */
export async function openSqliteStore(path: string, options: StoreOptions & SqliteOptions): Promise<SqliteStore> {
  const dataSource = new DataSource({
    type: "better-sqlite3",
    database: path,
    migrations: SQLITE_MIGRATIONS,
    migrationsTableName: "~populus_migrations",
    migrationsTransactionMode: "none",
    // WAL lets readers (ListJobs, Watch) run beside the writer; synchronous is set to FULL below.
    enableWAL: true,
    // Busy timeout (ms) when another process holds the write lock.
    timeout: 5000,
  });
  await dataSource.initialize();
  const db = (dataSource.driver as unknown as { databaseConnection: BetterSqlite3.Database }).databaseConnection;
  // Negative: a size in KiB, not in pages.
  db.pragma(`cache_size = -${options.cacheMib * 1024}`);
  // Every commit synced to disk. Said here because better-sqlite3 builds SQLite with WAL
  // connections at NORMAL: a file already in WAL mode (every start after its first) was opened
  // at NORMAL, where the last commits before a power loss or an OS crash can be lost. A large
  // transaction commits at NORMAL instead and is synced off the event loop (transaction(), wal-sync.ts).
  db.pragma("synchronous = FULL");
  // Servers starting at once on one file take turns: BEGIN IMMEDIATE holds the write lock from the
  // read of the executed migrations to the commit, and TypeORM runs inside it on the same connection
  // (transaction "none": it must not open its own). The other server waits (busy timeout), then finds
  // nothing to run. Pinned by test/server-start.test.ts (concurrent migrations).
  db.exec("BEGIN IMMEDIATE");
  try {
    await dataSource.runMigrations({ transaction: "none" });
    db.exec("COMMIT");
  } catch (err) {
    if (db.inTransaction) db.exec("ROLLBACK");
    await dataSource.destroy();
    throw err;
  }
  // Checkpoints run on a thread of their own; the serving connection's own only past a larger WAL.
  const checkpointer = new BackgroundCheckpointer(
    path,
    (pages) => db.pragma(`wal_autocheckpoint = ${pages}`),
    options.onCheckpointerError ?? (() => undefined),
  );
  return new SqliteStore(dataSource, db, checkpointer, new WalSync(`${path}-wal`), options);
}

/**
 * Transactions of at most this many jobs or keys are group-committed. A larger one runs at once:
 * a Reserve of the next batch grouped behind a Complete of 1,000 jobs was answered only once that
 * Complete had run too, which held up the worker's pipeline (a 20,000-job drain went 6-7% slower),
 * while the pages such transactions share are a small part of what each writes.
 */
const GROUPED_ROWS_AT_MOST = 16;

/** Statements kept prepared; past this many the cache starts again (a statement's text names its table and batch size). */
const MAX_PREPARED = 512;

/**
 * One run of a per-row statement on the `width` params at `at`, passed as arguments: a slice
 * spread into the call cost about 70 ns a row more (a 5-column prepared INSERT, 200,000 rows), a
 * few percent of a refresh's time per key.
 */
function callAt(statement: BetterSqlite3.Statement, method: "run" | "get", p: readonly Param[], at: number, width: number): unknown {
  switch (width) {
    case 1:
      return statement[method](p[at]);
    case 2:
      return statement[method](p[at], p[at + 1]);
    case 3:
      return statement[method](p[at], p[at + 1], p[at + 2]);
    case 4:
      return statement[method](p[at], p[at + 1], p[at + 2], p[at + 3]);
    case 5:
      return statement[method](p[at], p[at + 1], p[at + 2], p[at + 3], p[at + 4]);
    case 9:
      return statement[method](p[at], p[at + 1], p[at + 2], p[at + 3], p[at + 4], p[at + 5], p[at + 6], p[at + 7], p[at + 8]);
    default:
      return statement[method](...p.slice(at, at + width));
  }
}

export class SqliteStore extends SharedStore {
  readonly dialect = "sqlite" as const;
  /**
   * One writer, on the event loop: a call is written while the next one arrives. A third in flight
   * only waited (1M new keys: 209,500 against 221,500 keys/s with two, medians of 6 runs each way).
   */
  readonly refreshCallsAtOnce = 2;
  /**
   * Statements by their text, prepared once: a Reserve or Complete of 1,000 jobs compiled
   * statements of 1,000 to 2,000 placeholders on every call (about a tenth of the server's CPU in
   * a drain).
   */
  private readonly statementCache = new Map<string, BetterSqlite3.Statement>();
  private readonly executor: SyncExecutor = {
    rows: (s) => {
      const statement = this.prepared(s.sql);
      if (s.perRow === undefined) return statement.all(...s.params);
      const found: unknown[] = [];
      for (let at = 0; at < s.params.length; at += s.perRow) {
        const row = callAt(statement, "get", s.params, at, s.perRow);
        if (row !== undefined) found.push(row);
      }
      return found;
    },
    run: (s) => this.runStatement(s),
  };
  private readonly groupCommit: GroupCommit;
  /** Rows changed by the connection so far (SQLite's total_changes()): a transaction that changed none has no WAL to sync. */
  private readonly totalChanges: BetterSqlite3.Statement;
  private readonly syncNormal: BetterSqlite3.Statement;
  private readonly syncFull: BetterSqlite3.Statement;

  constructor(
    private readonly dataSource: DataSource,
    private readonly db: BetterSqlite3.Database,
    private readonly checkpointer: BackgroundCheckpointer,
    private readonly walSync: WalSync,
    options: StoreOptions,
  ) {
    super(new SqliteDialect(), options);
    this.groupCommit = new GroupCommit(db);
    this.totalChanges = db.prepare("SELECT total_changes()").pluck();
    this.syncNormal = db.prepare("PRAGMA synchronous = NORMAL");
    this.syncFull = db.prepare("PRAGMA synchronous = FULL");
  }

  /** The connection's synchronous setting as SQLite reports it (for the start-up log): "full" when every commit is synced (a large one's by WalSync). */
  get synchronous(): string {
    const level = Number(this.db.pragma("synchronous", { simple: true }));
    return ["off", "normal", "full", "extra"][level] ?? String(level);
  }

  /** The page cache the connection has, MiB, as SQLite reports it (for the start-up log). */
  get pageCacheMib(): number {
    return -Number(this.db.pragma("cache_size", { simple: true })) / 1024;
  }

  private prepared(sql: string): BetterSqlite3.Statement {
    let statement = this.statementCache.get(sql);
    if (statement === undefined) {
      if (this.statementCache.size >= MAX_PREPARED) this.statementCache.clear();
      statement = this.db.prepare(sql);
      this.statementCache.set(sql, statement);
    }
    return statement;
  }

  private runStatement(s: Statement): number {
    const statement = this.prepared(s.sql);
    if (s.perRow === undefined) return statement.run(...s.params).changes;
    let changes = 0;
    for (let at = 0; at < s.params.length; at += s.perRow) changes += (callAt(statement, "run", s.params, at, s.perRow) as BetterSqlite3.RunResult).changes;
    return changes;
  }

  /**
   * Small write transactions asked for in one turn of the event loop commit together
   * (group-commit.ts), synced inside their COMMIT (synchronous = FULL). A larger one, or one of
   * unknown size, runs at once and commits at NORMAL, and is answered once WalSync has synced the
   * WAL off the event loop: other requests run meanwhile. A small one keeps the inline sync: a lone
   * one-key refresh waited longer for the thread pool's round trip than for the sync itself
   * (peers bench, one key per call on SQLite: 831-851 calls/s against 916-920 with FULL).
   */
  protected async transaction<T>(make: () => Operation<T>, rows?: number): Promise<T> {
    const work = () => runSync(make(), this.executor);
    if (rows !== undefined && rows <= GROUPED_ROWS_AT_MOST) return this.groupCommit.run(work);
    const changedBefore = this.totalChanges.get();
    this.syncNormal.run();
    let value: T;
    try {
      value = this.db.transaction(work).immediate();
    } finally {
      this.syncFull.run();
    }
    // A transaction that wrote nothing (a Reserve of an empty table) has nothing to sync.
    if (this.totalChanges.get() !== changedBefore) await this.walSync.sync();
    return value;
  }

  protected async statements<T>(make: () => Operation<T>): Promise<T> {
    return runSync(make(), this.executor);
  }

  /** A deferred read transaction: one WAL snapshot (another process may write the file). */
  protected async snapshot<T>(make: () => Operation<T>): Promise<T> {
    return this.db.transaction(() => runSync(make(), this.executor))();
  }

  /** DDL and registry row in one IMMEDIATE transaction: a server on the same file that declares too waits, then finds the table. */
  protected async declare(input: RefreshInput): Promise<void> {
    this.db
      .transaction(() => {
        if (runSync(describeTable(this.sql, input.table), this.executor) !== null) return;
        for (const statement of createTableStatements(input.table)) this.db.prepare(statement).run();
        this.prepared(`INSERT INTO ${this.sql.names.tables} (name, display_name, key_attributes, key_hash, create_time) VALUES (?, ?, ?, ?, ?)`).run(
          input.table,
          input.displayName,
          JSON.stringify(input.keyAttributes),
          input.keyHash,
          input.now,
        );
      })
      .immediate();
  }

  async ping(): Promise<void> {
    this.prepared("SELECT 1").get();
  }

  async close(): Promise<void> {
    await this.checkpointer.stop();
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
    // Last: a transaction that committed before the connection closed still gets its sync, and
    // none after it can open the WAL again.
    await this.walSync.close();
  }
}
