/**
 * Leases that ran out: the sweep of expired leases (expireLeases) and the orphan reset of a
 * refresh. A job whose worker was lost maxLostAttempts times becomes error (promise 3).
 */
import { Change } from "../change-log.js";
import { type StoreOptions, WORKER_LOST_MESSAGE } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { copyHolders, deleteSpentLeaseRows, leaseHolders } from "./lease-holders.js";
import { type Operation, rows, run, sql, write } from "./operation.js";

/**
 * Reserved jobs whose `column` is before `cutoff` go back to pending, or to error once their worker
 * was lost maxLostAttempts times; both logged with their keys. Returns rows changed.
 */
export function* resetLeases(
  d: SqlDialect,
  table: string,
  column: "lease_expire_time" | "reserve_time",
  cutoff: number,
  now: number,
  change: Change,
  /**
   * The sweep skips rows another transaction holds (a Complete or Heartbeat in flight: its lease
   * is being settled now, and the next sweep sees it). An orphan refresh waits for them: its
   * caller asked for every lease older than the timeout and reads the count, so a row locked for
   * an instant by the sweep's own scan must not go uncounted.
   */
  locked: "skip" | "wait",
  options: StoreOptions,
): Operation<number> {
  const jobs = d.jobsTable(table);
  const max = options.maxLostAttempts;
  const found = yield* rows<{ id: string | number; key_json: string; attempts: string | number; lease_batch: string }>(
    sql(
      `SELECT id, key_json, attempts, lease_batch FROM ${jobs} WHERE status = 'reserved' AND ${column} < ?${locked === "skip" ? d.skipLocked : d.forUpdate}`,
      [cutoff],
    ),
  );
  if (found.length === 0) return 0;
  const lost = found.filter((r) => Number(r.attempts) >= max);
  const back = found.filter((r) => Number(r.attempts) < max);
  if (lost.length > 0) {
    const list = d.inList(lost.map((r) => r.id));
    // The error row outlives its batch's: it keeps its own copy of the holder it lost.
    yield* copyHolders(d, jobs, lost, yield* leaseHolders(d, [...new Set(lost.map((r) => r.lease_batch))]));
    yield* write(
      sql(
        `UPDATE ${d.byId(jobs)} SET status = 'error', error_message = ${d.concat("?", "attempts", "?")}, complete_time = ?, lease_batch = '', lease_expire_time = 0
         WHERE id IN (${list.sql})`,
        [WORKER_LOST_MESSAGE.before, WORKER_LOST_MESSAGE.after, now, ...list.params],
      ),
    );
    change.move("reserved", "error", lost.length).jobs(
      "error",
      lost.map((r) => r.key_json),
      { errorMessages: lost.map((r) => `${WORKER_LOST_MESSAGE.before}${r.attempts}${WORKER_LOST_MESSAGE.after}`) },
    );
  }
  if (back.length > 0) {
    const list = d.inList(back.map((r) => r.id));
    yield* write(
      sql(
        `UPDATE ${d.byId(jobs)} SET status = 'pending', complete_time = NULL, lease_batch = '', lease_expire_time = 0 WHERE id IN (${list.sql})`,
        list.params,
      ),
    );
    change.move("reserved", "pending", back.length).jobs(
      "pending",
      back.map((r) => r.key_json),
    );
  }
  return found.length;
}

/** One table's sweep, in its own transaction: its expired leases, logged. */
export function* expireTableLeases(d: SqlDialect, table: string, now: number, options: StoreOptions): Operation<number> {
  const change = new Change();
  const n = yield* resetLeases(d, table, "lease_expire_time", now, now, change, "skip", options);
  yield* logChange(d, table, change, now);
  return n;
}

/**
 * Records the sweep deletes once spent: a Reserve's request record past its lease length (a retry
 * then leases anew), and the lease rows of batches whose leases have all ended.
 */
export function* deleteSpentRecords(d: SqlDialect, now: number): Operation<number> {
  yield* deleteSpentLeaseRows(d, now);
  return yield* run(sql(`DELETE FROM ${d.names.reserveRequests} WHERE lease_expire_time <= ?`, [now]));
}
