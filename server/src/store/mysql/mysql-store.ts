/**
 * The MySQL/MariaDB store, through TypeORM's mysql2 pool.
 *
 * Every operation (store/operations/) runs on one pooled connection at READ COMMITTED, as one
 * transaction from its first write or locking read on (pipelined-transaction.ts: plain reads before
 * that go alone, in autocommit, and an operation that only reads commits nothing).
 * Reservation is `SELECT ... FOR UPDATE SKIP LOCKED` (for more than SIDE_BY_SIDE_RESERVE_JOBS, by
 * primary key, of the ids a read of the ready index found: readyJobsByCandidates) then one UPDATE of
 * the batch (promise 1):
 * concurrent reservers skip each other's rows instead of waiting, and read committed avoids gap
 * locks. Deadlocks and lock-wait timeouts are retried with jitter and then surface as
 * ContentionError.
 */
import { createHash } from "node:crypto";
import { DataSource, MigrationExecutor, type QueryRunner } from "typeorm";
import type { MysqlDriver } from "typeorm/driver/mysql/MysqlDriver.js";
import type { DatabaseConfig } from "../../config.js";
import { ContentionError, DatabaseBusyError, DatabaseUnavailableError } from "../../errors.js";
import { Initial0000000000001 } from "../migrations/mysql/0001-initial.js";
import { ChangeLog0000000000002 } from "../migrations/mysql/0002-change-log.js";
import { ReserveRequests0000000000003 } from "../migrations/mysql/0003-reserve-requests.js";
import { KeyHashScheme0000000000004 } from "../migrations/mysql/0004-key-hash-scheme.js";
import { LeaseRows0000000000005 } from "../migrations/mysql/0005-lease-rows.js";
import { RefreshClaims0000000000006 } from "../migrations/mysql/0006-refresh-claims.js";
import { ClaimsMadeDue0000000000007 } from "../migrations/mysql/0007-claims-made-due.js";
import { type AsyncExecutor, type Operation, type Param, runAsync, runsOf, type Statement } from "../operations/operation.js";
import { readyFilter, reserve, SIDE_BY_SIDE_RESERVE_JOBS } from "../operations/reserve.js";
import { describeTable } from "../operations/tables.js";
import { SharedStore } from "../shared-store.js";
import type { LeaseGrant, RefreshInput, ReserveInput, StoreOptions } from "../store.js";
import { TurnsPerKey } from "../turns.js";
import { boundPoolWaits, type CallbackPool } from "./bounded-pool.js";
import { MysqlDialect } from "./mysql-dialect.js";
import { PipelinedTransaction, type QueryConnection } from "./pipelined-transaction.js";
import { createTableStatements } from "./table-ddl.js";

/** The migrations, in order; numbered alike for SQLite. */
export const MYSQL_MIGRATIONS = [
  Initial0000000000001,
  ChangeLog0000000000002,
  ReserveRequests0000000000003,
  KeyHashScheme0000000000004,
  LeaseRows0000000000005,
  RefreshClaims0000000000006,
  ClaimsMadeDue0000000000007,
];

/**
 * Reserve's tries while ready jobs exist but are all locked by other transactions, and the pause
 * between two: a refresh or another worker's Reserve holds them for milliseconds; a transaction
 * that holds them longer than this (about 2 s) gets an empty answer, as before.
 */
const LOCKED_READY_RETRIES = 40;
const LOCKED_READY_PAUSE_MS = 50;

/** Deadlock / lock-wait retries before ABORTED. */
const CONTENTION_RETRIES = 5;
/**
 * Lock contention the transaction is retried after. 1467 is a deadlock on a table's AUTO-INC lock:
 * with innodb_autoinc_lock_mode 1 (MariaDB's default) an INSERT ... SELECT holds it for the
 * statement, and a multi-row INSERT that meets it waits for it too, so a one-key refresh and a
 * batch refresh of the same table can deadlock there. InnoDB has rolled back the transaction (a
 * deadlock) or the statement (a lock wait timeout); the retry rolls back either way.
 */
