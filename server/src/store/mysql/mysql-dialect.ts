/**
 * The MySQL/MariaDB side of the seam (operations/dialect.ts). A statement is a round trip, so a
 * batch is one statement; reads of rows a transaction then changes lock them; statements that
 * address jobs by id force the primary key (see BY_ID).
 */
import type { AttributeCondition } from "../../key-codec.js";
import { type SqlDialect, storeTableNames } from "../operations/dialect.js";
import type { Param, Statement } from "../operations/operation.js";
import { restrictionText } from "../row-mapping.js";
import { LAST_WRITE_COUNT } from "./pipelined-transaction.js";
import { bindLiterals, literal, literalList, literalRows } from "./sql-literals.js";
import { jobsTable, targetTable } from "./table-ddl.js";

/**
 * The index hint of statements that address jobs by id (`id IN (...)`, and leaseFilter's `id IN
 * (...) AND lease_batch IN (...)`): they read and lock their own rows by primary key. Without it
 * MariaDB scanned the whole jobs table for a 1,000-lease Complete (ANALYZE: 5,000 rows for 1,000),
 * and so whenever a batch was a large part of the table, and with FOR UPDATE (or in an UPDATE) it
 * locked and waited for rows that other workers' transactions held. See MysqlStore.prepareSession.
 */
const BY_ID = "FORCE INDEX (PRIMARY)";

/** The statements and fragments that differ on MySQL and MariaDB. */
export class MysqlDialect implements SqlDialect {
  readonly name = "mysql" as const;
  readonly names = storeTableNames((name) => `\`${name}\``);
  readonly held = "status = 'reserved'";
  readonly forUpdate = " FOR UPDATE";
  readonly forShare = " LOCK IN SHARE MODE";
  readonly skipLocked = " FOR UPDATE SKIP LOCKED";
  readonly fromNoTable = " FROM DUAL";
  /**
   * MariaDB's transactions send each round trip as one compound statement, where a statement that
   * keeps the write's count comes between the write and the statement that reads it
   * (pipelined-transaction.ts). Cast: JSON_OBJECT wrote the variable as a string.
   */
  readonly previousRowCount: string;
  /** Transactions send each round trip as one compound statement (MariaDB), which previousRowCount relies on. */
  readonly compoundRoundTrips: boolean;
  readonly singleWriter = false;
  readonly dropsStagingInTransaction = false;

  /** `mariadb`: MariaDB rather than MySQL, which has DELETE ... RETURNING. */
  constructor(private readonly mariadb: boolean) {
    this.compoundRoundTrips = mariadb;
    this.previousRowCount = mariadb ? `CAST(${LAST_WRITE_COUNT} AS SIGNED)` : "ROW_COUNT()";
  }

  jobsTable(table: string): string {
    return jobsTable(table);
  }

  targetTable(table: string): string {
    return targetTable(table);
  }

  byId(jobs: string): string {
    return `${jobs} ${BY_ID}`;
  }

  inReadyOrder(jobs: string): string {
    return `${jobs} FORCE INDEX (ready_idx)`;
  }

  /**
   * The ready jobs' ids read from the ready index without locks (a restriction also reads their
   * keys), then their rows locked by primary key, skipping rows others hold, and the filter applied
   * again to each locked row, which holds its latest version. Scanned in ready order FOR UPDATE
   * SKIP LOCKED, InnoDB locked each job twice, in the index and in the table, and checked each index
   * entry for a writer that had not committed, on pages that every Reserve and Complete had just
   * changed: a 1,000-job read took 14.8-17.9 ms against 5.0-5.6 ms this way, and locked 2,000 rows
   * against 1,000 (mysql2 alone, 20,000 jobs, MariaDB 10.11). The derived table lets the inner
   * read have a LIMIT, and a read in a subquery takes no locks.
   */
  readonly readyJobsByCandidates = (jobs: string, nextReady: string, filter: string): string =>
    `SELECT id, key_json, priority, attempts FROM ${jobs} ${BY_ID}
      WHERE id IN (SELECT id FROM (SELECT id FROM ${this.inReadyOrder(jobs)} WHERE ${nextReady}) candidates) AND ${filter}
      ORDER BY priority, scheduled_time, id${this.skipLocked}`;

