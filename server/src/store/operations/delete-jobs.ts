/**
 * DeleteJobs: an operator's delete of jobs by status and key. Keys go in batches of KEY_CHUNK (one
 * statement per batch on MySQL, one prepared run per key on SQLite).
 */
import { Change } from "../change-log.js";
import type { EncodedKey } from "../../key-codec.js";
import type { JobStatusName } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { KEY_CHUNK, type Operation, run, sql } from "./operation.js";
import { refreshDueNow } from "./refresh-claims.js";

const JOB_STATUSES: readonly JobStatusName[] = ["pending", "reserved", "success", "error", "ignore"];

/** Deletes the jobs of these statuses (all: none given), of these keys (all: none given); the next refresh queues their keys again, interval or not. */
export function* deleteJobs(d: SqlDialect, table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Operation<number> {
  const jobs = d.jobsTable(table);
  const change = new Change();
  let deleted = 0;
  // One DELETE per status, so the change log gets exact counts.
  for (const status of statuses.length > 0 ? statuses : JOB_STATUSES) {
    let n = 0;
    if (keys.length === 0) n = yield* run(sql(`DELETE FROM ${jobs} WHERE status = ?`, [status]));
    for (let i = 0; i < keys.length; i += KEY_CHUNK) {
      const hashes = keys.slice(i, i + KEY_CHUNK).map((k) => k.hash);
      n += yield* run(d.perKey((match) => `DELETE FROM ${jobs} WHERE ${match} AND status = ?`, hashes, [status]));
    }
    change.move(status, null, n);
    deleted += n;
  }
  yield* logChange(d, table, change, Date.now());
  if (deleted > 0) yield* refreshDueNow(d, table);
  return deleted;
}
