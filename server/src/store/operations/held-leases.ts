/**
 * The given leases that are still held, with their keys and batches, locked on MySQL until the
 * transaction (Heartbeat, Release) has changed them.
 */
import type { HeldLease } from "../change-log.js";
import { byLeaseToken, leaseFilter } from "../row-mapping.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, sql } from "./operation.js";

/** The held ones among `tokens`, by token. */
export function* heldLeases(d: SqlDialect, jobs: string, tokens: readonly string[]): Operation<Map<string, HeldLease>> {
  const leases = leaseFilter(d, tokens);
  const found = yield* rows<{ id: string | number; lease_batch: string; key_json: string }>(
    sql(`SELECT id, lease_batch, key_json FROM ${d.byId(jobs)} WHERE ${d.held} AND ${leases.sql}${d.forUpdate}`, leases.params),
  );
  const given = new Set(tokens);
  const held = new Map<string, HeldLease>();
  // A row another of the given batches holds is not held by a token that names it with its own batch.
  for (const [token, r] of byLeaseToken(found)) if (given.has(token)) held.set(token, { keyJson: r.key_json, batch: r.lease_batch });
  return held;
}
