/**
 * New job rows, as refresh (pending) and ignore insert them: one column list, so the statements
 * cannot drift apart when a column is added.
 */
import type { EncodedKey } from "../../key-codec.js";
import type { JobStatusName } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import type { Param, Statement } from "./operation.js";

/** What a new job row holds besides its key. */
export interface NewJobRow {
  readonly status: Extract<JobStatusName, "pending" | "ignore">;
  readonly priority: number;
  readonly createTime: number;
  readonly scheduledTime: number;
}

const INTO = "(key_hash, key_json, status, priority, create_time, scheduled_time, attempts)";

/** The values of one row, `?` for the key's and the row's params (setRowParams' order). */
function values(row: NewJobRow): string {
  return `?, ?, '${row.status}', ?, ?, ?, 0`;
}

const PARAMS_PER_ROW = 5;

/** Writes the params of one row into `params` from `at` (no array of its own: a refresh writes a million rows). */
function setRowParams(params: Param[], at: number, key: EncodedKey, row: NewJobRow): void {
  params[at] = key.hash;
  params[at + 1] = key.json;
  params[at + 2] = row.priority;
  params[at + 3] = row.createTime;
  params[at + 4] = row.scheduledTime;
}

/** A job per key, with no attempt yet; `onConflict` says what happens to a key that already has one. */
export function insertJobs(d: SqlDialect, jobs: string, keys: readonly EncodedKey[], row: NewJobRow, onConflict: string): Statement {
  // Allocated once at its size: grown push by push, a 1,000-key batch's array was copied some twenty times.
  const params = new Array<Param>(keys.length * PARAMS_PER_ROW);
  for (let i = 0; i < keys.length; i++) setRowParams(params, i * PARAMS_PER_ROW, keys[i] as EncodedKey, row);
  return d.insertRows(`INSERT INTO ${jobs} ${INTO}`, `(${values(row)})`, keys.length, params, onConflict);
}

/**
 * A job for one key unless the target already holds its result or the key already has a job, in
 * one statement: the lookup refresh makes first for a batch (knownKeys) would be a round trip of
 * its own, a third of the statements of a one-key refresh on MySQL. `onConflict` says what happens
 * to a key whose job another transaction inserts meanwhile.
 *
 * Why both NOT EXISTS: at READ COMMITTED both are read from one snapshot of the statement, so a
 * Complete of this key that commits meanwhile is seen either not at all (its job still exists) or
 * whole (its target row exists). With the target's alone, the read missed the uncommitted target
 * row, the insert then waited on the job row Complete was deleting, and inserted a pending job
 * for a computed key once Complete committed (test: "a one-key refresh racing a Complete").
 */
export function insertJobUnlessComputed(d: SqlDialect, jobs: string, target: string, key: EncodedKey, row: NewJobRow, onConflict: string): Statement {
  const params = new Array<Param>(PARAMS_PER_ROW + 2);
  setRowParams(params, 0, key, row);
  params[PARAMS_PER_ROW] = key.hash;
  params[PARAMS_PER_ROW + 1] = key.hash;
  return {
    sql: `INSERT INTO ${jobs} ${INTO} SELECT ${values(row)}${d.fromNoTable}
          WHERE NOT EXISTS (SELECT 1 FROM ${target} WHERE key_hash = ?)
            AND NOT EXISTS (SELECT 1 FROM ${jobs} WHERE key_hash = ?) ${onConflict}`,
    params,
  };
}