  concat(...parts: string[]): string {
    return `CONCAT(${parts.join(", ")})`;
  }

  greatest(a: string, b: string): string {
    return `GREATEST(${a}, ${b})`;
  }

  inserted(column: string): string {
    return `VALUES(${column})`;
  }

  onConflictKeep(_conflict: string, mysqlNoop: string): string {
    return `ON DUPLICATE KEY UPDATE ${mysqlNoop} = ${mysqlNoop}`;
  }

  onConflictUpdate(_conflict: string, assignments: string): string {
    return `ON DUPLICATE KEY UPDATE ${assignments}`;
  }

  restriction(conditions: readonly AttributeCondition[]): { sql: string; params: Param[] } {
    // JSON_UNQUOTE(JSON_EXTRACT()) yields text in MariaDB and MySQL 8 alike: int64 as its decimal string, true/false.
    // Compared as bytes: every text collation here pads spaces, so "a" would also match "a ".
    const sql = conditions.map((c) => ` AND CAST(JSON_UNQUOTE(JSON_EXTRACT(key_json, '$.${c.name}')) AS BINARY) = CAST(? AS BINARY)`).join("");
    return { sql, params: conditions.map((c) => restrictionText(c.value)) };
  }

  // The statements of a batch of rows, keys or ids carry their values as literals (sql-literals.ts),
  // and so does every statement sent with them: one `?` anywhere in a round trip had mysql2 scan
  // all of its text for placeholders, a thousand keys' JSON and ids included.
  bind(template: string, params: readonly Param[]): Statement {
    return { sql: bindLiterals(template, params), params: [] };
  }

  inList(values: readonly Param[]): { sql: string; params: Param[] } {
    return { sql: literalList(values), params: [] };
  }

  insertRows(into: string, row: string, count: number, params: readonly Param[], tail: string): Statement {
    return { sql: `${into} VALUES ${literalRows(row, count, params)} ${tail}`, params: [] };
  }

  perKey(match: (keyPredicate: string) => string, hashes: readonly string[], after: readonly Param[] = []): Statement {
    return { sql: match(`key_hash IN (${literalList(hashes)})`), params: [...after] };
  }

  knownKeys(jobs: string, target: string, hashes: readonly string[]): Statement {
    const list = literalList(hashes);
    return {
      sql: `SELECT key_hash FROM ${target} WHERE key_hash IN (${list})
            UNION ALL SELECT key_hash FROM ${jobs} WHERE key_hash IN (${list})`,
      params: [],
    };
  }

