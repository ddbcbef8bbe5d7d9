/**
 * Heartbeat: extends the leases still held and records their progress; answers the lost ones.
 */
import { leaseBatch, leaseFilter, leaseJobId } from "../row-mapping.js";
import type { LeaseProgressInput } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { heldLeases } from "./held-leases.js";
import { extendLeaseRows } from "./lease-holders.js";
import { type Operation, type Param, sql, write } from "./operation.js";

/** One Heartbeat's transaction: the new expiry, and the given leases no longer held. */
export function* heartbeat(
  d: SqlDialect,
  table: string,
  tokens: readonly string[],
  leaseMs: number,
  progress: readonly LeaseProgressInput[],
  now: number,
): Operation<{ lost: string[]; leaseExpireTime: number }> {
  const jobs = d.jobsTable(table);
  const expire = now + leaseMs;
  const held = yield* heldLeases(d, jobs, tokens);
  if (held.size > 0) {
    // Every held lease in one statement.
    const leases = leaseFilter(d, [...held.keys()]);
    yield* write(sql(`UPDATE ${d.byId(jobs)} SET lease_expire_time = ? WHERE ${d.held} AND ${leases.sql}`, [expire, ...leases.params]));
    yield* extendLeaseRows(d, leases.batches, expire);
  }
  const params: Param[] = [];
  for (const p of progress) if (held.has(p.leaseToken)) params.push(p.progress, p.message, leaseJobId(p.leaseToken), leaseBatch(p.leaseToken));
  if (params.length > 0) {
    // Each lease's own values: one run per lease, on both dialects.
    yield* write({
      sql: `UPDATE ${jobs} SET progress = ?, progress_message = ? WHERE status = 'reserved' AND id = ? AND lease_batch = ?`,
      params,
      perRow: 4,
    });
  }
  return { lost: tokens.filter((t) => !held.has(t)), leaseExpireTime: expire };
}
