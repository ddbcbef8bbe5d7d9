/**
 * The SQLite side of the seam (operations/dialect.ts). The BEGIN IMMEDIATE transaction is the only
 * writer, so reads take no locks; a prepared statement runs in-process in microseconds, so a
 * batch is one prepared statement run per key (the store keeps them prepared) rather than a
 * statement of a thousand placeholders compiled per call.
 */
import type { AttributeCondition } from "../../key-codec.js";
import { type SqlDialect, storeTableNames } from "../operations/dialect.js";
import { type Param, placeholders, type Statement } from "../operations/operation.js";
import { jobsTable, targetTable } from "./table-ddl.js";

/** The statements and fragments that differ on SQLite. */
export class SqliteDialect implements SqlDialect {
  readonly name = "sqlite" as const;
  readonly names = storeTableNames((name) => `"${name}"`);
  /**
   * The unary + keeps SQLite from walking the ready index's reserved entries (every job in
   * flight) and makes it look the ids up by rowid.
   */
  readonly held = "+status = 'reserved'";
  readonly forUpdate = "";
  readonly forShare = "";
  readonly skipLocked = "";
  /** One writer at a time: nothing to skip, and the scan in ready order is the read. */
  readonly readyJobsByCandidates = null;
  readonly fromNoTable = "";
  readonly previousRowCount = "changes()";
  readonly singleWriter = true;
  /** One writer: the deletes hold up no other transaction of this file for long. */
  readonly dropsStagingInTransaction = true;

  jobsTable(table: string): string {
    return jobsTable(table);
  }

  targetTable(table: string): string {
    return targetTable(table);
  }

  byId(jobs: string): string {
    return jobs;
  }

  inReadyOrder(jobs: string): string {
    return jobs;
  }

  concat(...parts: string[]): string {
    return parts.join(" || ");
  }

  greatest(a: string, b: string): string {
    return `MAX(${a}, ${b})`;
  }

  inserted(column: string): string {
    return `excluded.${column}`;
  }

  onConflictKeep(conflict: string): string {
    return conflict === "" ? "ON CONFLICT DO NOTHING" : `ON CONFLICT (${conflict}) DO NOTHING`;
  }

  onConflictUpdate(conflict: string, assignments: string): string {
    return `ON CONFLICT (${conflict}) DO UPDATE SET ${assignments}`;
  }

  restriction(conditions: readonly AttributeCondition[]): { sql: string; params: Param[] } {
    // json_extract yields text for strings (and int64, stored as decimal strings), real for doubles, 1/0 for booleans.
    const sql = conditions.map((c) => ` AND json_extract(key_json, '$.${c.name}') = ?`).join("");
    return { sql, params: conditions.map((c) => (typeof c.value === "boolean" ? (c.value ? 1 : 0) : c.value)) };
  }

  bind(template: string, params: readonly Param[]): Statement {
    return { sql: template, params: [...params] };
  }

  inList(values: readonly Param[]): { sql: string; params: Param[] } {
    return { sql: placeholders(values.length), params: [...values] };
  }

  insertRows(into: string, row: string, count: number, params: readonly Param[], tail: string): Statement {
    return { sql: `${into} VALUES ${row} ${tail}`, params, perRow: params.length / count };
  }

  perKey(match: (keyPredicate: string) => string, hashes: readonly string[], after: readonly Param[] = []): Statement {
    if (after.length === 0) return { sql: match("key_hash = ?"), params: hashes, perRow: 1 };
    const params: Param[] = [];
    for (const h of hashes) params.push(h, ...after);
    return { sql: match("key_hash = ?"), params, perRow: 1 + after.length };
  }

  /** A prepared lookup per key costs microseconds in-process: batches are always looked up first. */
  readonly dropComputedJustInserted = null;

  /** Computed keys only: a queued one is skipped by the insert's ON CONFLICT, as cheaply in-process. */
  knownKeys(_jobs: string, target: string, hashes: readonly string[]): Statement {
    return { sql: `SELECT key_hash FROM ${target} WHERE key_hash = ?`, params: hashes, perRow: 1 };
  }

  /** One prepared UPDATE per job: one statement text whatever the batch's size, so it stays prepared. */
  leaseJobs(jobs: string, batch: string, now: number, expire: number, ids: readonly Param[]): Statement {
    const params: Param[] = [];
    for (const id of ids) params.push(batch, now, expire, id);
    return {
      sql: `UPDATE ${jobs} SET status = 'reserved', lease_batch = ?, reserve_time = ?, lease_expire_time = ?, attempts = attempts + 1,
              progress = NULL, progress_message = NULL
            WHERE id = ?`,
      params,
      perRow: 4,
    };
  }

  deleteHeldReturning(): null {
    return null;
  }

  deleteById(jobs: string, ids: readonly Param[]): Statement {
    return { sql: `DELETE FROM ${jobs} WHERE id IN (${placeholders(ids.length)})`, params: ids };
  }
}
