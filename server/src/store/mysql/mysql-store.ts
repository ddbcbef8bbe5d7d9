/**
 * The MySQL/MariaDB store, through TypeORM's mysql2 pool.
 *
 * Every operation is one READ COMMITTED transaction on one pooled connection.
 * Reservation is `SELECT ... FOR UPDATE SKIP LOCKED` then one UPDATE of the
 * batch (promise 1): concurrent reservers skip each other's rows instead of
 * waiting, and read committed avoids gap locks. Deadlocks and lock-wait
 * timeouts are retried with jitter and then surface as ContentionError.
 *
 * Each statement has a header: purpose, parameters, result, and how
 * store/sqlite/sqlite-store.ts differs.
 */
import { mayHoldStaleJobs, oldestJobSql, staleCandidateSql } from "../stale-candidates.js";
import { createHash, randomBytes } from "node:crypto";
import { DataSource, type QueryRunner } from "typeorm";
import type { MysqlDriver } from "typeorm/driver/mysql/MysqlDriver.js";
import type { DatabaseConfig } from "../../config.js";
import { ContentionError, DatabaseBusyError, DatabaseUnavailableError, InvalidKeyError, LeaseLostError, TableNotFoundError } from "../../errors.js";
import type { AttributeCondition, EncodedKey } from "../../key-codec.js";
import { Change, type ChangeRow, completionChange, type HeldLease, ignoreChange, parseChangeRow, releaseChange } from "../change-log.js";
import { Initial0000000000001 } from "../migrations/mysql/0001-initial.js";
import { ChangeLog0000000000002 } from "../migrations/mysql/0002-change-log.js";
import { ReserveRequests0000000000003 } from "../migrations/mysql/0003-reserve-requests.js";
import {
  describeAttributes,
  JOB_COLUMNS,
  jobPage,
  parseJobCursor,
  type JobRow,
  leaseFilter,
  type HeldGrantRow,
  leaseJobId,
  leaseToken,
  repeatedGrants,
  requestLeaseTokens,
  type ReserveRequestRow,
  restrictionText,
  sameAttributes,
  stagingId,
  type TableRow,
  type TargetRow,
  targetPage,
  toProgressCounts,
  toDeclaredTable,
} from "../row-mapping.js";
import {
  type ChangeBounds,
  type CompleteOutcome,
  type Completion,
  type JobFilter,
  type JobRecord,
  type JobStatusName,
  type JobStore,
  type LeaseGrant,
  type LeaseProgressInput,
  type Page,
  type PageRequest,
  type ProgressCounts,
  type RefreshCounts,
  type RefreshInput,
  type ReserveInput,
  type StoreOptions,
  type DeclaredTable,
  type StoredTarget,
  truncateErrorMessage,
  WORKER_LOST_MESSAGE,
} from "../store.js";
import { boundPoolWaits, type CallbackPool } from "./bounded-pool.js";
import { createTableStatements, jobsTable, targetTable } from "./table-ddl.js";
import { TurnsPerKey } from "../turns.js";

/** The migrations, in order; numbered alike for SQLite. */
export const MYSQL_MIGRATIONS = [Initial0000000000001, ChangeLog0000000000002, ReserveRequests0000000000003];

/** Rows per multi-row INSERT: ~1,000 keeps each statement far below max_allowed_packet. */
const INSERT_CHUNK = 1000;
/** Staging rows of refreshes abandoned before their final call are dropped after this. */
const ABANDONED_REFRESH_MS = 24 * 3600_000;
/**
 * Reserve's tries while ready jobs exist but are all locked by other transactions, and the pause
 * between two: a refresh or another worker's Reserve holds them for milliseconds; a transaction
 * that holds them longer than this (about 2 s) gets an empty answer, as before.
 */
const LOCKED_READY_RETRIES = 40;
const LOCKED_READY_PAUSE_MS = 50;

/** Deadlock / lock-wait retries before ABORTED. */
const CONTENTION_RETRIES = 5;
const RETRYABLE_ERRNO = new Set([1213 /* ER_LOCK_DEADLOCK */, 1205 /* ER_LOCK_WAIT_TIMEOUT */]);
const ER_DUP_ENTRY = 1062;

type MysqlConfig = Extract<DatabaseConfig, { dialect: "mysql" }>;
type Param = string | number | boolean | null;

const JOB_STATUSES: readonly JobStatusName[] = ["pending", "reserved", "success", "error", "ignore"];

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
    extra: { trace: false, queueLimit: waitQueueLimit(options.poolSize) },
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
    const [row] = (await dataSource.query("SELECT VERSION() AS v")) as { v: string }[];
    version = row?.v ?? "";
    checkServerVersion(version);
    // Several servers may start at once: a named lock (per database) makes them migrate one at a time.
    await withNamedLock(dataSource, `populus_migrate:${config.database}`, () => dataSource.runMigrations({ transaction: "each" }));
  } catch (err) {
    await dataSource.destroy();
    throw err;
  }
  return new MysqlStore(dataSource, options, config.database, /mariadb/i.test(version));
}

/**
 * The index hint of statements that address jobs by id (`id IN (...)`, and leaseFilter's `id IN
 * (...) AND lease_token IN (...)`): they read and lock their own rows by primary key. Without it
 * MariaDB scanned the whole jobs table for a 1,000-lease Complete (ANALYZE: 5,000 rows for 1,000),
 * and so whenever a batch was a large part of the table, and with FOR UPDATE (or in an UPDATE) it
 * locked and waited for rows that other workers' transactions held. See prepareSession.
 */
const BY_ID = "FORCE INDEX (PRIMARY)";

/** A job a Complete's lease still holds, as the Complete reads it. */
interface HeldForCompletion {
  readonly id: string;
  readonly key_hash: string;
  readonly key_json: string;
  readonly lease_token: string;
  readonly worker_id: string | null;
}

/**
 * Runs fn while holding a MySQL named lock (GET_LOCK), which is per server and held by one
 * connection: cluster-wide mutual exclusion without a table. Names longer than 64 characters
 * (MySQL's limit) are hashed.
 */