const RETRYABLE_ERRNO = new Set([1213 /* ER_LOCK_DEADLOCK */, 1205 /* ER_LOCK_WAIT_TIMEOUT */, 1467 /* ER_AUTOINC_READ_FAILED */]);
const ER_DUP_ENTRY = 1062;

type MysqlConfig = Extract<DatabaseConfig, { dialect: "mysql" }>;

/** The oldest servers with SKIP LOCKED. */
export function checkServerVersion(version: string): void {
  const m = /^(\d+)\.(\d+)/.exec(version);
  const major = Number(m?.[1] ?? 0);
  const minor = Number(m?.[2] ?? 0);
  if (/mariadb/i.test(version)) {
    if (major < 10 || (major === 10 && minor < 6)) {
      throw new DatabaseUnavailableError(`MariaDB ${version} is too old: Populus needs MariaDB 10.6 or newer (SELECT ... SKIP LOCKED)`);
    }
  } else if (major < 8) {
    throw new DatabaseUnavailableError(`MySQL ${version} is too old: Populus needs MySQL 8.0 or newer (SELECT ... SKIP LOCKED)`);
  }
}

/**
 * The server's SQL mode must leave backslash escapes on: statements carry values escaped with
 * backslashes (by mysql2, and as literals: sql-literals.ts), which NO_BACKSLASH_ESCAPES would turn
 * into plain characters, ending a string early at an escaped quote.
 */
export function checkSqlMode(mode: string): void {
  if (mode.split(",").some((m) => m.trim().toUpperCase() === "NO_BACKSLASH_ESCAPES")) {
    throw new DatabaseUnavailableError(
      "the database's sql_mode includes NO_BACKSLASH_ESCAPES: Populus escapes values with backslashes; remove it from the server's sql_mode",
    );
  }
}

/** The pool: its size, and how long a call waits for a connection when all are busy. */
export interface PoolOptions {
  readonly poolSize: number;
  readonly poolWaitMs: number;
}

/**
 * How many calls may wait for a pooled connection at once. Each waiter is a pending RPC, so this
 * bounds the memory a stalled database can pin; 50 per connection is far more than a healthy
 * database ever queues (a pooled transaction takes milliseconds).
 */
function waitQueueLimit(poolSize: number): number {
  return poolSize * 50;
}

/** Connects, checks the server version and migrates (one migrator at a time cluster-wide). */
export async function openMysqlStore(config: MysqlConfig, options: StoreOptions & PoolOptions): Promise<MysqlStore> {
  const dataSource = new DataSource({
    type: "mysql",
    host: config.host,
    port: config.port,
    // A Unix socket: for a database that takes its local users through the socket only (Debian's
    // root@localhost authenticates by unix_socket) or listens on no TCP port. It measured no faster here.
    ...(config.socketPath === undefined ? {} : { socketPath: config.socketPath }),
    username: config.user,
    password: config.password,
    database: config.database,
    charset: "utf8mb4_bin",
    // Affected-row counts must mean "changed", not "matched": refresh counts rest on them.
    flags: ["-FOUND_ROWS"],
    connectTimeout: 5000,
    poolSize: options.poolSize,
    // mysql2 captures a stack trace with every query, for its error messages: 4% of the
    // server's CPU at four single-job workers (bench scenario 4). Our errors name the statement.
    //
    // multipleStatements: a transaction sends START TRANSACTION, held writes and COMMIT along with
    // its statements (pipelined-transaction.ts). Values are escaped into the text by mysql2, or
    // written as literals (sql-literals.ts); checkSqlMode makes sure the escapes mean what they say.
    extra: { trace: false, queueLimit: waitQueueLimit(options.poolSize), multipleStatements: true },
    migrations: MYSQL_MIGRATIONS,
    migrationsTableName: "~populus_migrations",
    migrationsTransactionMode: "each",
  });
  await dataSource.initialize();
  boundPoolWaits((dataSource.driver as MysqlDriver).pool as CallbackPool, {
    poolSize: options.poolSize,
    waitMs: options.poolWaitMs,
    queueLimit: waitQueueLimit(options.poolSize),
  });
  let version = "";
  try {
    // A new connection's session takes the global sql_mode: the pool's connections have this one.
    const [row] = (await dataSource.query("SELECT VERSION() AS v, @@SESSION.sql_mode AS mode")) as { v: string; mode: string }[];
    version = row?.v ?? "";
    checkServerVersion(version);
    checkSqlMode(row?.mode ?? "");
    // Several servers may start at once: a named lock (per database) makes them migrate one at a time.
    // The migrations run on the lock's own connection: dataSource.runMigrations would take a second
    // one from the pool while the first holds the lock, which a pool of one never has.
    await withNamedLock(dataSource, `populus_migrate:${config.database}`, (holder) => {
      const migrations = new MigrationExecutor(dataSource, holder);
      migrations.transaction = "each";
      return migrations.executePendingMigrations();
    });
  } catch (err) {
    await dataSource.destroy();
    throw err;
  }
  return new MysqlStore(dataSource, options, config.database, /mariadb/i.test(version));
}

