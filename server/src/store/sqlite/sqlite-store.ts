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
import { randomBytes } from "node:crypto";
import type BetterSqlite3 from "better-sqlite3";
import { DataSource } from "typeorm";
import { InvalidKeyError, TableNotFoundError, LeaseLostError } from "../../errors.js";
import type { AttributeCondition, EncodedKey } from "../../key-codec.js";
import { Initial0000000000001 } from "../migrations/sqlite/0001-initial.js";
import {
  describeAttributes,
  JOB_COLUMNS,
  jobPage,
  parseJobCursor,
  type JobRow,
  leaseFilter,
  leaseJobId,
  leaseToken,
  sameAttributes,
  stagingId,
  type TableRow,
  type TargetRow,
  targetPage,
  toProgressCounts,
  toTableDefinition,
} from "../row-mapping.js";
import {
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
  type TableDefinition,
  type TargetRecord,
  truncateErrorMessage,
  WORKER_LOST_MESSAGE,
} from "../store.js";
import { createTableStatements, jobsTable, targetTable } from "./table-ddl.js";

/** Staging rows of refreshes abandoned before their final call are dropped after this. */
const ABANDONED_REFRESH_MS = 24 * 3600_000;

/** The migrations, in order; numbered alike for MySQL. */
export const SQLITE_MIGRATIONS = [Initial0000000000001];

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

export class SqliteStore implements JobStore {
  readonly dialect = "sqlite" as const;
  private readonly tables = new Map<string, TableDefinition>();

  constructor(
    private readonly dataSource: DataSource,
    private readonly db: BetterSqlite3.Database,
    private readonly options: StoreOptions,
  ) {}

  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private table(name: string): TableDefinition {
    const cached = this.tables.get(name);
    if (cached !== undefined) return cached;
    const row = this.db.prepare(`SELECT name, display_name, key_attributes, create_time FROM "~populus_tables" WHERE name = ?`).get(name) as
      | TableRow
      | undefined;
    if (row === undefined) throw new TableNotFoundError(name);
    // Key attributes never change once declared, so the cache cannot go stale.
    const def = toTableDefinition(row);
    this.tables.set(name, def);
    return def;
  }

  async describeTable(name: string): Promise<TableDefinition | null> {
    try {
      return this.table(name);
    } catch (err) {
      if (err instanceof TableNotFoundError) return null;
      throw err;
    }
  }

  async listTables(): Promise<TableDefinition[]> {
    const rows = this.db.prepare(`SELECT name, display_name, key_attributes, create_time FROM "~populus_tables" ORDER BY name`).all() as TableRow[];
    return rows.map(toTableDefinition);
  }

