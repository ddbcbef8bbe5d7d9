/**
 * Complete (promise 2): all or nothing. The batch's results go into the target and its jobs are
 * deleted (or set success with keepCompleted) in one transaction, only while every lease is
 * current; a repeat of a Complete that committed succeeds without writing twice.
 */
import { completionChange } from "../change-log.js";
import { LeaseLostError } from "../../errors.js";
import { byLeaseToken, leaseFilter } from "../row-mapping.js";
import type { CompleteOutcome, Completion } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { copyHolders, type HolderRow, holdersByBatch, holdersSql } from "./lease-holders.js";
import { type Operation, type Param, rows, rowsAndRows, run, sql, write } from "./operation.js";

/** A job a Complete's lease still holds, as the Complete reads it. */
interface HeldForCompletion {
  readonly id: string | number;
  readonly key_hash: string;
  readonly key_json: string;
  readonly lease_batch: string;
}

const HELD_COLUMNS = "id, key_hash, key_json, lease_batch";

/** One Complete's transaction; LeaseLostError (rolled back) when any lease is neither held nor committed. */
export function* complete(d: SqlDialect, table: string, completions: readonly Completion[], keepCompleted: boolean, now: number): Operation<CompleteOutcome> {
  const jobs = d.jobsTable(table);
  const target = d.targetTable(table);
  const tokens = completions.map((c) => c.leaseToken);
  const leases = leaseFilter(d, tokens);
  // The jobs these leases still hold, locked so a concurrent sweep cannot take them mid-commit, or
  // (MariaDB) deleted as they are read: a lease found lost below rolls the deletes back. Their
  // holders, for the change log, in the same round trip.
  const deleting = keepCompleted ? null : d.deleteHeldReturning(jobs, leases, HELD_COLUMNS, tokens.length);
  const [holderRows, held] = yield* rowsAndRows<HolderRow, HeldForCompletion>(
    holdersSql(d, leases.batches),
    deleting ?? sql(`SELECT ${HELD_COLUMNS} FROM ${d.byId(jobs)} WHERE ${d.held} AND ${leases.sql}${d.forUpdate}`, leases.params),
  );
  const holders = holdersByBatch(holderRows);
  const byToken = byLeaseToken(held);
  let alreadyCommitted = 0;
  // Checked token by token, not by count: a token naming one batch and another batch's job matches
  // that job (leaseFilter), so as many rows as tokens may come back with one token not among them.
  const notHeld = tokens.filter((t) => !byToken.has(t));
  // Such a job is held by a lease this call did not name: it must not be committed by it.
  if (held.length > tokens.length - notHeld.length) throw new LeaseLostError(notHeld);
  if (notHeld.length > 0) {
    // A repeat of a Complete that committed: its token is on the target row.
    const list = d.inList(notHeld);
    const committed = yield* rows<{ lease_token: string }>(sql(`SELECT lease_token FROM ${target} WHERE lease_token IN (${list.sql})`, list.params));
    const done = new Set(committed.map((r) => r.lease_token));
    const lost = notHeld.filter((t) => !done.has(t));
    if (lost.length > 0) throw new LeaseLostError(lost);
    alreadyCommitted = done.size;
  }
  if (held.length === 0) return { committed: 0, alreadyCommitted };
  const ids = held.map((r) => r.id);
  if (keepCompleted) {
    const list = d.inList(ids);
    yield* write(
      sql(
        `UPDATE ${d.byId(jobs)} SET status = 'success', complete_time = ?, duration_ms = ? - reserve_time, lease_expire_time = 0
         WHERE id IN (${list.sql})`,
        [now, now, ...list.params],
      ),
    );
    yield* copyHolders(d, jobs, held, holders);
  } else if (deleting === null) {
    yield* write(d.deleteById(jobs, ids));
  }
  // A committed result is never overwritten: a row already there is kept.
  const params: Param[] = [];
  for (const c of completions) {
    const row = byToken.get(c.leaseToken);
    if (row !== undefined) params.push(row.key_hash, row.key_json, c.resultJson, c.leaseToken, now);
  }
  const insert = d.insertRows(
    `INSERT INTO ${target} (key_hash, key_json, result_json, lease_token, complete_time)`,
    "(?, ?, ?, ?, ?)",
    held.length,
    params,
    d.onConflictKeep("key_hash", "key_hash"),
  );
  if (insert.perRow === undefined) {
    // One statement (MySQL): the change log counts the rows it wrote in SQL, and both go with the
    // COMMIT, so a Complete is two round trips, not three.
    yield* write(insert);
    yield* logChange(d, table, completionChange(held, holders, 0, keepCompleted), now, "target");
  } else {
    const written = yield* run(insert);
    yield* logChange(d, table, completionChange(held, holders, written, keepCompleted), now);
  }
  return { committed: held.length, alreadyCommitted };
}