async function withNamedLock<T>(dataSource: DataSource, name: string, fn: () => Promise<T>): Promise<T> {
  const lockName = name.length <= 64 ? name : createHash("sha256").update(name).digest("hex").slice(0, 64);
  const holder = dataSource.createQueryRunner();
  await holder.connect();
  try {
    const [got] = (await holder.query("SELECT GET_LOCK(?, 60) AS ok", [lockName])) as { ok: number | string | null }[];
    if (Number(got?.ok) !== 1) throw new DatabaseUnavailableError(`timed out after 60 s waiting for the database lock "${name}"`);
    try {
      return await fn();
    } finally {
      await holder.query("SELECT RELEASE_LOCK(?)", [lockName]).catch(() => undefined);
    }
  } finally {
    await holder.release();
  }
}

function placeholders(n: number): string {
  return new Array(n).fill("?").join(",");
}

function restrictionSql(conditions: readonly AttributeCondition[]): { sql: string; params: string[] } {
  // JSON_UNQUOTE(JSON_EXTRACT()) yields text in MariaDB and MySQL 8 alike: int64 as its decimal string, true/false.
  // Compared as bytes: every text collation here pads spaces, so "a" would also match "a ".
  const sql = conditions.map((c) => ` AND CAST(JSON_UNQUOTE(JSON_EXTRACT(key_json, '$.${c.name}')) AS BINARY) = CAST(? AS BINARY)`).join("");
  return { sql, params: conditions.map((c) => restrictionText(c.value)) };
}

type SqlFilter = { sql: string; params: Param[] };

/** The jobs Reserve may lease now: pending, scheduled by now, within its priority and restriction. */
function readyFilter(input: ReserveInput): SqlFilter {
  const restriction = restrictionSql(input.restriction);
  return {
    sql: `status = 'pending' AND scheduled_time <= ?${input.maxPriority === null ? "" : " AND priority <= ?"}${restriction.sql}`,
    params: [input.now, ...(input.maxPriority === null ? [] : [input.maxPriority]), ...restriction.params],
  };
}

interface ChangeLogRow {
  id: string;
  table_name: string;
  time: string;
  deltas: string;
  events: string;
}

function errno(err: unknown): number | undefined {
  const e = err as { errno?: number; driverError?: { errno?: number } };
  return e?.errno ?? e?.driverError?.errno;
}

