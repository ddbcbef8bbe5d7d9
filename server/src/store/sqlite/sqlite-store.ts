/**
 * The embedded store: one SQLite file through better-sqlite3.
 *
 * TypeORM opens the file and runs the migrations; the operations then run on
 * TypeORM's own better-sqlite3 connection as synchronous `BEGIN IMMEDIATE`
 * transactions. better-sqlite3 is synchronous, so no other request can
 * interleave inside a transaction of this process, and IMMEDIATE takes the
 * write lock up front, so another process on the same file waits (busy
 * timeout) instead of failing half-way. That is promise 1 on SQLite: one
 * writer transaction per reservation.
 *
 * Each statement below has a header: purpose, parameters, result, and how
 * store/mysql/mysql-store.ts differs.
 */
import { mayHoldStaleJobs, oldestJobSql, staleCandidateSql } from "../stale-candidates.js";
import { randomBytes } from "node:crypto";
import type BetterSqlite3 from "better-sqlite3";
import { DataSource } from "typeorm";
import { InvalidKeyError, TableNotFoundError, LeaseLostError } from "../../errors.js";
import type { AttributeCondition, EncodedKey } from "../../key-codec.js";
import { Change, type ChangeRow, completionChange, type HeldLease, ignoreChange, parseChangeRow, releaseChange } from "../change-log.js";
import { Initial0000000000001 } from "../migrations/sqlite/0001-initial.js";
import { ChangeLog0000000000002 } from "../migrations/sqlite/0002-change-log.js";
import { ReserveRequests0000000000003 } from "../migrations/sqlite/0003-reserve-requests.js";
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
import { createTableStatements, jobsTable, targetTable } from "./table-ddl.js";

/** Staging rows of refreshes abandoned before their final call are dropped after this. */
const ABANDONED_REFRESH_MS = 24 * 3600_000;

/** The migrations, in order; numbered alike for MySQL. */
export const SQLITE_MIGRATIONS = [Initial0000000000001, ChangeLog0000000000002, ReserveRequests0000000000003];

const JOB_STATUSES: readonly JobStatusName[] = ["pending", "reserved", "success", "error", "ignore"];

/** Opens (creating if needed) and migrates the SQLite file at `path`. */
export async function openSqliteStore(path: string, options: StoreOptions): Promise<SqliteStore> {
  const dataSource = new DataSource({
    type: "better-sqlite3",
    database: path,
    migrations: SQLITE_MIGRATIONS,
    migrationsTableName: "~populus_migrations",
    migrationsTransactionMode: "none",
    // WAL lets readers (ListJobs, Watch) run beside the writer; synchronous stays FULL (durable).
    enableWAL: true,
    // Busy timeout (ms) when another process holds the write lock.
    timeout: 5000,
  });
  await dataSource.initialize();
  const db = (dataSource.driver as unknown as { databaseConnection: BetterSqlite3.Database }).databaseConnection;
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
  return new SqliteStore(dataSource, db, options);
}

function restrictionSql(conditions: readonly AttributeCondition[]): { sql: string; params: (string | number)[] } {
  // json_extract yields text for strings (and int64, stored as decimal strings), real for doubles, 1/0 for booleans.
  const sql = conditions.map((c) => ` AND json_extract(key_json, '$.${c.name}') = ?`).join("");
  const params = conditions.map((c) => (typeof c.value === "boolean" ? (c.value ? 1 : 0) : c.value));
  return { sql, params };
}

function placeholders(n: number): string {
  return new Array(n).fill("?").join(",");
}

type SqlFilter = ReturnType<typeof leaseFilter>;

/** Statements kept prepared; past this many the cache starts again (a statement's text names its table and batch size). */
const MAX_PREPARED = 512;

/**
 * `status = 'reserved'` for statements that address jobs by id (leaseFilter): the unary + keeps
 * SQLite from walking the ready index's reserved entries (every job in flight) and makes it look
 * the ids up by rowid.
 */
const HELD = "+status = 'reserved'";

