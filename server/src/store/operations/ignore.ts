/**
 * Ignore: an operator sets keys' jobs to ignore (refresh then never queues them).
 */
import { ignoreChange } from "../change-log.js";
import type { EncodedKey } from "../../key-codec.js";
import type { JobStatusName } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { KEY_CHUNK, type Operation, type Param, rows, run } from "./operation.js";

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
    const params: Param[] = [];
    for (const k of chunk) params.push(k.hash, k.json, now, now);
    // Counted as keys: MySQL counts 2 per updated row.
    yield* run(
      d.insertRows(
        `INSERT INTO ${jobs} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts)`,
        "(?, ?, 'ignore', 5, ?, ?, 0)",
        chunk.length,
        params,
        d.onConflictUpdate("key_hash", "status = 'ignore', lease_token = NULL, lease_expire_time = NULL"),
      ),
    );
  }
  yield* logChange(d, table, ignoreChange(keys, before), now);
  return keys.length;
}