/**
 * Runs fn while holding a MySQL named lock (GET_LOCK), which is per server and held by one
 * connection: cluster-wide mutual exclusion without a table. Names longer than 64 characters
 * (MySQL's limit) are hashed.
 */
async function withNamedLock<T>(dataSource: DataSource, name: string, fn: (holder: QueryRunner) => Promise<T>): Promise<T> {
  const lockName = name.length <= 64 ? name : createHash("sha256").update(name).digest("hex").slice(0, 64);
  const holder = dataSource.createQueryRunner();
  await holder.connect();
  try {
    const [got] = (await holder.query("SELECT GET_LOCK(?, 60) AS ok", [lockName])) as { ok: number | string | null }[];
    if (Number(got?.ok) !== 1) throw new DatabaseUnavailableError(`timed out after 60 s waiting for the database lock "${name}"`);
    try {
      return await fn(holder);
    } finally {
      await holder.query("SELECT RELEASE_LOCK(?)", [lockName]).catch(() => undefined);
    }
  } finally {
    await holder.release();
  }
}

function errno(err: unknown): number | undefined {
  const e = err as { errno?: number; driverError?: { errno?: number } };
  return e?.errno ?? e?.driverError?.errno;
}

/**
 * Calls of one refresh this store writes side by side, each on a pooled connection of its own,
 * sharing the refresh's row: with three in flight MariaDB's threads, the server and the client
 * kept the two cores busier than with two (1M new keys, in a driver: 1.75 cores against 1.65,
 * 134,400 against 128,100 keys/s, medians of 10 runs each way; the same keys again
 * 189,000-219,000 against 180,000-189,000 keys/s). Four measured as three.
 */
export const MYSQL_REFRESH_CALLS_AT_ONCE = 3;

export class MysqlStore extends SharedStore {
  readonly dialect = "mysql" as const;
  /** MYSQL_REFRESH_CALLS_AT_ONCE, or fewer with fewer pooled connections: a call past those would only wait for one. */
  readonly refreshCallsAtOnce: number;
  /**
   * This replica's large Reserves of one table take turns: run at once, each one's SKIP LOCKED scan
   * stepped over the rows the others had just locked (up to a batch of 1,000 per worker) before
   * reaching free ones. Replicas still reserve side by side, through SKIP LOCKED.
   */
  private readonly reserveTurns = new TurnsPerKey();
  /** Pooled connections whose session is set up for our transactions (prepareSession). */
  private readonly preparedConnections = new WeakSet<object>();
  /** Statements outside a transaction, each on a pooled connection. */
  private readonly pooled = this.executor(null);
  /** Round trips as compound statements: the dialect's way of counting the write before a statement relies on it. */
  private readonly compound: boolean;