  /**
   * The jobs just inserted are told apart by id. A multi-row INSERT reserves one id for each of its
   * rows at once, in one block from LAST_INSERT_ID() (its first inserted row) stepping by
   * auto_increment_increment (above 1 under Galera or multi-primary replication, whose other
   * nodes' ids fall between), and its inserted rows take the block's first ids in turn (a
   * duplicate's id goes to the next row: see keepJob in refresh); no other statement's row gets
   * an id in it. So the rows are the first ROW_COUNT() ids of the block (the INSERT's count: the
   * connection does not ask for found rows, so a kept duplicate counts 0), and the DELETE needs no
   * key list (measured with mysql2 alone, 1,000 new keys: 9.9-11.4 ms of MariaDB's CPU, against
   * 13.4-15.3 ms for the lookup and insert). The status and create time are this refresh's, as
   * one more guard.
   *
   * The INSERT's count and whether the target holds any result are read into session variables
   * right after it, by a plain SELECT (a consistent read at READ COMMITTED, after the INSERT: it
   * sees every Complete the INSERT waited for). The DELETE's WHERE then reads them as constants,
   * when it is optimized: an INSERT that inserted nothing, or a table with no result yet (its
   * first refreshes: nothing can be computed), makes it impossible, and the DELETE reads no row
   * (a DELETE's own read of the target, EXISTS or a SET from a subquery, would lock its first
   * row, and wait for a Complete inserting it). LAST_INSERT_ID() is read when it is optimized
   * too, and the range on the primary key. So the SELECT and the DELETE go in the INSERT's round
   * trip instead of waiting for its answer (a 1,000-key batch's statements sent by mysql2 alone:
   * 10.0 ms a call against 11.3 in separate round trips), and on an empty target the DELETE
   * costs MariaDB nothing (0.6-0.8 ms of its CPU less per 1,000 keys).
   *
   * The last id is read by a point lookup as well as by the range: InnoDB locks the first row past
   * a range's end before it sees that the row is out of range, and that row is the first of the
   * statement that reserved ids next, usually another refresh not yet committed, which this one
   * then waited for (or deadlocked with). With the point lookup the range stops on its own row.
   * The range must end on the id before it (BETWEEN): a range open at the last id (`j.id < last`)
   * is merged with the point into one range that reads past it again (found by the test of a
   * held row past the ids).
   *
   * The operation sends these statements right after the INSERT (refresh), in the same round
   * trip, with no statement between that could change its count or its LAST_INSERT_ID() (on
   * MariaDB one comes between that keeps the count for the SELECT: pipelined-transaction.ts).
   */
  dropComputedJustInserted = (jobs: string, target: string, createTime: number): Statement[] => {
    // The id of the (inserted - back)th row inserted, the first if fewer. The arithmetic is
    // unsigned: an expression below zero is an error even where the WHERE is already false.
    const id = (back: number) => `LAST_INSERT_ID() + (GREATEST(@populus_inserted, ${back}) - ${back}) * @@auto_increment_increment`;
    return [
      {
        sql: `SELECT ${this.previousRowCount}, EXISTS (SELECT 1 FROM ${target}) INTO @populus_inserted, @populus_any_result`,
        params: [],
        readsPreviousCount: true,
      },
      // The block first, then each of its keys in the target by primary key: a DELETE's join reads
      // the target with locks, and on a small target MariaDB chose to scan all of it, so a refresh
      // waited for every Complete in flight on the table, not only those of its own keys.
      {
        sql: `DELETE j FROM ${jobs} j ${BY_ID} STRAIGHT_JOIN ${target} t FORCE INDEX (PRIMARY) ON t.key_hash = j.key_hash
            WHERE @populus_any_result AND @populus_inserted > 0 AND (j.id BETWEEN LAST_INSERT_ID() AND ${id(2)} OR j.id = ${id(1)})
              AND MOD(j.id - LAST_INSERT_ID(), @@auto_increment_increment) = 0 AND j.status = 'pending' AND j.create_time = ${literal(createTime)}`,
        params: [],
      },
    ];
  };

  /** One UPDATE for the batch: only fixed-size columns change, so InnoDB updates each record in place (table-ddl.ts). */
  leaseJobs(jobs: string, batch: string, now: number, expire: number, ids: readonly Param[]): Statement {
    const set = bindLiterals(
      "SET status = 'reserved', lease_batch = ?, reserve_time = ?, lease_expire_time = ?, attempts = attempts + 1, progress = NULL, progress_message = NULL",
      [batch, now, expire],
    );
    return { sql: `UPDATE ${jobs} ${BY_ID} ${set} WHERE id IN (${literalList(ids)})`, params: [] };
  }

  /**
   * MariaDB deletes the held jobs and reads them in one statement: the locking read was a sixth of
   * the database's work per job. A single-table DELETE takes no index hint, and without one MariaDB
   * scanned (and locked) the whole table when the batch was most of it, waiting on rows other
   * workers hold; ordered by id with a LIMIT, it reads the ids as primary-key ranges, as BY_ID does
   * (store-conformance.test.ts, "lock only their own rows"). MySQL has no DELETE ... RETURNING.
   */
  deleteHeldReturning(jobs: string, leases: { sql: string; params: Param[] }, columns: string, count: number): Statement | null {
    if (!this.mariadb) return null;
    return { sql: `DELETE FROM ${jobs} WHERE status = 'reserved' AND ${leases.sql} ORDER BY id LIMIT ${count} RETURNING ${columns}`, params: leases.params };
  }

  /** No index hint in a single-table DELETE: a join with the ids as a table makes it primary-key lookups too (BY_ID). */
  deleteById(jobs: string, ids: readonly Param[]): Statement {
    return {
      sql: `DELETE j FROM ${jobs} AS j JOIN JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT PATH '$')) AS done ON j.id = done.id`,
      params: [JSON.stringify(ids.map(Number))],
    };
  }
}