export class SqliteStore implements JobStore {
  readonly dialect = "sqlite" as const;
  private readonly tables = new Map<string, DeclaredTable>();
  /**
   * The per-job path's statements by their text, prepared once: a Reserve or Complete of 1,000
   * jobs compiled statements of 1,000 to 2,000 placeholders on every call (about a tenth of the
   * server's CPU in a drain).
   */
  private readonly statements = new Map<string, BetterSqlite3.Statement>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly db: BetterSqlite3.Database,
    private readonly options: StoreOptions,
  ) {}

  private prepared(sql: string): BetterSqlite3.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (this.statements.size >= MAX_PREPARED) this.statements.clear();
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Appends a transaction's change to the log, as its last statement. MySQL: the same INSERT. */
  private logChange(table: string, change: Change, now: number): void {
    if (change.empty) return;
    const c = change.columns();
    this.prepared(`INSERT INTO "~populus_events" (table_name, time, deltas, events) VALUES (?, ?, ?, ?)`).run(table, now, c.deltas, c.events);
  }

  private table(name: string): DeclaredTable {
    const cached = this.tables.get(name);
    if (cached !== undefined) return cached;
    const row = this.prepared(`SELECT name, display_name, key_attributes, create_time FROM "~populus_tables" WHERE name = ?`).get(name) as TableRow | undefined;
    if (row === undefined) throw new TableNotFoundError(name);
    // Key attributes never change once declared, so the cache cannot go stale.
    const def = toDeclaredTable(row);
    this.tables.set(name, def);
    return def;
  }

  async describeTable(name: string): Promise<DeclaredTable | null> {
    try {
      return this.table(name);
    } catch (err) {
      if (err instanceof TableNotFoundError) return null;
      throw err;
    }
  }

  async listTables(): Promise<DeclaredTable[]> {
    const rows = this.prepared(`SELECT name, display_name, key_attributes, create_time FROM "~populus_tables" ORDER BY name`).all() as TableRow[];
    return rows.map(toDeclaredTable);
  }

  async refresh(input: RefreshInput): Promise<RefreshCounts> {
    return this.tx(() => {
      let def: DeclaredTable | null;
      try {
        def = this.table(input.table);
      } catch (err) {
        if (!(err instanceof TableNotFoundError)) throw err;
        def = null;
      }
      if (def === null) {
        // A call with no keys on an undeclared table has nothing to maintain.
        if (input.keyAttributes === null) return { added: 0, removed: 0, orphaned: 0, rePended: 0, anyPending: null };
        this.declare(input);
      } else if (input.keyAttributes !== null && !sameAttributes(def.keyAttributes, input.keyAttributes)) {
        throw new InvalidKeyError(
          `refresh of "${input.table}": keys ${describeAttributes(input.keyAttributes)} do not match the table's key attributes ${describeAttributes(def.keyAttributes)}`,
        );
      }
      const jobs = jobsTable(input.table);
      const target = targetTable(input.table);
      const staging = stagingId(input.table, input.refreshId ?? `single-${randomBytes(12).toString("hex")}`);
      const final = input.refreshId === null || input.final;
      const state = this.refreshState(staging, input);
      const change = new Change();
      /*
       * Add `keys - target - jobs` as pending; a key that already has a job (any status) is left as it is.
       * In-process prepared statements per key cost microseconds, so no set-based form is needed here.
       * MySQL: a target lookup and a multi-row INSERT ... ON DUPLICATE KEY UPDATE per 1,000 keys.
       */
      const inTarget = this.prepared(`SELECT 1 FROM ${target} WHERE key_hash = ?`).pluck();
      const insert = this.prepared(
        `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
         VALUES (?, ?, 'pending', ?, ?, ?, 0) ON CONFLICT (key_hash) DO NOTHING`,
      );
      const stage = this.prepared(`INSERT OR IGNORE INTO "~populus_refresh_keys" (refresh, key_hash, create_time) VALUES (?, ?, ?)`);
      let added = 0;
      for (const key of input.keys) {
        if (inTarget.get(key.hash) === undefined) added += insert.run(key.hash, key.json, input.priority, input.now, input.now + input.delayMs).changes;
        if (state.staging) stage.run(staging, key.hash, input.now);
      }
      let removed = 0;
      let rePended = 0;
      if (final) {
        if (state.staging && this.prepared(`SELECT 1 FROM "~populus_refresh_keys" WHERE refresh = ? LIMIT 1`).get(staging) !== undefined) {
          /*
           * Stale removal: jobs older than the stale timeout whose key is not in this refresh's key source.
           * Never reserved or ignore jobs; one statement per status, for the change log's counts.
           * Params: status, cutoff, staging id. Returns: rows removed. MySQL: the same.
           */
          const removeStale = this.prepared(
            `DELETE FROM ${jobs}
             WHERE status = ? AND create_time < ?
               AND NOT EXISTS (SELECT 1 FROM "~populus_refresh_keys" s WHERE s.refresh = ? AND s.key_hash = ${jobs}.key_hash)`,
          );
          for (const status of ["pending", "error", "success"] as const) {
            const n = removeStale.run(status, state.staleCutoff, staging).changes;
            change.move(status, null, n);
            removed += n;
          }
        }
        this.prepared(`DELETE FROM "~populus_refresh_keys" WHERE refresh = ?`).run(staging);
        this.prepared(`DELETE FROM "~populus_refreshes" WHERE refresh = ?`).run(staging);
        this.prepared(`DELETE FROM "~populus_refresh_keys" WHERE create_time < ?`).run(input.now - ABANDONED_REFRESH_MS);
        this.prepared(`DELETE FROM "~populus_refreshes" WHERE create_time < ?`).run(input.now - ABANDONED_REFRESH_MS);
        /*
         * Re-pend kept success jobs whose key left the target (its row was deleted to recompute it).
         * Params: scheduled time. Returns: rows re-pended. MySQL: the same statement.
         */
        rePended = this.prepared(
          `UPDATE ${jobs} SET status = 'pending', scheduled_time = ?, complete_time = NULL, duration_ms = NULL, lease_token = NULL
             WHERE status = 'success' AND NOT EXISTS (SELECT 1 FROM ${target} t WHERE t.key_hash = ${jobs}.key_hash)`,
        ).run(input.now).changes;
        change.move("success", "pending", rePended);
        this.prepared(`UPDATE "~populus_tables" SET last_refresh_time = ? WHERE name = ?`).run(input.now, input.table);
      }
      change.move(null, "pending", added);
      const orphaned = input.orphanTimeoutMs === null ? 0 : this.resetLeases(input.table, "reserve_time", input.now - input.orphanTimeoutMs, input.now, change);
      this.logChange(input.table, change, input.now);
      // Whether a populate that refreshed has anything to reserve (promise 4's answer to an idle worker).
      const anyPending = final ? this.prepared(`SELECT 1 FROM ${jobs} WHERE status = 'pending' LIMIT 1`).get() !== undefined : null;
      return { added, removed, orphaned, rePended, anyPending };
    });
  }

  /**
   * A refresh's stale cutoff, fixed at its first call, and whether it stages its keys: only when a
   * job older than the cutoff existed then (otherwise no job can be stale for this refresh).
   * MySQL: the same, reading the row FOR UPDATE.
   */
  private refreshState(staging: string, input: RefreshInput): { staleCutoff: number; staging: boolean } {
    if (input.refreshId !== null) {
      const row = this.prepared(`SELECT stale_cutoff, staging FROM "~populus_refreshes" WHERE refresh = ?`).get(staging) as
        | { stale_cutoff: number; staging: number }
        | undefined;
      if (row !== undefined) return { staleCutoff: row.stale_cutoff, staging: row.staging === 1 };
    }
    const staleCutoff = input.now - input.staleTimeoutMs;
    const jobs = jobsTable(input.table);
    const oldest = this.prepared(oldestJobSql(jobs)).get() as { create_time: number } | undefined;
    const candidate = mayHoldStaleJobs(oldest?.create_time, staleCutoff) ? this.prepared(staleCandidateSql(jobs)).get(staleCutoff) : undefined;
    const state = { staleCutoff, staging: candidate !== undefined };
    if (input.refreshId !== null) {
      this.prepared(`INSERT INTO "~populus_refreshes" (refresh, table_name, stale_cutoff, staging, create_time) VALUES (?, ?, ?, ?, ?)`).run(
        staging,
        input.table,
        staleCutoff,
        state.staging ? 1 : 0,
        input.now,
      );
    }
    return state;
  }

  private declare(input: RefreshInput): void {
    for (const statement of createTableStatements(input.table)) this.db.prepare(statement).run();
    this.prepared(`INSERT INTO "~populus_tables" (name, display_name, key_attributes, create_time) VALUES (?, ?, ?, ?)`).run(
      input.table,
      input.displayName,
      JSON.stringify(input.keyAttributes),
      input.now,
    );
  }

  /**
   * Reserved jobs whose `column` (lease_expire_time or reserve_time) is before `cutoff` go back to
   * pending, or to error once their worker was lost maxLostAttempts times; both logged with their keys.
   * Returns: rows changed. MySQL: the same, CONCAT instead of ||, skipping rows locked by a Complete.
   */
  private resetLeases(table: string, column: "lease_expire_time" | "reserve_time", cutoff: number, now: number, change: Change): number {
    const jobs = jobsTable(table);
    const max = this.options.maxLostAttempts;
    const rows = this.prepared(`SELECT id, key_json, attempts FROM ${jobs} WHERE status = 'reserved' AND ${column} < ?`).all(cutoff) as {
      id: number;
      key_json: string;
      attempts: number;
    }[];
    const lost = rows.filter((r) => r.attempts >= max);
    const back = rows.filter((r) => r.attempts < max);
    if (lost.length > 0) {
      this.prepared(
        `UPDATE ${jobs} SET status = 'error', error_message = ? || attempts || ?, complete_time = ?, lease_token = NULL, lease_expire_time = NULL
           WHERE id IN (${placeholders(lost.length)})`,
      ).run(WORKER_LOST_MESSAGE.before, WORKER_LOST_MESSAGE.after, now, ...lost.map((r) => r.id));
      change.move("reserved", "error", lost.length).jobs(
        "error",
        lost.map((r) => r.key_json),
        { errorMessages: lost.map((r) => `${WORKER_LOST_MESSAGE.before}${r.attempts}${WORKER_LOST_MESSAGE.after}`) },
      );
    }
    if (back.length > 0) {
      this.prepared(
        `UPDATE ${jobs} SET status = 'pending', complete_time = NULL, lease_token = NULL, lease_expire_time = NULL WHERE id IN (${placeholders(back.length)})`,
      ).run(...back.map((r) => r.id));
      change.move("reserved", "pending", back.length).jobs(
        "pending",
        back.map((r) => r.key_json),
      );
    }
    return rows.length;
  }

  async reserve(input: ReserveInput): Promise<LeaseGrant[]> {
    const jobs = jobsTable(input.table);
    this.table(input.table);
    const restriction = restrictionSql(input.restriction);
    return this.tx(() => {
      if (input.requestId !== null) {
        const repeated = this.repeatedReserve(input.table, input.requestId, input.now);
        if (repeated.length > 0) return repeated;
      }
      /*
       * The next ready jobs in the total order priority, scheduled_time, id (served by the ~ready index).
       * Params: now, [max priority], [restriction values], limit. Returns: ids, keys, attempts.
       * MySQL: the same SELECT with FOR UPDATE SKIP LOCKED inside a READ COMMITTED transaction.
       */
      const rows = this.prepared(
        `SELECT id, key_json, priority, attempts FROM ${jobs}
           WHERE status = 'pending' AND scheduled_time <= ?${input.maxPriority === null ? "" : " AND priority <= ?"}${restriction.sql}
           ORDER BY priority, scheduled_time, id LIMIT ?`,
      ).all(input.now, ...(input.maxPriority === null ? [] : [input.maxPriority]), ...restriction.params, input.maxJobs) as {
        id: number;
        key_json: string;
        priority: number;
        attempts: number;
      }[];
      if (rows.length === 0) return [];
      const prefix = randomBytes(16).toString("hex");
      const expire = input.now + input.leaseMs;
      const w = input.worker;
      /*
       * Lease each selected job: token = batch prefix + job id (base 36). A prepared statement per job costs
       * microseconds in-process (no round trip). Params: token, now, expiry, worker identity, id.
       * MySQL: one UPDATE ... WHERE id IN (...) per batch, the token built in SQL from the same parts.
       */
      const lease = this.prepared(
        `UPDATE ${jobs} SET status = 'reserved', lease_token = ?, reserve_time = ?, lease_expire_time = ?,
           attempts = attempts + 1, worker_id = ?, host = ?, pid = ?, user = ?, code_version = ?,
           progress = NULL, progress_message = NULL
         WHERE id = ?`,
      );
      const grants = rows.map((row) => {
        const token = leaseToken(prefix, row.id);
        lease.run(token, input.now, expire, w.workerId, w.host, w.pid, w.user, w.codeVersion, row.id);
        return { keyJson: row.key_json, leaseToken: token, leaseExpireTime: expire, attempt: row.attempts + 1, priority: row.priority };
      });
      if (input.requestId !== null) {
        // Replaces a record of the same id whose leases are all gone (repeatedReserve found none held).
        this.prepared(
          `INSERT OR REPLACE INTO "~populus_reserve_requests" (table_name, request_id, lease_prefix, job_ids, lease_expire_time) VALUES (?, ?, ?, ?, ?)`,
        ).run(input.table, input.requestId, prefix, rows.map((r) => r.id).join(","), expire);
      }
      this.logChange(
        input.table,
        new Change().move("pending", "reserved", rows.length).jobs(
          "reserved",
          rows.map((r) => r.key_json),
          { workerId: w.workerId },
        ),
        input.now,
      );
      return grants;
    });
  }

  async complete(table: string, completions: readonly Completion[], keepCompleted: boolean, now: number): Promise<CompleteOutcome> {
    const jobs = jobsTable(table);
    const target = targetTable(table);
    this.table(table);
    const tokens = completions.map((c) => c.leaseToken);
    return this.tx(() => {
      /*
       * The jobs these leases still hold. Params: tokens. Returns: id, key, reserve time per held lease.
       * MySQL: the same SELECT ... FOR UPDATE, so a concurrent sweep cannot take them mid-commit.
       */
      const leases = leaseFilter(tokens);
      const held = this.prepared(`SELECT id, key_hash, key_json, lease_token, worker_id FROM ${jobs} WHERE ${HELD} AND ${leases.sql}`).all(
        ...leases.params,
      ) as { id: number; key_hash: string; key_json: string; lease_token: string; worker_id: string | null }[];
      const byToken = new Map(held.map((r) => [r.lease_token, r]));
      const notHeld = tokens.filter((t) => !byToken.has(t));
      let alreadyCommitted = 0;
      if (notHeld.length > 0) {
        // A repeat of a Complete that committed: its token is on the target row.
        const done = new Set(
          (
            this.prepared(`SELECT lease_token FROM ${target} WHERE lease_token IN (${placeholders(notHeld.length)})`).all(...notHeld) as {
              lease_token: string;
            }[]
          ).map((r) => r.lease_token),
        );
        const lost = notHeld.filter((t) => !done.has(t));
        if (lost.length > 0) throw new LeaseLostError(lost);
        alreadyCommitted = done.size;
      }
      /*
       * Write each result to the target, keeping a row that is already there (a committed result is never
       * overwritten). Params: key hash, key, result, token, time. MySQL: one multi-row INSERT IGNORE-free
       * INSERT ... ON DUPLICATE KEY UPDATE key_hash = key_hash.
       */
      const insert = this.prepared(
        `INSERT INTO ${target} (key_hash, key_json, result_json, lease_token, complete_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_hash) DO NOTHING`,
      );
      let written = 0;
      for (const c of completions) {
        const row = byToken.get(c.leaseToken);
        if (row !== undefined) written += insert.run(row.key_hash, row.key_json, c.resultJson, c.leaseToken, now).changes;
      }
      const ids = held.map((r) => r.id);
      if (ids.length > 0) {
        if (keepCompleted) {
          this.prepared(
            `UPDATE ${jobs} SET status = 'success', complete_time = ?, duration_ms = ? - reserve_time, lease_expire_time = NULL
               WHERE id IN (${placeholders(ids.length)})`,
          ).run(now, now, ...ids);
        } else {
          this.prepared(`DELETE FROM ${jobs} WHERE id IN (${placeholders(ids.length)})`).run(...ids);
        }
      }
      this.logChange(table, completionChange(held, written, keepCompleted), now);
      return { committed: held.length, alreadyCommitted };
    });
  }

  async fail(table: string, token: string, errorMessage: string, errorStack: string, now: number): Promise<void> {
    const jobs = jobsTable(table);
    this.table(table);
    this.tx(() => {
      /*
       * Fenced failure: only the current lease may set error. Params: message, stack, time x2, token.
       * MySQL: the same UPDATE.
       */
      const changed = this.prepared(
        `UPDATE ${jobs} SET status = 'error', error_message = ?, error_stack = ?, complete_time = ?, duration_ms = ? - reserve_time,
             lease_expire_time = NULL
           WHERE status = 'reserved' AND id = ? AND lease_token = ?`,
      ).run(truncateErrorMessage(errorMessage), errorStack, now, now, leaseJobId(token), token).changes;
      if (changed === 0) {
        // A repeat of a Fail that committed keeps its token on the error row.
        const repeat = this.prepared(`SELECT 1 FROM ${jobs} WHERE status = 'error' AND id = ? AND lease_token = ?`).get(leaseJobId(token), token);
        if (repeat === undefined) throw new LeaseLostError([token]);
        return;
      }
      const row = this.prepared(`SELECT key_json, worker_id, error_message FROM ${jobs} WHERE id = ?`).get(leaseJobId(token)) as {
        key_json: string;
        worker_id: string | null;
        error_message: string;
      };
      const change = new Change()
        .move("reserved", "error", 1)
        .jobs("error", [row.key_json], { workerId: row.worker_id ?? "", errorMessages: [row.error_message] });
      this.logChange(table, change, now);
    });
  }

  /** The given leases that are still held, with their keys and holders. MySQL: the same SELECT ... FOR UPDATE. */
  private heldTokens(jobs: string, filter: SqlFilter): Map<string, HeldLease> {
    const rows = this.prepared(`SELECT lease_token, key_json, worker_id FROM ${jobs} WHERE ${HELD} AND ${filter.sql}`).all(...filter.params) as {
      lease_token: string;
      key_json: string;
      worker_id: string | null;
    }[];
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
    this.table(table);
    const expire = now + leaseMs;
    const leases = leaseFilter(tokens);
    return this.tx(() => {
      const held = this.heldTokens(jobs, leases);
      // Extend every held lease in one statement. MySQL: the same UPDATE.
      this.prepared(`UPDATE ${jobs} SET lease_expire_time = ? WHERE ${HELD} AND ${leases.sql}`).run(expire, ...leases.params);
      const setProgress = this.prepared(`UPDATE ${jobs} SET progress = ?, progress_message = ? WHERE status = 'reserved' AND id = ? AND lease_token = ?`);
      for (const p of progress) if (held.has(p.leaseToken)) setProgress.run(p.progress, p.message, leaseJobId(p.leaseToken), p.leaseToken);
      return { lost: tokens.filter((t) => !held.has(t)), leaseExpireTime: expire };
    });
  }

  async release(table: string, tokens: readonly string[]): Promise<{ released: number; lost: string[] }> {
    const jobs = jobsTable(table);
    this.table(table);
    const leases = leaseFilter(tokens);
    return this.tx(() => {
      const held = this.heldTokens(jobs, leases);
      /*
       * Give leases back without charging an attempt. Params: tokens. Returns: rows released.
       * MySQL: the same UPDATE.
       */
      const released = this.prepared(
        `UPDATE ${jobs} SET status = 'pending', lease_token = NULL, lease_expire_time = NULL, attempts = MAX(attempts - 1, 0)
           WHERE ${HELD} AND ${leases.sql}`,
      ).run(...leases.params).changes;
      this.logChange(table, releaseChange(held), Date.now());
      return { released, lost: tokens.filter((t) => !held.has(t)) };
    });
  }

  /**
   * The leases an earlier Reserve with this request id granted that are still held, while its
   * lease length has not passed; empty when there is none. MySQL: the same reads, the record locked.
   */
  private repeatedReserve(table: string, requestId: string, now: number): LeaseGrant[] {
    const request = this.prepared(
      `SELECT lease_prefix, job_ids FROM "~populus_reserve_requests" WHERE table_name = ? AND request_id = ? AND lease_expire_time > ?`,
    ).get(table, requestId, now) as ReserveRequestRow | undefined;
    if (request === undefined) return [];
    const tokens = requestLeaseTokens(request);
    const leases = leaseFilter(tokens);
    const held = this.prepared(
      `SELECT lease_token, key_json, priority, attempts, lease_expire_time FROM ${jobsTable(table)} WHERE status = 'reserved' AND ${leases.sql}`,
    ).all(...leases.params) as HeldGrantRow[];
    return repeatedGrants(tokens, held);
  }

  async expireLeases(now: number): Promise<number> {
    const tables = await this.listTables();
    let expired = 0;
    for (const t of tables) {
      expired += this.tx(() => {
        const change = new Change();
        const n = this.resetLeases(t.name, "lease_expire_time", now, now, change);
        this.logChange(t.name, change, now);
        return n;
      });
    }
    // Past its lease length a Reserve is not repeated (a retry leases anew), so its record can go.
    this.prepared(`DELETE FROM "~populus_reserve_requests" WHERE lease_expire_time <= ?`).run(now);
    return expired;
  }

  async getProgress(table: string): Promise<ProgressCounts> {
    this.table(table);
    const rows = this.prepared(`SELECT status, COUNT(*) AS n FROM ${jobsTable(table)} GROUP BY status`).all() as { status: string; n: number }[];
    const target = (this.prepared(`SELECT COUNT(*) AS n FROM ${targetTable(table)}`).get() as { n: number }).n;
    return toProgressCounts(rows, target);
  }

  async listJobs(table: string, filter: JobFilter, page: PageRequest): Promise<Page<JobRecord>> {
    this.table(table);
    const restriction = restrictionSql(filter.restriction);
    const after = parseJobCursor(page.after);
    /*
     * A page of jobs in reservation order (priority, scheduled_time, id), keyset-paged by a row-value
     * comparison on the ~ready index's columns. MySQL: the same row-value comparison.
     */
    const rows = this.prepared(
      `SELECT ${JOB_COLUMNS} FROM ${jobsTable(table)}
         WHERE (priority, scheduled_time, id) > (?, ?, ?)${filter.statuses.length > 0 ? ` AND status IN (${placeholders(filter.statuses.length)})` : ""}${
           filter.maxPriority === null ? "" : " AND priority <= ?"
         }${restriction.sql}
         ORDER BY priority, scheduled_time, id LIMIT ?`,
    ).all(...after, ...filter.statuses, ...(filter.maxPriority === null ? [] : [filter.maxPriority]), ...restriction.params, page.pageSize + 1) as JobRow[];
    return jobPage(rows, page.pageSize);
  }

  async deleteJobs(table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Promise<number> {
    const jobs = jobsTable(table);
    this.table(table);
    // One DELETE per status, so the change log gets exact counts. MySQL: the same statements, per 1,000 keys.
    const each = statuses.length > 0 ? statuses : JOB_STATUSES;
    return this.tx(() => {
      const change = new Change();
      let deleted = 0;
      const byStatus = this.prepared(`DELETE FROM ${jobs} WHERE status = ?`);
      const byKey = this.prepared(`DELETE FROM ${jobs} WHERE key_hash = ? AND status = ?`);
      for (const status of each) {
        let n = 0;
        if (keys.length === 0) n = byStatus.run(status).changes;
        for (const k of keys) n += byKey.run(k.hash, status).changes;
        change.move(status, null, n);
        deleted += n;
      }
      this.logChange(table, change, Date.now());
      return deleted;
    });
  }

  async ignore(table: string, keys: readonly EncodedKey[], now: number): Promise<number> {
    const jobs = jobsTable(table);
    this.table(table);
    return this.tx(() => {
      /*
       * Insert or update each key's job to ignore; an ignored reserved job loses its lease.
       * Params: key hash, key, create/scheduled time. MySQL: INSERT ... ON DUPLICATE KEY UPDATE.
       */
      const upsert = this.prepared(
        `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
         VALUES (?, ?, 'ignore', 5, ?, ?, 0)
         ON CONFLICT (key_hash) DO UPDATE SET status = 'ignore', lease_token = NULL, lease_expire_time = NULL`,
      );
      const statusOf = this.prepared(`SELECT status FROM ${jobs} WHERE key_hash = ?`).pluck();
      const before = keys.flatMap((k) => (statusOf.get(k.hash) as JobStatusName | undefined) ?? []);
      let ignored = 0;
      for (const k of keys) ignored += upsert.run(k.hash, k.json, now, now).changes;
      this.logChange(table, ignoreChange(keys, before), now);
      return ignored;
    });
  }

  async deleteTargets(table: string, keys: readonly EncodedKey[] | "all"): Promise<number> {
    const target = targetTable(table);
    this.table(table);
    return this.tx(() => {
      let deleted = 0;
      if (keys === "all") deleted = this.prepared(`DELETE FROM ${target}`).run().changes;
      else {
        const del = this.prepared(`DELETE FROM ${target} WHERE key_hash = ?`);
        for (const k of keys) deleted += del.run(k.hash).changes;
      }
      this.logChange(table, new Change().move("target", null, deleted), Date.now());
      return deleted;
    });
  }

  async listTargets(table: string, restriction: readonly AttributeCondition[], page: PageRequest): Promise<Page<StoredTarget>> {
    this.table(table);
    const r = restrictionSql(restriction);
    const rows = this.prepared(
      `SELECT key_hash, key_json, result_json, complete_time FROM ${targetTable(table)}
         WHERE key_hash > ?${r.sql} ORDER BY key_hash LIMIT ?`,
    ).all(page.after ?? "", ...r.params, page.pageSize + 1) as TargetRow[];
    return targetPage(rows, page.pageSize);
  }

  async readChanges(afterId: number, limit: number, table: string | null): Promise<ChangeRow[]> {
    const rows = this.prepared(
      `SELECT id, table_name, time, deltas, events FROM "~populus_events" WHERE id > ?${table === null ? "" : " AND table_name = ?"} ORDER BY id LIMIT ?`,
    ).all(afterId, ...(table === null ? [] : [table]), limit) as { id: number; table_name: string; time: number; deltas: string; events: string }[];
    return rows.map(parseChangeRow);
  }

  async changeBounds(): Promise<ChangeBounds> {
    const row = this.prepared(
      `SELECT (SELECT MAX(id) FROM "~populus_events") AS last_id, (SELECT value FROM "~populus_meta" WHERE name = 'events_pruned_through') AS pruned`,
    ).get() as { last_id: number | null; pruned: number | null };
    const prunedThrough = row.pruned ?? 0;
    return { lastId: Math.max(row.last_id ?? 0, prunedThrough), prunedThrough };
  }

  async progressSnapshot(table: string, afterId: number): Promise<{ counts: ProgressCounts; includedIds: number[] }> {
    this.table(table);
    // A deferred read transaction: one WAL snapshot for the counts and the log (another process may write the file).
    return this.db.transaction(() => {
      const ids = this.prepared(`SELECT id FROM "~populus_events" WHERE id > ? AND table_name = ?`).pluck().all(afterId, table) as number[];
      const rows = this.prepared(`SELECT status, COUNT(*) AS n FROM ${jobsTable(table)} GROUP BY status`).all() as { status: string; n: number }[];
      const target = (this.prepared(`SELECT COUNT(*) AS n FROM ${targetTable(table)}`).get() as { n: number }).n;
      return { counts: toProgressCounts(rows, target), includedIds: ids };
    })();
  }

  async pruneChanges(before: number): Promise<number> {
    return this.tx(() => {
      const through = this.prepared(`SELECT MAX(id) FROM "~populus_events" WHERE time < ?`).pluck().get(before) as number | null;
      if (through === null) return 0;
      this.prepared(
        `INSERT INTO "~populus_meta" (name, value) VALUES ('events_pruned_through', ?) ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)`,
      ).run(through);
      return this.prepared(`DELETE FROM "~populus_events" WHERE id <= ?`).run(through).changes;
    });
  }

  async ping(): Promise<void> {
    this.prepared("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}
