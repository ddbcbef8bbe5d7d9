/**
 * The seam between the operations and the two dialects: only what really differs between
 * MySQL/MariaDB (mysql/mysql-dialect.ts) and SQLite (sqlite/sqlite-dialect.ts). Everything else
 * an operation runs is one statement text for both.
 *
 * The differences come from three facts. MySQL has concurrent writers, so its reads of rows a
 * transaction then changes lock them (FOR UPDATE, SKIP LOCKED); SQLite's BEGIN IMMEDIATE is the
 * only writer, and has no locking clauses. A MySQL statement is a round trip, so batches go as
 * one multi-row statement; a prepared SQLite statement runs in-process in microseconds, so it
 * runs once per key and stays prepared. And the syntax: upserts, CONCAT, GREATEST, JSON paths,
 * index hints.
 */
import type { AttributeCondition } from "../../key-codec.js";
import type { Param, Statement } from "./operation.js";

/** The store's own tables (migrations 0001-0007), by their role. */
const STORE_TABLES = {
  tables: "~populus_tables",
  events: "~populus_events",
  meta: "~populus_meta",
  refreshes: "~populus_refreshes",
  refreshKeys: "~populus_refresh_keys",
  reserveRequests: "~populus_reserve_requests",
  leases: "~populus_leases",
  refreshClaims: "~populus_refresh_claims",
} as const;

export type StoreTableNames = { readonly [role in keyof typeof STORE_TABLES]: string };

/** The store's own tables, each name quoted as the dialect quotes identifiers. */
export function storeTableNames(quote: (name: string) => string): StoreTableNames {
  const entries = Object.entries(STORE_TABLES).map(([role, name]) => [role, quote(name)]);
  return Object.fromEntries(entries) as StoreTableNames;
}

/** What a dialect supplies to the operations. */
export interface SqlDialect {
  readonly name: "mysql" | "sqlite";
  /** A table's jobs table and target, quoted. */
  jobsTable(table: string): string;
  targetTable(table: string): string;
  /** Quoted names of the store's own tables. */
  readonly names: StoreTableNames;

  /** The jobs table in statements that address jobs by id (`id IN (...)`, leaseFilter). */
  byId(jobs: string): string;
  /** The jobs table in reads in Reserve's order (the ready index). */
  inReadyOrder(jobs: string): string;
  /** `status = 'reserved'` in statements that address jobs by id. */
  readonly held: string;
  /** Appended to a read whose rows the transaction then changes. */
  readonly forUpdate: string;
  /** A locking read's tail that shares the rows: others may share them too, and a forUpdate waits for every sharer. "" where one writer runs at a time. */
  readonly forShare: string;
  /** Appended to a read that takes rows no other transaction holds (Reserve, the lease sweep). */
  readonly skipLocked: string;
  /**
   * Reserve's cheaper first read for a large batch (reserve.ts), where the dialect has one: `SELECT
   * id, key_json, priority, attempts` of the jobs that `nextReady` (Reserve's filter, ORDER BY and
   * `LIMIT ?`) finds, each locked (skipped when another transaction holds it) and checked against
   * `filter` (the same filter, with its parameters again) once locked, in ready order. It may answer
   * fewer than the limit while more are ready; Reserve then scans. Null where the scan is all there is.
   */
  readonly readyJobsByCandidates: ((jobs: string, nextReady: string, filter: string) => string) | null;
  /** The FROM of a SELECT of values alone that has a WHERE (MySQL needs `FROM DUAL` there). */
  readonly fromNoTable: string;
  /** The rows the previous statement of the transaction changed, as an SQL expression. */
  readonly previousRowCount: string;

  concat(...parts: string[]): string;
  greatest(a: string, b: string): string;
  /** The value an upsert tried to insert into `column`, inside onConflictUpdate's assignments. */
  inserted(column: string): string;
  /** An INSERT's tail keeping the existing row. `mysqlNoop` is the column MySQL assigns to itself. */
  onConflictKeep(conflict: string, mysqlNoop: string): string;
  /** An INSERT's tail updating the existing row with `assignments`. */
  onConflictUpdate(conflict: string, assignments: string): string;
  /** ` AND <attribute> = ?` per condition on key_json, and their parameters. */
  restriction(conditions: readonly AttributeCondition[]): { sql: string; params: Param[] };

  /**
   * A statement that goes in the same round trip as a batch's large ones (a change-log row, a
   * Reserve's record): MySQL writes its values into the text as literals (sql-literals.ts), SQLite
   * binds them. The template's only question marks are its placeholders.
   */
  bind(template: string, params: readonly Param[]): Statement;
  /** The items of an `IN (...)` list and their params: MySQL writes the values as literals (sql-literals.ts), SQLite binds them. */
  inList(values: readonly Param[]): { sql: string; params: Param[] };
  /** `count` rows of `width` params each: MySQL one multi-row INSERT, SQLite one prepared row per run. */
  insertRows(into: string, row: string, count: number, params: readonly Param[], tail: string): Statement;
  /**
   * A statement over some keys, `match(keyPredicate)`: MySQL one statement with `key_hash IN (...)`,
   * SQLite `key_hash = ?` run per key. `after` are the params of `match`'s own `?`s after the key predicate.
   */
  perKey(match: (keyPredicate: string) => string, hashes: readonly string[], after?: readonly Param[]): Statement;

  /** Refresh: reads the `key_hash` of each of `hashes` whose job needs no insert (already computed, or queued: MySQL). */
  knownKeys(jobs: string, target: string, hashes: readonly string[]): Statement;
  /**
   * Refresh, where inserting a batch of keys expected to be new costs less than looking them up
   * first (MySQL): statements that delete, of the jobs that the statement just before them
   * inserted (created at `createTime`; none when it inserted none), those whose key is computed;
   * the last one's count is the jobs deleted. They read how many that statement inserted in SQL,
   * so all go in its round trip.
   * Null: the dialect always looks keys up first (SQLite, where a prepared lookup costs microseconds).
   */
  readonly dropComputedJustInserted: ((jobs: string, target: string, createTime: number) => readonly Statement[]) | null;
  /** Refresh: a single writer cannot meet another call's first insert of the same refresh. */
  readonly singleWriter: boolean;
  /** Refresh: a final call drops its staging rows in its own transaction (else after its answer, in chunks). */
  readonly dropsStagingInTransaction: boolean;

  /** Reserve: leases the selected jobs to `batch` (MySQL one statement, SQLite one prepared run per job). */
  leaseJobs(jobs: string, batch: string, now: number, expire: number, ids: readonly Param[]): Statement;
  /** Complete without keepCompleted: deletes the held jobs and returns them as read, or null (read, then delete). */
  deleteHeldReturning(jobs: string, leases: { sql: string; params: Param[] }, columns: string, count: number): Statement | null;
  /** Complete: deletes committed jobs by id. */
  deleteById(jobs: string, ids: readonly Param[]): Statement;
}
