/**
 * New job rows, as refresh (pending) and ignore insert them: one column list, so the two cannot
 * drift apart when a column is added.
 */
import type { EncodedKey } from "../../key-codec.js";
import type { JobStatusName } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import type { Param, Statement } from "./operation.js";

/** A job per key, with no attempt yet; `onConflict` says what happens to a key that already has one. */
export function insertJobs(
  d: SqlDialect,
  jobs: string,
  keys: readonly EncodedKey[],
  row: { status: Extract<JobStatusName, "pending" | "ignore">; priority: number; createTime: number; scheduledTime: number },
  onConflict: string,
): Statement {
  const params: Param[] = [];
  for (const k of keys) params.push(k.hash, k.json, row.priority, row.createTime, row.scheduledTime);
  return d.insertRows(
    `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)`,
    `(?, ?, '${row.status}', ?, ?, ?, 0)`,
    keys.length,
    params,
    onConflict,
  );
}
