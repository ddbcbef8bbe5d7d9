/**
 * Release (promise 3): gives held leases back to pending without charging an attempt (a worker
 * told to stop); answers the lost ones.
 */
import { releaseChange } from "../change-log.js";
import { leaseFilter } from "../row-mapping.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import type { WorkerInfo } from "../store.js";
import { heldLeases } from "./held-leases.js";
import { leaseHolders } from "./lease-holders.js";
import { type Operation, run, sql } from "./operation.js";

/** One Release's transaction: how many went back to pending, and the given leases no longer held. */
export function* release(d: SqlDialect, table: string, tokens: readonly string[]): Operation<{ released: number; lost: string[] }> {
  const jobs = d.jobsTable(table);
  const held = yield* heldLeases(d, jobs, tokens);
  let released = 0;
  let holders = new Map<string, WorkerInfo>();
  if (held.size > 0) {
    const leases = leaseFilter(d, [...held.keys()]);
    released = yield* run(
      sql(
        `UPDATE ${d.byId(jobs)} SET status = 'pending', lease_batch = '', lease_expire_time = 0, attempts = ${d.greatest("attempts - 1", "0")}
         WHERE ${d.held} AND ${leases.sql}`,
        leases.params,
      ),
    );
    holders = yield* leaseHolders(d, leases.batches);
  }
  yield* logChange(d, table, releaseChange(held, holders), Date.now());
  return { released, lost: tokens.filter((t) => !held.has(t)) };
}
