/**
 * Fail: a fenced failure, only the current lease may set error; a repeat of a Fail that committed
 * succeeds (its batch stays on the error row).
 */
import { Change, workerIdOf } from "../change-log.js";
import { LeaseLostError } from "../../errors.js";
import { leaseBatch, leaseJobId, leaseToken } from "../row-mapping.js";
import { truncateErrorMessage } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { copyHolders, leaseHolders } from "./lease-holders.js";
import { type Operation, rows, run, sql } from "./operation.js";

/** One Fail's transaction; LeaseLostError when the lease is neither held nor the one that failed the job. */
export function* fail(d: SqlDialect, table: string, token: string, errorMessage: string, errorStack: string, now: number): Operation<void> {
  const jobs = d.jobsTable(table);
  const id = leaseJobId(token);
  const batch = leaseBatch(token);
  // Only the token as Reserve wrote it: "<batch>-05" names job 5 too, and is no lease.
  if (leaseToken(batch, id) !== token) throw new LeaseLostError([token]);
  const changed = yield* run(
    sql(
      `UPDATE ${jobs} SET status = 'error', error_message = ?, error_stack = ?, complete_time = ?, duration_ms = ? - reserve_time,
         lease_expire_time = 0
       WHERE status = 'reserved' AND id = ? AND lease_batch = ?`,
      [truncateErrorMessage(errorMessage), errorStack, now, now, id, batch],
    ),
  );
  if (changed === 0) {
    const [repeat] = yield* rows(sql(`SELECT 1 AS x FROM ${jobs} WHERE status = 'error' AND id = ? AND lease_batch = ?`, [id, batch]));
    if (repeat === undefined) throw new LeaseLostError([token]);
    return;
  }
  // The error row outlives its batch's: it keeps its own copy of who failed it.
  const holders = yield* leaseHolders(d, [batch]);
  yield* copyHolders(d, jobs, [{ id, lease_batch: batch }], holders);
  const [row] = yield* rows<{ key_json: string; error_message: string }>(sql(`SELECT key_json, error_message FROM ${jobs} WHERE id = ?`, [id]));
  if (row === undefined) return;
  const change = new Change()
    .move("reserved", "error", 1)
    .jobs("error", [row.key_json], { workerId: workerIdOf(holders, batch), errorMessages: [row.error_message] });
  yield* logChange(d, table, change, now);
}
