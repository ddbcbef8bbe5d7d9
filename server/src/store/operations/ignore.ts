/**
 * Ignore: an operator sets keys' jobs to ignore (refresh then never queues them).
 */
import { ignoreChange } from "../change-log.js";
import type { EncodedKey } from "../../key-codec.js";
import type { JobStatusName } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { insertJobs } from "./insert-jobs.js";
import { KEY_CHUNK, type Operation, rows, write } from "./operation.js";

/** Sets these keys' jobs to ignore, inserting the missing ones; an ignored reserved job loses its lease. */
export function* ignore(d: SqlDialect, table: string, keys: readonly EncodedKey[], now: number): Operation<number> {
  const jobs = d.jobsTable(table);
  const before: JobStatusName[] = [];
  for (let i = 0; i < keys.length; i += KEY_CHUNK) {
    const chunk = keys.slice(i, i + KEY_CHUNK);
    const hashes = chunk.map((k) => k.hash);
    // The statuses the keys leave, for the change log (locked on MySQL: the upsert below changes them).
    const found = yield* rows<{ status: JobStatusName }>(d.perKey((match) => `SELECT status FROM ${jobs} WHERE ${match}${d.forUpdate}`, hashes));
    for (const r of found) before.push(r.status);
    // Counted as keys: MySQL counts 2 per updated row.
    const row = { status: "ignore", priority: 5, createTime: now, scheduledTime: now } as const;
    yield* write(insertJobs(d, jobs, chunk, row, d.onConflictUpdate("key_hash", "status = 'ignore', lease_batch = '', lease_expire_time = 0")));
  }
  yield* logChange(d, table, ignoreChange(keys, before), now);
  return keys.length;
}