  constructor(
    private readonly dataSource: DataSource,
    options: StoreOptions & PoolOptions,
    /** The database name, scoping named locks (they are per server, not per database). */
    private readonly database: string,
    /** MariaDB rather than MySQL: its sessions also keep IN lists as they are (prepareSession), and it has DELETE ... RETURNING. */
    private readonly mariadb: boolean,
  ) {
    const dialect = new MysqlDialect(mariadb);
    super(dialect, options);
    this.compound = dialect.compoundRoundTrips;
    this.refreshCallsAtOnce = Math.max(1, Math.min(MYSQL_REFRESH_CALLS_AT_ONCE, options.poolSize));
  }

  /** Runs an operation in a READ COMMITTED transaction, retrying deadlocks and lock-wait timeouts with jitter. */
  protected async transaction<T>(make: () => Operation<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const q = this.dataSource.createQueryRunner();
      let transaction: PipelinedTransaction | undefined;
      try {
        transaction = new PipelinedTransaction(await this.prepareSession(q), { compound: this.compound });
        const result = await runAsync(make(), transaction);
        await transaction.commit();
        return result;
      } catch (err) {
        await transaction?.rollback();
        const code = errno(err);
        if (code !== undefined && RETRYABLE_ERRNO.has(code)) {
          if (attempt >= CONTENTION_RETRIES) {
            throw new ContentionError(`the database reported lock contention ${attempt} times in a row; retry the call`, { cause: err });
          }
          await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
          continue;
        }
        throw err;
      } finally {
        await q.release();
      }
    }
  }

  /**
   * Connects `q` to a pooled connection set up once (session defaults), not before each
   * transaction: that was one more round trip in every Reserve and Complete.
   *
   * - Transactions are READ COMMITTED; one that needs another level sets it for itself
   *   (snapshot).
   * - MariaDB: IN lists stay lists. From 1,000 values (in_predicate_conversion_threshold, and a
   *   batch is up to 1,000 leases) MariaDB turns `id IN (...)` into a join with a table of the
   *   values, and then chose to scan the jobs table: a locking read of 1,000 leases locked (and
   *   waited for) rows of other workers it does not hold. As a list, it is 1,000 primary-key
   *   lookups (with the dialect's FORCE INDEX). MySQL makes no such conversion.
   */
  private async prepareSession(q: QueryRunner): Promise<QueryConnection> {
    const connection = (await q.connect()) as QueryConnection;
    if (this.preparedConnections.has(connection)) return connection;
    await q.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (this.mariadb) await q.query("SET SESSION in_predicate_conversion_threshold = 0");
    this.preparedConnections.add(connection);
    return connection;
  }

  /** Statements on `q`, or (null) each on a pooled connection outside a transaction; writes are run at once. */
  private executor(q: QueryRunner | null): AsyncExecutor {
    const read = (sql: string, params: readonly Param[]) => (q ?? this.dataSource).query(sql, params as Param[]) as Promise<unknown[]>;
    const write = async (sql: string, params: readonly Param[]) => {
      const runner = q ?? this.dataSource.createQueryRunner();
      try {
        return ((await runner.query(sql, params as Param[], true)) as { affected?: number }).affected ?? 0;
      } finally {
        if (q === null) await runner.release();
      }
    };
    const run = async (s: Statement) => {
      let changed = 0;
      for (const one of runsOf(s)) changed += await write(one.sql, one.params);
      return changed;
    };
    return {
      rows: async (s: Statement) => {
        if (s.perRow === undefined) return read(s.sql, s.params);
        // A per-row read finds at most one row per run.
        const found: unknown[] = [];
        for (const one of runsOf(s)) found.push(...(await read(one.sql, one.params)).slice(0, 1));
        return found;
      },
      run,
      write: async (s: Statement) => {
        await run(s);
      },
    };
  }

  protected statements<T>(make: () => Operation<T>): Promise<T> {
    return runAsync(make(), this.pooled);
  }

  /** One consistent snapshot (InnoDB MVCC) for the counts and the log, so that the log tells which changes the counts hold. */
  protected async snapshot<T>(make: () => Operation<T>): Promise<T> {
    const q = this.dataSource.createQueryRunner();
    await q.connect();
    try {
      await q.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
      await q.query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
      try {
        return await runAsync(make(), this.executor(q));
      } finally {
        await q.query("COMMIT");
      }
    } finally {
      await q.release();
    }
  }

  /**
   * DDL first (it commits implicitly), then the registry row, so a registry row always means both
   * tables exist. Declarers of one table (on any replica) take turns under a named lock; the later
   * ones find the registry row and do nothing.
   */
  protected async declare(input: RefreshInput): Promise<void> {
    // Everything on the lock's own connection: a declaration that also took a second one while it
    // held the first deadlocked the pool for its wait limit (5 s) once as many tables were declared
    // at once as the pool has connections, each holding one and waiting for another.
    await withNamedLock(this.dataSource, `populus_declare:${this.database}:${input.table}`, async (holder) => {
      if ((await runAsync(describeTable(this.sql, input.table), this.executor(holder))) !== null) return;
      for (const statement of createTableStatements(input.table)) await holder.query(statement);
      await holder.query(
        `INSERT INTO ${this.sql.names.tables} (name, display_name, key_attributes, key_hash, create_time) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE name = name`,
        [input.table, input.displayName, JSON.stringify(input.keyAttributes), input.keyHash, input.now],
      );
    });
  }

  /**
   * Reserve. SKIP LOCKED also skips ready jobs that are only locked for a moment by another
   * transaction (a concurrent refresh's ON DUPLICATE KEY UPDATE locks every key it repeats), and
   * an empty answer ends a worker's populate: two populate runs started together on one table
   * made 6 of 80 keys between them (sdk-recovery.test.ts, on a loaded machine) and left the rest
   * pending. So an empty answer is only given once no ready job shows as pending to a plain read
   * (which does not lock): while one does, it is locked by another transaction, which will
   * either lease it (it is then no longer pending) or let it go; try again shortly.
   */
  override async reserve(input: ReserveInput): Promise<LeaseGrant[]> {
    await this.table(input.table);
    const ready = readyFilter(this.sql, input);
    const once = () => this.reserveOnce(input, ready);
    for (let attempt = 1; ; attempt++) {
      // A small Reserve runs at once: it steps over at most a few rows that others hold, and waiting
      // its turn behind other workers' Reserves was most of a one-job Reserve's time with 4 workers
      // (bench scenario 4). Larger ones take turns per table (reserveTurns).
      const leases = input.maxJobs > SIDE_BY_SIDE_RESERVE_JOBS ? await this.reserveTurns.run(input.table, once) : await once();
      if (leases.length > 0 || attempt >= LOCKED_READY_RETRIES || input.callerGone?.() === true || !(await this.anyReady(input.table, ready))) return leases;
      await new Promise((r) => setTimeout(r, LOCKED_READY_PAUSE_MS));
    }
  }

  /** Whether a ready job (by Reserve's filters) shows as pending to a read that takes no locks. */
  private async anyReady(table: string, ready: { sql: string; params: Param[] }): Promise<boolean> {
    const jobs = this.sql.inReadyOrder(this.sql.jobsTable(table));
    const [row] = await this.pooled.rows({ sql: `SELECT 1 AS x FROM ${jobs} WHERE ${ready.sql} LIMIT 1`, params: ready.params });
    return row !== undefined;
  }

  private async reserveOnce(input: ReserveInput, ready: { sql: string; params: Param[] }): Promise<LeaseGrant[]> {
    try {
      return await this.transaction(() => reserve(this.sql, input, ready));
    } catch (err) {
      // Another replica recorded the same request id while this one leased: its record is committed now, so answer its leases.
      if (input.requestId !== null && errno(err) === ER_DUP_ENTRY) return this.transaction(() => reserve(this.sql, input, ready));
      throw err;
    }
  }

  async ping(): Promise<void> {
    try {
      await this.dataSource.query("SELECT 1");
    } catch (err) {
      // Busy is not down: every connection is in use by the database, which answers them.
      if (!(err instanceof DatabaseBusyError)) throw err;
    }
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}
