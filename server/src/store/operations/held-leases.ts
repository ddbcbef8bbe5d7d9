/**
 * The given leases that are still held, with their keys and holders, locked on MySQL until the
 * transaction (Heartbeat, Release) has changed them.
 */
import type { HeldLease } from "../change-log.js";
import { leaseFilter } from "../row-mapping.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, sql } from "./operation.js";

/** The held ones among `tokens`, by token. */
export function* heldLeases(d: SqlDialect, jobs: string, tokens: readonly string[]): Operation<Map<string, HeldLease>> {
  const leases = leaseFilter(d, tokens);
  const found = yield* rows<{ lease_token: string; key_json: string; worker_id: string | null }>(
    sql(`SELECT lease_token, key_json, worker_id FROM ${d.byId(jobs)} WHERE ${d.held} AND ${leases.sql}${d.forUpdate}`, leases.params),
  );
  return new Map(found.map((r) => [r.lease_token, { keyJson: r.key_json, workerId: r.worker_id ?? "" }]));
}