export class MysqlStore implements JobStore {
  readonly dialect = "mysql" as const;
  private readonly tables = new Map<string, DeclaredTable>();
  /**
   * This replica's Reserves of one table take turns: run at once, each one's SKIP LOCKED scan
   * stepped over the rows the others had just locked (up to a batch of 1,000 per worker) before
   * reaching free ones. Replicas still reserve side by side, through SKIP LOCKED.
   */
  private readonly reserveTurns = new TurnsPerKey();
  /** Pooled connections whose session is set up for our transactions (prepareSession). */
  private readonly preparedConnections = new WeakSet<object>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly options: StoreOptions,
    /** The database name, scoping named locks (they are per server, not per database). */
    private readonly database: string,
    /** MariaDB rather than MySQL: its sessions also keep IN lists as they are (prepareSession). */
    private readonly mariadb: boolean,
  ) {}

  /** Runs fn in a READ COMMITTED transaction, retrying deadlocks and lock-wait timeouts with jitter. */
  private async tx<T>(fn: (q: QueryRunner) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const q = this.dataSource.createQueryRunner();
      try {
        await this.prepareSession(q);
        await q.startTransaction();
        const result = await fn(q);
        await q.commitTransaction();
        return result;
      } catch (err) {
        if (q.isTransactionActive) await q.rollbackTransaction().catch(() => undefined);
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
   *   (progressSnapshot).
   * - MariaDB: IN lists stay lists. From 1,000 values (in_predicate_conversion_threshold, and a
   *   batch is up to 1,000 leases) MariaDB turns `id IN (...)` into a join with a table of the
   *   values, and then chose to scan the jobs table: a locking read of 1,000 leases locked (and
   *   waited for) rows of other workers it does not hold. As a list, it is 1,000 primary-key
   *   lookups (with BY_ID). MySQL makes no such conversion.
   */
  private async prepareSession(q: QueryRunner): Promise<void> {
    const connection = (await q.connect()) as object;
    if (this.preparedConnections.has(connection)) return;
    await q.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (this.mariadb) await q.query("SET SESSION in_predicate_conversion_threshold = 0");
    this.preparedConnections.add(connection);
  }

  /** Runs a write and answers the rows it affected; outside a transaction (q null) on a pooled connection. */
  private async run(q: QueryRunner | null, sql: string, params: Param[] = []): Promise<number> {
    const runner = q ?? this.dataSource.createQueryRunner();
    try {
      const result = await runner.query(sql, params, true);
      return (result as { affected?: number }).affected ?? 0;
    } finally {
      if (q === null) await runner.release();
    }
  }

  private async rows<T>(q: QueryRunner | DataSource, sql: string, params: Param[] = []): Promise<T[]> {
    return (await q.query(sql, params)) as T[];
  }

  /**
   * Appends a transaction's change to the log, as the transaction's last statement: the auto-increment
   * id is taken as late as possible, so ids commit nearly in order and tailers rarely meet a gap.
   * SQLite: the same INSERT.
   */
  private async logChange(q: QueryRunner, table: string, change: Change, now: number): Promise<void> {
    if (change.empty) return;
    const c = change.columns();
    await this.run(q, "INSERT INTO `~populus_events` (table_name, time, deltas, events) VALUES (?, ?, ?, ?)", [table, now, c.deltas, c.events]);
  }

  private async table(name: string): Promise<DeclaredTable> {
    const cached = this.tables.get(name);
    if (cached !== undefined) return cached;
    const [row] = await this.rows<TableRow>(this.dataSource, "SELECT name, display_name, key_attributes, create_time FROM `~populus_tables` WHERE name = ?", [
      name,
    ]);
    if (row === undefined) throw new TableNotFoundError(name);
    // Key attributes never change once declared, so the cache cannot go stale.
    const def = toDeclaredTable(row);
    this.tables.set(name, def);
    return def;
  }

  async describeTable(name: string): Promise<DeclaredTable | null> {
    try {
      return await this.table(name);
    } catch (err) {
      if (err instanceof TableNotFoundError) return null;
      throw err;
    }
  }

  async listTables(): Promise<DeclaredTable[]> {
    const rows = await this.rows<TableRow>(this.dataSource, "SELECT name, display_name, key_attributes, create_time FROM `~populus_tables` ORDER BY name");
    return rows.map(toDeclaredTable);
  }

  /**
   * Declares a table: DDL first (it commits implicitly), then the registry row, so a registry row
   * always means both tables exist. Declarers of one table (on any replica) take turns under a
   * named lock; the later ones find the registry row and do nothing.
   */
  private async declare(input: RefreshInput): Promise<DeclaredTable> {
    await withNamedLock(this.dataSource, `populus_declare:${this.database}:${input.table}`, async () => {
      if ((await this.describeTable(input.table)) !== null) return;
      for (const statement of createTableStatements(input.table)) await this.dataSource.query(statement);
      await this.run(
        null,
        "INSERT INTO `~populus_tables` (name, display_name, key_attributes, create_time) VALUES (?, ?, ?, ?) ON DUPLICATE KEY UPDATE name = name",
        [input.table, input.displayName, JSON.stringify(input.keyAttributes), input.now],
      );
    });
    return this.table(input.table);
  }

  async refresh(input: RefreshInput): Promise<RefreshCounts> {
    let def = await this.describeTable(input.table);
    if (def === null) {
      if (input.keyAttributes === null) return { added: 0, removed: 0, orphaned: 0, rePended: 0, anyPending: null };
      def = await this.declare(input);
    }
    if (input.keyAttributes !== null && !sameAttributes(def.keyAttributes, input.keyAttributes)) {
      throw new InvalidKeyError(
        `refresh of "${input.table}": keys ${describeAttributes(input.keyAttributes)} do not match the table's key attributes ${describeAttributes(def.keyAttributes)}`,
      );
    }
    const jobs = jobsTable(input.table);
    const target = targetTable(input.table);
    const staging = stagingId(input.table, input.refreshId ?? `single-${randomBytes(12).toString("hex")}`);
    const final = input.refreshId === null || input.final;
    let dropStaging = false;
    const counts = await this.tx(async (q) => {
      const change = new Change();
      const state = await this.refreshState(q, staging, input);
      let added = 0;
      for (let i = 0; i < input.keys.length; i += INSERT_CHUNK) {
        const chunk = input.keys.slice(i, i + INSERT_CHUNK);
        const hashes = chunk.map((k) => k.hash);
        // Keys already computed or queued are skipped before inserting: point lookups on unique indexes
        // cost far less than inserts that collide (measured: an identical 1M refresh went 3x faster).
        const done = new Set(
          (
            await this.rows<{ key_hash: string }>(
              q,
              `SELECT key_hash FROM ${target} WHERE key_hash IN (${placeholders(hashes.length)})
               UNION ALL SELECT key_hash FROM ${jobs} WHERE key_hash IN (${placeholders(hashes.length)})`,
              [...hashes, ...hashes],
            )
          ).map((r) => r.key_hash),
        );
        const fresh = chunk.filter((k) => !done.has(k.hash));
        if (fresh.length > 0) {
          /*
           * Add `keys - target - jobs` as pending: one multi-row INSERT per 1,000 keys; a key that already has a
           * job (of any status, including ignore) is left as it is and not counted. Params: per key hash, key,
           * priority, create time, scheduled time. Returns: rows added.
           * SQLite: INSERT ... ON CONFLICT (key_hash) DO NOTHING, one prepared statement per key.
           */
          const params: Param[] = [];
          for (const k of fresh) params.push(k.hash, k.json, input.priority, input.now, input.now + input.delayMs);
          added += await this.run(
            q,
            `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
             VALUES ${new Array(fresh.length).fill("(?, ?, 'pending', ?, ?, ?, 0)").join(",")}
             ON DUPLICATE KEY UPDATE id = id`,
            params,
          );
        }
        if (state.staging) {
          // Stage the hashes for stale removal on the final call. SQLite: INSERT OR IGNORE per key.
          const staged: Param[] = [];
          for (const h of hashes) staged.push(staging, h, input.now);
          await this.run(
            q,
            `INSERT INTO \`~populus_refresh_keys\` (refresh, key_hash, create_time)
             VALUES ${new Array(hashes.length).fill("(?, ?, ?)").join(",")}
             ON DUPLICATE KEY UPDATE key_hash = key_hash`,
            staged,
          );
        }
      }
      let removed = 0;
      let rePended = 0;
      if (final) {
        const [carried] = state.staging ? await this.rows(q, "SELECT 1 AS x FROM `~populus_refresh_keys` WHERE refresh = ? LIMIT 1", [staging]) : [];
        if (carried !== undefined) {
          /*
           * Stale removal: jobs older than the stale timeout whose key is not in this refresh's key source.
           * Never reserved or ignore jobs. One statement per status, so the change log gets exact counts.
           * Params: status, cutoff, staging id. SQLite: the same statement.
           */
          for (const status of ["pending", "error", "success"] as const) {
            const n = await this.run(
              q,
              `DELETE FROM ${jobs}
               WHERE status = ? AND create_time < ?
                 AND NOT EXISTS (SELECT 1 FROM \`~populus_refresh_keys\` s WHERE s.refresh = ? AND s.key_hash = ${jobs}.key_hash)`,
              [status, state.staleCutoff, staging],
            );
            change.move(status, null, n);
            removed += n;
          }
        }
        // A refresh of one call wrote no ~populus_refreshes row (refreshState): one round trip fewer.
        if (input.refreshId !== null) await this.run(q, "DELETE FROM `~populus_refreshes` WHERE refresh = ?", [staging]);
        dropStaging = state.staging;
        // Re-pend kept success jobs whose key left the target. SQLite: the same statement.
        rePended = await this.run(
          q,
          `UPDATE ${jobs} SET status = 'pending', scheduled_time = ?, complete_time = NULL, duration_ms = NULL, lease_token = NULL
           WHERE status = 'success' AND NOT EXISTS (SELECT 1 FROM ${target} t WHERE t.key_hash = ${jobs}.key_hash)`,
          [input.now],
        );
        change.move("success", "pending", rePended);
        await this.run(q, "UPDATE `~populus_tables` SET last_refresh_time = ? WHERE name = ?", [input.now, input.table]);
      }
      change.move(null, "pending", added);
      const orphaned =
        input.orphanTimeoutMs === null
          ? 0
          : await this.resetLeases(q, input.table, "reserve_time", input.now - input.orphanTimeoutMs, input.now, change, "wait");
      await this.logChange(q, input.table, change, input.now);
      // Whether a populate that refreshed has anything to reserve. SQLite: the same read.
      const anyPending = final ? (await this.rows(q, `SELECT 1 AS x FROM ${jobs} FORCE INDEX (ready_idx) WHERE status = 'pending' LIMIT 1`)).length > 0 : null;
      return { added, removed, orphaned, rePended, anyPending };
    });
    if (dropStaging) void this.dropStaging(staging, input.now);
    return counts;
  }

  /**
   * A refresh's stale cutoff, fixed at its first call, and whether it stages its keys: only when a
   * job older than the cutoff existed then. Otherwise no job can be stale for this refresh, and a
   * refresh of a fresh or recently refreshed table (the common case) writes no staging rows at all
   * (measured: staging was most of a repeated 1M-key refresh in the default 128 MB buffer pool).
   * SQLite: the same, without FOR UPDATE.
   */
  private async refreshState(q: QueryRunner, staging: string, input: RefreshInput): Promise<{ staleCutoff: number; staging: boolean }> {
    const read = async () => {
      const [row] = await this.rows<{ stale_cutoff: string; staging: number }>(
        q,
        "SELECT stale_cutoff, staging FROM `~populus_refreshes` WHERE refresh = ? FOR UPDATE",
        [staging],
      );
      return row === undefined ? undefined : { staleCutoff: Number(row.stale_cutoff), staging: Number(row.staging) === 1 };
    };
    if (input.refreshId !== null) {
      const known = await read();
      if (known !== undefined) return known;
    }
    const staleCutoff = input.now - input.staleTimeoutMs;
    const jobs = jobsTable(input.table);
    const [oldest] = await this.rows<{ create_time: string }>(q, oldestJobSql(jobs));
    const candidate = mayHoldStaleJobs(oldest === undefined ? undefined : Number(oldest.create_time), staleCutoff)
      ? (await this.rows(q, staleCandidateSql(jobs), [staleCutoff]))[0]
      : undefined;
    const state = { staleCutoff, staging: candidate !== undefined };
    if (input.refreshId === null) return state;
    // Concurrent first calls of one refresh: the first insert wins and every call reads its row.
    await this.run(
      q,
      "INSERT INTO `~populus_refreshes` (refresh, table_name, stale_cutoff, staging, create_time) VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE refresh = refresh",
      [staging, input.table, state.staleCutoff, state.staging ? 1 : 0, input.now],
    );
    return (await read()) ?? state;
  }

  /**
   * Deletes a finished refresh's staging rows (and abandoned ones) after its answer, in chunks:
   * a million-row DELETE inside the final call took seconds and held its locks meanwhile.
   */
  private async dropStaging(staging: string, now: number): Promise<void> {
    try {
      while ((await this.run(null, "DELETE FROM `~populus_refresh_keys` WHERE refresh = ? LIMIT 10000", [staging])) > 0);
      while ((await this.run(null, "DELETE FROM `~populus_refresh_keys` WHERE create_time < ? LIMIT 10000", [now - ABANDONED_REFRESH_MS])) > 0);
      await this.run(null, "DELETE FROM `~populus_refreshes` WHERE create_time < ?", [now - ABANDONED_REFRESH_MS]);
    } catch {
      // Left for the next refresh's abandoned-row cleanup.
    }
  }

  /**
   * Reserved jobs whose `column` is before `cutoff` go back to pending, or to error once their worker
   * was lost maxLostAttempts times; both logged with their keys. Rows another transaction holds (a
   * Complete in flight) are skipped: the next sweep sees them if they are still reserved then.
   * Returns rows changed. SQLite: || instead of CONCAT, no locking clause.
   */
  private async resetLeases(
    q: QueryRunner,
    table: string,
    column: "lease_expire_time" | "reserve_time",
    cutoff: number,
    now: number,
    change: Change,
    /**
     * The sweep skips rows another transaction holds (a Complete or Heartbeat
     * in flight: its lease is being settled now, and the next sweep sees it).
     * An orphan refresh waits for them: its caller asked for every lease older
     * than the timeout and reads the count, so a row locked for an instant by
     * the sweep's own scan must not go uncounted.
     */
    locked: "skip" | "wait",
  ): Promise<number> {
    const jobs = jobsTable(table);
    const max = this.options.maxLostAttempts;
    const rows = await this.rows<{ id: string; key_json: string; attempts: number; worker_id: string | null }>(
      q,
      `SELECT id, key_json, attempts, worker_id FROM ${jobs} WHERE status = 'reserved' AND ${column} < ? FOR UPDATE${locked === "skip" ? " SKIP LOCKED" : ""}`,
      [cutoff],
    );
    if (rows.length === 0) return 0;
    const lost = rows.filter((r) => Number(r.attempts) >= max);
    const back = rows.filter((r) => Number(r.attempts) < max);
    if (lost.length > 0) {
      await this.run(
        q,
        `UPDATE ${jobs} ${BY_ID} SET status = 'error', error_message = CONCAT(?, attempts, ?), complete_time = ?, lease_token = NULL, lease_expire_time = NULL
         WHERE id IN (${placeholders(lost.length)})`,
        [WORKER_LOST_MESSAGE.before, WORKER_LOST_MESSAGE.after, now, ...lost.map((r) => r.id)],
      );
      change.move("reserved", "error", lost.length);
      change.jobs(
        "error",
        lost.map((r) => r.key_json),
        { errorMessages: lost.map((r) => `${WORKER_LOST_MESSAGE.before}${r.attempts}${WORKER_LOST_MESSAGE.after}`) },
      );
    }
    if (back.length > 0) {
      await this.run(
        q,
        `UPDATE ${jobs} ${BY_ID} SET status = 'pending', complete_time = NULL, lease_token = NULL, lease_expire_time = NULL WHERE id IN (${placeholders(back.length)})`,
        back.map((r) => r.id),
      );
      change.move("reserved", "pending", back.length);
      change.jobs(
        "pending",
        back.map((r) => r.key_json),
      );
    }
    return rows.length;
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
  async reserve(input: ReserveInput): Promise<LeaseGrant[]> {
    await this.table(input.table);
    const ready = readyFilter(input);
    for (let attempt = 1; ; attempt++) {
      const leases = await this.reserveTurns.run(input.table, () => this.reserveOnce(input, ready));
      if (leases.length > 0 || attempt >= LOCKED_READY_RETRIES || !(await this.anyReady(input.table, ready))) return leases;
      await new Promise((r) => setTimeout(r, LOCKED_READY_PAUSE_MS));
    }
  }

  /** Whether a ready job (by Reserve's filters) shows as pending to a read that takes no locks. */
  private async anyReady(table: string, ready: SqlFilter): Promise<boolean> {
    const [row] = await this.rows(this.dataSource, `SELECT 1 AS x FROM ${jobsTable(table)} FORCE INDEX (ready_idx) WHERE ${ready.sql} LIMIT 1`, ready.params);
    return row !== undefined;
  }

  private async reserveOnce(input: ReserveInput, ready: SqlFilter): Promise<LeaseGrant[]> {
    try {
      return await this.leaseReady(input, ready);
    } catch (err) {
      // Another replica recorded the same request id while this one leased: its record is committed now, so answer its leases.
      if (input.requestId !== null && errno(err) === ER_DUP_ENTRY) return this.leaseReady(input, ready);
      throw err;
    }
  }

  /** One Reserve's transaction: the leases of an earlier Reserve with the same request id, else the next ready jobs. */
  private async leaseReady(input: ReserveInput, ready: SqlFilter): Promise<LeaseGrant[]> {
    const jobs = jobsTable(input.table);
    return this.tx(async (q) => {
      if (input.requestId !== null) {
        const repeated = await this.repeatedReserve(q, input.table, input.requestId, input.now);
        if (repeated.length > 0) return repeated;
      }
      /*
       * The next ready jobs in the total order priority, scheduled_time, id, skipping rows other
       * reservers hold. Params: readyFilter's, limit. SQLite: no locking clause (the IMMEDIATE
       * transaction is the only writer).
       */
      const rows = await this.rows<{ id: string; key_json: string; priority: number; attempts: number }>(
        q,
        `SELECT id, key_json, priority, attempts FROM ${jobs} FORCE INDEX (ready_idx)
         WHERE ${ready.sql} ORDER BY priority, scheduled_time, id LIMIT ? FOR UPDATE SKIP LOCKED`,
        [...ready.params, input.maxJobs],
      );
      if (rows.length === 0) return [];
      const prefix = randomBytes(16).toString("hex");
      const expire = input.now + input.leaseMs;
      const w = input.worker;
      /*
       * Lease the whole batch in one statement; token = prefix + '-' + id in base 36 (as leaseToken()).
       * Params: prefix, now, expiry, worker identity, ids. SQLite: one prepared UPDATE per job, in-process.
       */
      await this.run(
        q,
        `UPDATE ${jobs} ${BY_ID} SET status = 'reserved', lease_token = CONCAT(?, '-', LOWER(CONV(id, 10, 36))), reserve_time = ?,
           lease_expire_time = ?, attempts = attempts + 1, worker_id = ?, host = ?, pid = ?, user = ?, code_version = ?,
           progress = NULL, progress_message = NULL
         WHERE id IN (${placeholders(rows.length)})`,
        [prefix, input.now, expire, w.workerId, w.host, w.pid, w.user, w.codeVersion, ...rows.map((r) => r.id)],
      );
      const change = new Change().move("pending", "reserved", rows.length).jobs(
        "reserved",
        rows.map((r) => r.key_json),
        { workerId: w.workerId },
      );
      await this.logChange(q, input.table, change, input.now);
      if (input.requestId !== null) {
        // A plain INSERT: a replica that recorded the same id meanwhile makes it fail (reserveOnce answers that one's leases).
        await this.run(q, "INSERT INTO `~populus_reserve_requests` (table_name, request_id, lease_prefix, job_ids, lease_expire_time) VALUES (?, ?, ?, ?, ?)", [
          input.table,
          input.requestId,
          prefix,
          rows.map((r) => r.id).join(","),
          expire,
        ]);
      }
      return rows.map((row) => ({
        keyJson: row.key_json,
        leaseToken: leaseToken(prefix, row.id),
        leaseExpireTime: expire,
        attempt: Number(row.attempts) + 1,
        priority: Number(row.priority),
      }));
    });
  }

  async complete(table: string, completions: readonly Completion[], keepCompleted: boolean, now: number): Promise<CompleteOutcome> {
    const jobs = jobsTable(table);
    const target = targetTable(table);
    await this.table(table);
    const tokens = completions.map((c) => c.leaseToken);
    // MariaDB deletes the held jobs and reads them in one statement; see heldForCompletion.
    const deleteAsRead = this.mariadb && !keepCompleted;
    return this.tx(async (q) => {
      const held = await this.heldForCompletion(q, jobs, tokens, deleteAsRead);
      const byToken = new Map(held.map((r) => [r.lease_token, r]));
      const notHeld = tokens.filter((t) => !byToken.has(t));
      let alreadyCommitted = 0;
      if (notHeld.length > 0) {
        // A repeat of a Complete that committed: its token is on the target row.
        const done = new Set(
          (
            await this.rows<{ lease_token: string }>(q, `SELECT lease_token FROM ${target} WHERE lease_token IN (${placeholders(notHeld.length)})`, notHeld)
          ).map((r) => r.lease_token),
        );
        const lost = notHeld.filter((t) => !done.has(t));
        if (lost.length > 0) throw new LeaseLostError(lost);
        alreadyCommitted = done.size;
      }
      if (held.length === 0) return { committed: 0, alreadyCommitted };
      /*
       * Write the batch's results in one statement, keeping a row already there (a committed result is
       * never overwritten). SQLite: ON CONFLICT (key_hash) DO NOTHING, one prepared INSERT per result.
       */
      const params: Param[] = [];
      for (const c of completions) {
        const row = byToken.get(c.leaseToken);
        if (row !== undefined) params.push(row.key_hash, row.key_json, c.resultJson, c.leaseToken, now);
      }
      const written = await this.run(
        q,
        `INSERT INTO ${target} (key_hash, key_json, result_json, lease_token, complete_time)
         VALUES ${new Array(held.length).fill("(?, ?, ?, ?, ?)").join(",")}
         ON DUPLICATE KEY UPDATE key_hash = key_hash`,
        params,
      );
      const ids = held.map((r) => r.id);
      if (deleteAsRead) {
        // Already deleted by heldForCompletion.
      } else if (keepCompleted) {
        await this.run(
          q,
          `UPDATE ${jobs} ${BY_ID} SET status = 'success', complete_time = ?, duration_ms = ? - reserve_time, lease_expire_time = NULL
           WHERE id IN (${placeholders(ids.length)})`,
          [now, now, ...ids],
        );
      } else {
        // No index hint in a single-table DELETE: a join with the ids as a table makes it primary-key lookups too (BY_ID).
        await this.run(q, `DELETE j FROM ${jobs} AS j JOIN JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS done ON j.id = done.id`, [
          JSON.stringify(ids.map(Number)),
        ]);
      }
      await this.logChange(q, table, completionChange(held, written, keepCompleted), now);
      return { committed: held.length, alreadyCommitted };
    });
  }

  /**
   * The jobs these leases still hold, locked so a concurrent sweep cannot take them mid-commit.
   * With `deleteAsRead` (MariaDB, a Complete that keeps no job row) the same statement also deletes
   * them (DELETE ... RETURNING): the locking read was a sixth of the database's work per job, and
   * a lease found lost afterwards rolls the whole transaction back, deleted rows included.
   * A single-table DELETE takes no index hint, and without one MariaDB scanned (and locked) the
   * whole table when the batch was most of it, waiting on rows other workers hold; ordered by id
   * with a LIMIT, it reads the ids as primary-key ranges, as BY_ID does (store-conformance.test.ts,
   * "lock only their own rows"). MySQL has no DELETE ... RETURNING. SQLite: the SELECT without
   * FOR UPDATE (single writer).
   */
  private async heldForCompletion(q: QueryRunner, jobs: string, tokens: readonly string[], deleteAsRead: boolean): Promise<HeldForCompletion[]> {
    const leases = leaseFilter(tokens);
    const columns = "id, key_hash, key_json, lease_token, worker_id";
    const sql = deleteAsRead
      ? `DELETE FROM ${jobs} WHERE status = 'reserved' AND ${leases.sql} ORDER BY id LIMIT ${tokens.length} RETURNING ${columns}`
      : `SELECT ${columns} FROM ${jobs} ${BY_ID} WHERE status = 'reserved' AND ${leases.sql} FOR UPDATE`;
    return this.rows<HeldForCompletion>(q, sql, leases.params);
  }

  async fail(table: string, token: string, errorMessage: string, errorStack: string, now: number): Promise<void> {
    const jobs = jobsTable(table);
    await this.table(table);
    await this.tx(async (q) => {
      // Fenced failure: only the current lease may set error. SQLite: the same UPDATE.
      const changed = await this.run(
        q,
        `UPDATE ${jobs} SET status = 'error', error_message = ?, error_stack = ?, complete_time = ?, duration_ms = ? - reserve_time,
           lease_expire_time = NULL
         WHERE status = 'reserved' AND id = ? AND lease_token = ?`,
        [truncateErrorMessage(errorMessage), errorStack, now, now, leaseJobId(token), token],
      );
      if (changed === 0) {
        const [repeat] = await this.rows(q, `SELECT 1 AS x FROM ${jobs} WHERE status = 'error' AND id = ? AND lease_token = ?`, [leaseJobId(token), token]);
        if (repeat === undefined) throw new LeaseLostError([token]);
        return;
      }
      const [row] = await this.rows<{ key_json: string; worker_id: string | null; error_message: string }>(
        q,
        `SELECT key_json, worker_id, error_message FROM ${jobs} WHERE id = ?`,
        [leaseJobId(token)],
      );
      if (row !== undefined) {
        const change = new Change()
          .move("reserved", "error", 1)
          .jobs("error", [row.key_json], { workerId: row.worker_id ?? "", errorMessages: [row.error_message] });
        await this.logChange(q, table, change, now);
      }
    });
  }

  /** The given leases that are still held, locked, with their keys and holders. SQLite: the same SELECT without FOR UPDATE. */
  private async heldTokens(q: QueryRunner, jobs: string, tokens: readonly string[]): Promise<Map<string, HeldLease>> {
    const leases = leaseFilter(tokens);
    const rows = await this.rows<{ lease_token: string; key_json: string; worker_id: string | null }>(
      q,
      `SELECT lease_token, key_json, worker_id FROM ${jobs} ${BY_ID} WHERE status = 'reserved' AND ${leases.sql} FOR UPDATE`,
      leases.params,
    );
    return new Map(rows.map((r) => [r.lease_token, { keyJson: r.key_json, workerId: r.worker_id ?? "" }]));
  }

  async heartbeat(
    table: string,
    tokens: readonly string[],
    leaseMs: number,
    progress: readonly LeaseProgressInput[],
    now: number,
  ): Promise<{ lost: string[]; leaseExpireTime: number }> {
    const jobs = jobsTable(table);
    await this.table(table);
    const expire = now + leaseMs;
    return this.tx(async (q) => {
      const held = await this.heldTokens(q, jobs, tokens);
      if (held.size > 0) {
        // Extend every held lease in one statement. SQLite: the same UPDATE.
        const leases = leaseFilter([...held.keys()]);
        await this.run(q, `UPDATE ${jobs} ${BY_ID} SET lease_expire_time = ? WHERE status = 'reserved' AND ${leases.sql}`, [expire, ...leases.params]);
      }
      for (const p of progress) {
        if (held.has(p.leaseToken)) {
          await this.run(q, `UPDATE ${jobs} SET progress = ?, progress_message = ? WHERE status = 'reserved' AND id = ? AND lease_token = ?`, [
            p.progress,
            p.message,
            leaseJobId(p.leaseToken),
            p.leaseToken,
          ]);
        }
      }
      return { lost: tokens.filter((t) => !held.has(t)), leaseExpireTime: expire };
    });
  }

  async release(table: string, tokens: readonly string[]): Promise<{ released: number; lost: string[] }> {
    const jobs = jobsTable(table);
    await this.table(table);
    return this.tx(async (q) => {
      const held = await this.heldTokens(q, jobs, tokens);
      const leases = leaseFilter([...held.keys()]);
      // Give leases back without charging an attempt. SQLite: MAX() instead of GREATEST().
      const released =
        held.size === 0
          ? 0
          : await this.run(
              q,
              `UPDATE ${jobs} ${BY_ID} SET status = 'pending', lease_token = NULL, lease_expire_time = NULL, attempts = GREATEST(attempts - 1, 0)
               WHERE status = 'reserved' AND ${leases.sql}`,
              leases.params,
            );
      await this.logChange(q, table, releaseChange(held), Date.now());
      return { released, lost: tokens.filter((t) => !held.has(t)) };
    });
  }

  /**
   * The leases an earlier Reserve with this request id granted that are still held, while its lease
   * length has not passed; empty when there is none. A record whose leases are all gone is deleted,
   * so this Reserve's own record can take its place. SQLite: the same reads.
   */
  private async repeatedReserve(q: QueryRunner, table: string, requestId: string, now: number): Promise<LeaseGrant[]> {
    const [request] = await this.rows<ReserveRequestRow & { lease_expire_time: string }>(
      q,
      "SELECT lease_prefix, job_ids, lease_expire_time FROM `~populus_reserve_requests` WHERE table_name = ? AND request_id = ? FOR UPDATE",
      [table, requestId],
    );
    if (request === undefined) return [];
    if (Number(request.lease_expire_time) > now) {
      const tokens = requestLeaseTokens(request);
      const leases = leaseFilter(tokens);
      const held = await this.rows<HeldGrantRow>(
        q,
        `SELECT lease_token, key_json, priority, attempts, lease_expire_time FROM ${jobsTable(table)} ${BY_ID} WHERE status = 'reserved' AND ${leases.sql}`,
        leases.params,
      );
      if (held.length > 0) return repeatedGrants(tokens, held);
    }
    await this.run(q, "DELETE FROM `~populus_reserve_requests` WHERE table_name = ? AND request_id = ?", [table, requestId]);
    return [];
  }

  async expireLeases(now: number): Promise<number> {
    let expired = 0;
    for (const t of await this.listTables()) {
      expired += await this.tx(async (q) => {
        const change = new Change();
        const n = await this.resetLeases(q, t.name, "lease_expire_time", now, now, change, "skip");
        await this.logChange(q, t.name, change, now);
        return n;
      });
    }
    // Past its lease length a Reserve is not repeated (a retry leases anew), so its record can go.
    await this.run(null, "DELETE FROM `~populus_reserve_requests` WHERE lease_expire_time <= ?", [now]);
    return expired;
  }

  async getProgress(table: string): Promise<ProgressCounts> {
    await this.table(table);
    const rows = await this.rows<{ status: string; n: string }>(this.dataSource, `SELECT status, COUNT(*) AS n FROM ${jobsTable(table)} GROUP BY status`);
    const [t] = await this.rows<{ n: string }>(this.dataSource, `SELECT COUNT(*) AS n FROM ${targetTable(table)}`);
    return toProgressCounts(rows, t?.n ?? 0);
  }

  async listJobs(table: string, filter: JobFilter, page: PageRequest): Promise<Page<JobRecord>> {
    await this.table(table);
    const r = restrictionSql(filter.restriction);
    // A page in reservation order, keyset-paged on (priority, scheduled_time, id). SQLite: the same.
    const rows = await this.rows<JobRow>(
      this.dataSource,
      `SELECT ${JOB_COLUMNS} FROM ${jobsTable(table)}
       WHERE (priority, scheduled_time, id) > (?, ?, ?)${filter.statuses.length > 0 ? ` AND status IN (${placeholders(filter.statuses.length)})` : ""}${
         filter.maxPriority === null ? "" : " AND priority <= ?"
       }${r.sql}
       ORDER BY priority, scheduled_time, id LIMIT ?`,
      [...parseJobCursor(page.after), ...filter.statuses, ...(filter.maxPriority === null ? [] : [filter.maxPriority]), ...r.params, page.pageSize + 1],
    );
    return jobPage(rows, page.pageSize);
  }

  async deleteJobs(table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Promise<number> {
    const jobs = jobsTable(table);
    await this.table(table);
    // One DELETE per status, so the change log gets exact counts. SQLite: the same statements.
    const each = statuses.length > 0 ? statuses : JOB_STATUSES;
    return this.tx(async (q) => {
      const change = new Change();
      let deleted = 0;
      const remove = async (sql: string, params: Param[], status: JobStatusName) => {
        const n = await this.run(q, sql, [...params, status]);
        change.move(status, null, n);
        deleted += n;
      };
      for (const status of each) {
        if (keys.length === 0) await remove(`DELETE FROM ${jobs} WHERE status = ?`, [], status);
        for (let i = 0; i < keys.length; i += INSERT_CHUNK) {
          const chunk = keys.slice(i, i + INSERT_CHUNK).map((k) => k.hash);
          await remove(`DELETE FROM ${jobs} WHERE key_hash IN (${placeholders(chunk.length)}) AND status = ?`, chunk, status);
        }
      }
      await this.logChange(q, table, change, Date.now());
      return deleted;
    });
  }

  async ignore(table: string, keys: readonly EncodedKey[], now: number): Promise<number> {
    const jobs = jobsTable(table);
    await this.table(table);
    return this.tx(async (q) => {
      let ignored = 0;
      for (let i = 0; i < keys.length; i += INSERT_CHUNK) {
        const chunk = keys.slice(i, i + INSERT_CHUNK);
        // The statuses the keys leave, for the change log (locked: the upsert below changes them).
        const before = await this.rows<{ status: JobStatusName }>(
          q,
          `SELECT status FROM ${jobs} WHERE key_hash IN (${placeholders(chunk.length)}) FOR UPDATE`,
          chunk.map((k) => k.hash),
        );
        const change = ignoreChange(
          chunk,
          before.map((r) => r.status),
        );
        const params: Param[] = [];
        for (const k of chunk) params.push(k.hash, k.json, now, now);
        /*
         * Insert or update each key's job to ignore; an ignored reserved job loses its lease.
         * SQLite: INSERT ... ON CONFLICT DO UPDATE. MySQL counts 2 per updated row: count the keys instead.
         */
        await this.run(
          q,
          `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
           VALUES ${new Array(chunk.length).fill("(?, ?, 'ignore', 5, ?, ?, 0)").join(",")}
           ON DUPLICATE KEY UPDATE status = 'ignore', lease_token = NULL, lease_expire_time = NULL`,
          params,
        );
        ignored += chunk.length;
        await this.logChange(q, table, change, now);
      }
      return ignored;
    });
  }

  async deleteTargets(table: string, keys: readonly EncodedKey[] | "all"): Promise<number> {
    const target = targetTable(table);
    await this.table(table);
    return this.tx(async (q) => {
      let deleted = 0;
      if (keys === "all") deleted = await this.run(q, `DELETE FROM ${target}`);
      else {
        for (let i = 0; i < keys.length; i += INSERT_CHUNK) {
          const chunk = keys.slice(i, i + INSERT_CHUNK).map((k) => k.hash);
          deleted += await this.run(q, `DELETE FROM ${target} WHERE key_hash IN (${placeholders(chunk.length)})`, chunk);
        }
      }
      await this.logChange(q, table, new Change().move("target", null, deleted), Date.now());
      return deleted;
    });
  }

  async listTargets(table: string, restriction: readonly AttributeCondition[], page: PageRequest): Promise<Page<StoredTarget>> {
    await this.table(table);
    const r = restrictionSql(restriction);
    const rows = await this.rows<TargetRow>(
      this.dataSource,
      `SELECT key_hash, key_json, result_json, complete_time FROM ${targetTable(table)}
       WHERE key_hash > ?${r.sql} ORDER BY key_hash LIMIT ?`,
      [page.after ?? "", ...r.params, page.pageSize + 1],
    );
    return targetPage(rows, page.pageSize);
  }

  async readChanges(afterId: number, limit: number, table: string | null): Promise<ChangeRow[]> {
    const rows = await this.rows<ChangeLogRow>(
      this.dataSource,
      `SELECT id, table_name, time, deltas, events FROM \`~populus_events\` WHERE id > ?${table === null ? "" : " AND table_name = ?"} ORDER BY id LIMIT ?`,
      [afterId, ...(table === null ? [] : [table]), limit],
    );
    return rows.map(parseChangeRow);
  }

  async changeBounds(): Promise<ChangeBounds> {
    const [row] = await this.rows<{ last_id: string | null; pruned: string | null }>(
      this.dataSource,
      "SELECT (SELECT MAX(id) FROM `~populus_events`) AS last_id, (SELECT value FROM `~populus_meta` WHERE name = 'events_pruned_through') AS pruned",
    );
    const prunedThrough = Number(row?.pruned ?? 0);
    return { lastId: Math.max(Number(row?.last_id ?? 0), prunedThrough), prunedThrough };
  }

  async progressSnapshot(table: string, afterId: number): Promise<{ counts: ProgressCounts; includedIds: number[] }> {
    await this.table(table);
    const q = this.dataSource.createQueryRunner();
    await q.connect();
    try {
      // One consistent snapshot (InnoDB MVCC) for the counts and the log, so that the log tells which changes the counts hold.
      await q.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
      await q.query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
      try {
        const ids = await this.rows<{ id: string }>(q, "SELECT id FROM `~populus_events` WHERE id > ? AND table_name = ?", [afterId, table]);
        const rows = await this.rows<{ status: string; n: string }>(q, `SELECT status, COUNT(*) AS n FROM ${jobsTable(table)} GROUP BY status`);
        const [t] = await this.rows<{ n: string }>(q, `SELECT COUNT(*) AS n FROM ${targetTable(table)}`);
        return { counts: toProgressCounts(rows, t?.n ?? 0), includedIds: ids.map((r) => Number(r.id)) };
      } finally {
        await q.query("COMMIT");
      }
    } finally {
      await q.release();
    }
  }

  async pruneChanges(before: number): Promise<number> {
    const [row] = await this.rows<{ through: string | null }>(this.dataSource, "SELECT MAX(id) AS through FROM `~populus_events` WHERE time < ?", [before]);
    if (row?.through == null) return 0;
    const through = Number(row.through);
    // Record the bound first: a cursor below it is answered OUT_OF_RANGE even while the deletes run.
    await this.run(
      null,
      "INSERT INTO `~populus_meta` (name, value) VALUES ('events_pruned_through', ?) ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))",
      [through],
    );
    let pruned = 0;
    for (let n = -1; n !== 0; pruned += n) n = await this.run(null, "DELETE FROM `~populus_events` WHERE id <= ? LIMIT 10000", [through]);
    return pruned;
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
