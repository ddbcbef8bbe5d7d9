/**
 * Fail: a fenced failure, only the current lease may set error; a repeat of a Fail that committed
 * succeeds (its token stays on the error row).
 */
import { Change } from "../change-log.js";
import { LeaseLostError } from "../../errors.js";
import { leaseJobId } from "../row-mapping.js";
import { truncateErrorMessage } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, run, sql } from "./operation.js";

/** One Fail's transaction; LeaseLostError when the lease is neither held nor the one that failed the job. */
export function* fail(d: SqlDialect, table: string, token: string, errorMessage: string, errorStack: string, now: number): Operation<void> {
  const jobs = d.jobsTable(table);
  const id = leaseJobId(token);
  const changed = yield* run(
    sql(
      `UPDATE ${jobs} SET status = 'error', error_message = ?, error_stack = ?, complete_time = ?, duration_ms = ? - reserve_time,
         lease_expire_time = NULL
       WHERE status = 'reserved' AND id = ? AND lease_token = ?`,
      [truncateErrorMessage(errorMessage), errorStack, now, now, id, token],
    ),
  );
  if (changed === 0) {
    const [repeat] = yield* rows(sql(`SELECT 1 AS x FROM ${jobs} WHERE status = 'error' AND id = ? AND lease_token = ?`, [id, token]));
    if (repeat === undefined) throw new LeaseLostError([token]);
    return;
  }
  const [row] = yield* rows<{ key_json: string; worker_id: string | null; error_message: string }>(
    sql(`SELECT key_json, worker_id, error_message FROM ${jobs} WHERE id = ?`, [id]),
  );
  if (row === undefined) return;
  const change = new Change().move("reserved", "error", 1).jobs("error", [row.key_json], { workerId: row.worker_id ?? "", errorMessages: [row.error_message] });
  yield* logChange(d, table, change, now);
}