  async refresh(input: RefreshInput): Promise<RefreshCounts> {
    return this.tx(() => {
      let def: TableDefinition | null;
      try {
        def = this.table(input.table);
      } catch (err) {
        if (!(err instanceof TableNotFoundError)) throw err;
        def = null;
      }
      if (def === null) {
        // A call with no keys on an undeclared table has nothing to maintain.
        if (input.keyAttributes === null) return { added: 0, removed: 0, orphaned: 0, rePended: 0 };
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
      /*
       * Add `keys - target - jobs` as pending; a key that already has a job (any status) is left as it is.
       * In-process prepared statements per key cost microseconds, so no set-based form is needed here.
       * MySQL: a target lookup and a multi-row INSERT ... ON DUPLICATE KEY UPDATE per 1,000 keys.
       */
      const inTarget = this.db.prepare(`SELECT 1 FROM ${target} WHERE key_hash = ?`).pluck();
      const insert = this.db.prepare(
        `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
         VALUES (?, ?, 'pending', ?, ?, ?, 0) ON CONFLICT (key_hash) DO NOTHING`,
      );
      const stage = this.db.prepare(`INSERT OR IGNORE INTO "~populus_refresh_keys" (refresh, key_hash, create_time) VALUES (?, ?, ?)`);
      let added = 0;
      for (const key of input.keys) {
        if (inTarget.get(key.hash) === undefined) added += insert.run(key.hash, key.json, input.priority, input.now, input.now + input.delayMs).changes;
        if (state.staging) stage.run(staging, key.hash, input.now);
      }
      let removed = 0;
      let rePended = 0;
      if (final) {
        if (state.staging && this.db.prepare(`SELECT 1 FROM "~populus_refresh_keys" WHERE refresh = ? LIMIT 1`).get(staging) !== undefined) {
          /*
           * Stale removal: jobs older than the stale timeout whose key is not in this refresh's key source.
           * Never reserved or ignore jobs. Params: cutoff, staging id. Returns: rows removed. MySQL: the same.
           */
          removed = this.db
            .prepare(
              `DELETE FROM ${jobs}
               WHERE status IN ('pending', 'error', 'success') AND create_time < ?
                 AND NOT EXISTS (SELECT 1 FROM "~populus_refresh_keys" s WHERE s.refresh = ? AND s.key_hash = ${jobs}.key_hash)`,
            )
            .run(state.staleCutoff, staging).changes;
        }
        this.db.prepare(`DELETE FROM "~populus_refresh_keys" WHERE refresh = ?`).run(staging);
        this.db.prepare(`DELETE FROM "~populus_refreshes" WHERE refresh = ?`).run(staging);
        this.db.prepare(`DELETE FROM "~populus_refresh_keys" WHERE create_time < ?`).run(input.now - ABANDONED_REFRESH_MS);
        this.db.prepare(`DELETE FROM "~populus_refreshes" WHERE create_time < ?`).run(input.now - ABANDONED_REFRESH_MS);
        /*
         * Re-pend kept success jobs whose key left the target (its row was deleted to recompute it).
         * Params: scheduled time. Returns: rows re-pended. MySQL: the same statement.
         */
        rePended = this.db
          .prepare(
            `UPDATE ${jobs} SET status = 'pending', scheduled_time = ?, complete_time = NULL, duration_ms = NULL, lease_token = NULL
             WHERE status = 'success' AND NOT EXISTS (SELECT 1 FROM ${target} t WHERE t.key_hash = ${jobs}.key_hash)`,
          )
          .run(input.now).changes;
        this.db.prepare(`UPDATE "~populus_tables" SET last_refresh_time = ? WHERE name = ?`).run(input.now, input.table);
      }
      const orphaned =
        input.orphanTimeoutMs === null ? 0 : this.resetLeases(input.table, "reserve_time", input.now - input.orphanTimeoutMs, input.now);
      return { added, removed, orphaned, rePended };
    });
  }

  /**
   * A refresh's stale cutoff, fixed at its first call, and whether it stages its keys: only when a
   * job older than the cutoff existed then (otherwise no job can be stale for this refresh).
   * MySQL: the same, reading the row FOR UPDATE.
   */
  private refreshState(staging: string, input: RefreshInput): { staleCutoff: number; staging: boolean } {
    if (input.refreshId !== null) {
      const row = this.db.prepare(`SELECT stale_cutoff, staging FROM "~populus_refreshes" WHERE refresh = ?`).get(staging) as
        | { stale_cutoff: number; staging: number }
        | undefined;
      if (row !== undefined) return { staleCutoff: row.stale_cutoff, staging: row.staging === 1 };
    }
    const staleCutoff = input.now - input.staleTimeoutMs;
    const candidate = this.db
      .prepare(`SELECT 1 FROM ${jobsTable(input.table)} WHERE status IN ('pending', 'error', 'success') AND create_time < ? LIMIT 1`)
      .get(staleCutoff);
    const state = { staleCutoff, staging: candidate !== undefined };
    if (input.refreshId !== null) {
      this.db
        .prepare(`INSERT INTO "~populus_refreshes" (refresh, table_name, stale_cutoff, staging, create_time) VALUES (?, ?, ?, ?, ?)`)
        .run(staging, input.table, staleCutoff, state.staging ? 1 : 0, input.now);
    }
    return state;
  }

  private declare(input: RefreshInput): void {
    for (const statement of createTableStatements(input.table)) this.db.prepare(statement).run();
    this.db
      .prepare(`INSERT INTO "~populus_tables" (name, display_name, key_attributes, create_time) VALUES (?, ?, ?, ?)`)
      .run(input.table, input.displayName, JSON.stringify(input.keyAttributes), input.now);
  }

  /**
   * Reserved jobs whose `column` (lease_expire_time or reserve_time) is before `cutoff` go back to
   * pending, or to error once their worker was lost maxLostAttempts times.
   * Params: max attempts (x3), now, cutoff. Returns: rows changed.
   * MySQL: CONCAT instead of ||.
   */
  private resetLeases(table: string, column: "lease_expire_time" | "reserve_time", cutoff: number, now: number): number {
    const max = this.options.maxLostAttempts;
    return this.db
      .prepare(
        `UPDATE ${jobsTable(table)} SET
           status = CASE WHEN attempts >= ? THEN 'error' ELSE 'pending' END,
           error_message = CASE WHEN attempts >= ? THEN ? || attempts || ? ELSE error_message END,
           complete_time = CASE WHEN attempts >= ? THEN ? ELSE NULL END,
           lease_token = NULL, lease_expire_time = NULL
         WHERE status = 'reserved' AND ${column} < ?`,
      )
      .run(max, max, WORKER_LOST_MESSAGE.before, WORKER_LOST_MESSAGE.after, max, now, cutoff).changes;
  }

  async reserve(input: ReserveInput): Promise<LeaseGrant[]> {
    const jobs = jobsTable(input.table);
    this.table(input.table);
    const restriction = restrictionSql(input.restriction);
    return this.tx(() => {
      /*
       * The next ready jobs in the total order priority, scheduled_time, id (served by the ~ready index).
       * Params: now, [max priority], [restriction values], limit. Returns: ids, keys, attempts.
       * MySQL: the same SELECT with FOR UPDATE SKIP LOCKED inside a READ COMMITTED transaction.
       */
      const rows = this.db
        .prepare(
          `SELECT id, key_json, priority, attempts FROM ${jobs}
           WHERE status = 'pending' AND scheduled_time <= ?${input.maxPriority === null ? "" : " AND priority <= ?"}${restriction.sql}
           ORDER BY priority, scheduled_time, id LIMIT ?`,
        )
        .all(
          input.now,
          ...(input.maxPriority === null ? [] : [input.maxPriority]),
          ...restriction.params,
          input.maxJobs,
        ) as { id: number; key_json: string; priority: number; attempts: number }[];
      if (rows.length === 0) return [];
      const prefix = randomBytes(16).toString("hex");
      const expire = input.now + input.leaseMs;
      const w = input.worker;
      /*
       * Lease each selected job: token = batch prefix + job id (base 36). A prepared statement per job costs
       * microseconds in-process (no round trip). Params: token, now, expiry, worker identity, id.
       * MySQL: one UPDATE ... WHERE id IN (...) per batch, the token built in SQL from the same parts.
       */
      const lease = this.db.prepare(
        `UPDATE ${jobs} SET status = 'reserved', lease_token = ?, reserve_time = ?, lease_expire_time = ?,
           attempts = attempts + 1, worker_id = ?, host = ?, pid = ?, user = ?, code_version = ?,
           progress = NULL, progress_message = NULL
         WHERE id = ?`,
      );
      return rows.map((row) => {
        const token = leaseToken(prefix, row.id);
        lease.run(token, input.now, expire, w.workerId, w.host, w.pid, w.user, w.codeVersion, row.id);
        return { keyJson: row.key_json, leaseToken: token, leaseExpireTime: expire, attempt: row.attempts + 1, priority: row.priority };
      });
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
      const held = this.db
        .prepare(`SELECT id, key_hash, key_json, reserve_time, lease_token FROM ${jobs} WHERE status = 'reserved' AND ${leaseFilter(tokens).sql}`)
        .all(...leaseFilter(tokens).params) as { id: number; key_hash: string; key_json: string; reserve_time: number; lease_token: string }[];
      const byToken = new Map(held.map((r) => [r.lease_token, r]));
      const notHeld = tokens.filter((t) => !byToken.has(t));
      let alreadyCommitted = 0;
      if (notHeld.length > 0) {
        // A repeat of a Complete that committed: its token is on the target row.
        const done = new Set(
          (
            this.db.prepare(`SELECT lease_token FROM ${target} WHERE lease_token IN (${placeholders(notHeld.length)})`).all(...notHeld) as {
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
      const insert = this.db.prepare(
        `INSERT INTO ${target} (key_hash, key_json, result_json, lease_token, complete_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_hash) DO NOTHING`,
      );
      for (const c of completions) {
        const row = byToken.get(c.leaseToken);
        if (row !== undefined) insert.run(row.key_hash, row.key_json, c.resultJson, c.leaseToken, now);
      }
      const ids = held.map((r) => r.id);
      if (ids.length > 0) {
        if (keepCompleted) {
          this.db
            .prepare(
              `UPDATE ${jobs} SET status = 'success', complete_time = ?, duration_ms = ? - reserve_time, lease_expire_time = NULL
               WHERE id IN (${placeholders(ids.length)})`,
            )
            .run(now, now, ...ids);
        } else {
          this.db.prepare(`DELETE FROM ${jobs} WHERE id IN (${placeholders(ids.length)})`).run(...ids);
        }
      }
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
      const changed = this.db
        .prepare(
          `UPDATE ${jobs} SET status = 'error', error_message = ?, error_stack = ?, complete_time = ?, duration_ms = ? - reserve_time,
             lease_expire_time = NULL
           WHERE status = 'reserved' AND id = ? AND lease_token = ?`,
        )
        .run(truncateErrorMessage(errorMessage), errorStack, now, now, leaseJobId(token), token).changes;
      if (changed === 0) {
        // A repeat of a Fail that committed keeps its token on the error row.
        const repeat = this.db.prepare(`SELECT 1 FROM ${jobs} WHERE status = 'error' AND id = ? AND lease_token = ?`).get(leaseJobId(token), token);
        if (repeat === undefined) throw new LeaseLostError([token]);
      }
    });
  }

  /** The given leases that are still held. MySQL: the same SELECT ... FOR UPDATE. */
  private heldTokens(jobs: string, tokens: readonly string[]): Set<string> {
    const filter = leaseFilter(tokens);
    const rows = this.db.prepare(`SELECT lease_token FROM ${jobs} WHERE status = 'reserved' AND ${filter.sql}`).all(...filter.params) as {
      lease_token: string;
    }[];
    return new Set(rows.map((r) => r.lease_token));
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
    return this.tx(() => {
      const held = this.heldTokens(jobs, tokens);
      // Extend every held lease in one statement. MySQL: the same UPDATE.
      this.db
        .prepare(`UPDATE ${jobs} SET lease_expire_time = ? WHERE status = 'reserved' AND ${leaseFilter(tokens).sql}`)
        .run(expire, ...leaseFilter(tokens).params);
      const setProgress = this.db.prepare(`UPDATE ${jobs} SET progress = ?, progress_message = ? WHERE status = 'reserved' AND id = ? AND lease_token = ?`);
      for (const p of progress) if (held.has(p.leaseToken)) setProgress.run(p.progress, p.message, leaseJobId(p.leaseToken), p.leaseToken);
      return { lost: tokens.filter((t) => !held.has(t)), leaseExpireTime: expire };
    });
  }

  async release(table: string, tokens: readonly string[]): Promise<{ released: number; lost: string[] }> {
    const jobs = jobsTable(table);
    this.table(table);
    return this.tx(() => {
      const held = this.heldTokens(jobs, tokens);
      /*
       * Give leases back without charging an attempt. Params: tokens. Returns: rows released.
       * MySQL: the same UPDATE.
       */
      const released = this.db
        .prepare(
          `UPDATE ${jobs} SET status = 'pending', lease_token = NULL, lease_expire_time = NULL, attempts = MAX(attempts - 1, 0)
           WHERE status = 'reserved' AND ${leaseFilter(tokens).sql}`,
        )
        .run(...leaseFilter(tokens).params).changes;
      return { released, lost: tokens.filter((t) => !held.has(t)) };
    });
  }

  async expireLeases(now: number): Promise<number> {
    const tables = await this.listTables();
    let expired = 0;
    for (const t of tables) expired += this.tx(() => this.resetLeases(t.name, "lease_expire_time", now, now));
    return expired;
  }

  async getProgress(table: string): Promise<ProgressCounts> {
    this.table(table);
    const rows = this.db.prepare(`SELECT status, COUNT(*) AS n FROM ${jobsTable(table)} GROUP BY status`).all() as { status: string; n: number }[];
    const target = (this.db.prepare(`SELECT COUNT(*) AS n FROM ${targetTable(table)}`).get() as { n: number }).n;
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
    const rows = this.db
      .prepare(
        `SELECT ${JOB_COLUMNS} FROM ${jobsTable(table)}
         WHERE (priority, scheduled_time, id) > (?, ?, ?)${filter.statuses.length > 0 ? ` AND status IN (${placeholders(filter.statuses.length)})` : ""}${
           filter.maxPriority === null ? "" : " AND priority <= ?"
         }${restriction.sql}
         ORDER BY priority, scheduled_time, id LIMIT ?`,
      )
      .all(
        ...after,
        ...filter.statuses,
        ...(filter.maxPriority === null ? [] : [filter.maxPriority]),
        ...restriction.params,
        page.pageSize + 1,
      ) as JobRow[];
    return jobPage(rows, page.pageSize);
  }

  async deleteJobs(table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Promise<number> {
    const jobs = jobsTable(table);
    this.table(table);
    return this.tx(() => {
      const statusSql = statuses.length > 0 ? ` AND status IN (${placeholders(statuses.length)})` : "";
      if (keys.length === 0) return this.db.prepare(`DELETE FROM ${jobs} WHERE 1 = 1${statusSql}`).run(...statuses).changes;
      const del = this.db.prepare(`DELETE FROM ${jobs} WHERE key_hash = ?${statusSql}`);
      let deleted = 0;
      for (const k of keys) deleted += del.run(k.hash, ...statuses).changes;
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
      const upsert = this.db.prepare(
        `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)
         VALUES (?, ?, 'ignore', 5, ?, ?, 0)
         ON CONFLICT (key_hash) DO UPDATE SET status = 'ignore', lease_token = NULL, lease_expire_time = NULL`,
      );
      let ignored = 0;
      for (const k of keys) ignored += upsert.run(k.hash, k.json, now, now).changes;
      return ignored;
    });
  }

  async deleteTargets(table: string, keys: readonly EncodedKey[] | "all"): Promise<number> {
    const target = targetTable(table);
    this.table(table);
    return this.tx(() => {
      if (keys === "all") return this.db.prepare(`DELETE FROM ${target}`).run().changes;
      const del = this.db.prepare(`DELETE FROM ${target} WHERE key_hash = ?`);
      let deleted = 0;
      for (const k of keys) deleted += del.run(k.hash).changes;
      return deleted;
    });
  }

  async listTargets(table: string, restriction: readonly AttributeCondition[], page: PageRequest): Promise<Page<TargetRecord>> {
    this.table(table);
    const r = restrictionSql(restriction);
    const rows = this.db
      .prepare(
        `SELECT key_hash, key_json, result_json, complete_time FROM ${targetTable(table)}
         WHERE key_hash > ?${r.sql} ORDER BY key_hash LIMIT ?`,
      )
      .all(page.after ?? "", ...r.params, page.pageSize + 1) as TargetRow[];
    return targetPage(rows, page.pageSize);
  }

  async close(): Promise<void> {
    if (this.dataSource.isInitialized) await this.dataSource.destroy();
  }
}
