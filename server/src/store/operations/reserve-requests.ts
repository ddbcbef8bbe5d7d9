/**
 * Request ids (promise 3): a Reserve retried after its answer was lost gets the same leases. The
 * record of a Reserve with a request id lives in `~populus_reserve_requests` until its leases are
 * all gone or its lease length has passed (deleteSpentRecords).
 */
import { type HeldGrantRow, leaseFilter, type ReserveRequestRow, repeatedGrants, requestLeaseTokens } from "../row-mapping.js";
import type { LeaseGrant } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, type Statement, sql, write } from "./operation.js";

/** Reads the record of a Reserve with this request id, locked (one row or none); repeatedReserve takes what it finds. */
export function requestRecordSql(d: SqlDialect, table: string, requestId: string): Statement {
  return sql(`SELECT lease_prefix, job_ids, lease_expire_time FROM ${d.names.reserveRequests} WHERE table_name = ? AND request_id = ?${d.forUpdate}`, [
    table,
    requestId,
  ]);
}

/** A row of requestRecordSql. */
export type RequestRecord = ReserveRequestRow & { lease_expire_time: string | number };

/**
 * The leases an earlier Reserve with this request id granted that are still held, while its lease
 * length has not passed; empty when there is none. A record whose leases are all gone is deleted,
 * so this Reserve's own record can take its place. `request`: what requestRecordSql read.
 */
export function* repeatedReserve(d: SqlDialect, table: string, requestId: string, now: number, request: RequestRecord | undefined): Operation<LeaseGrant[]> {
  if (request === undefined) return [];
  if (Number(request.lease_expire_time) > now) {
    const tokens = requestLeaseTokens(request);
    const leases = leaseFilter(d, tokens);
    const held = yield* rows<HeldGrantRow>(
      sql(
        `SELECT id, lease_batch, key_json, priority, attempts, lease_expire_time FROM ${d.byId(d.jobsTable(table))} WHERE ${d.held} AND ${leases.sql}`,
        leases.params,
      ),
    );
    if (held.length > 0) return repeatedGrants(tokens, held);
  }
  yield* write(sql(`DELETE FROM ${d.names.reserveRequests} WHERE table_name = ? AND request_id = ?`, [table, requestId]));
  return [];
}

/**
 * Records the batch a Reserve with a request id leased. A plain INSERT: repeatedReserve deleted a
 * spent record of the same id, so on MySQL a clash means another replica recorded the id meanwhile
 * (the MySQL store then answers that replica's leases).
 */
export function* recordReserveRequest(
  d: SqlDialect,
  table: string,
  requestId: string,
  prefix: string,
  jobIds: readonly (string | number)[],
  expire: number,
): Operation<void> {
  yield* write(
    d.bind(`INSERT INTO ${d.names.reserveRequests} (table_name, request_id, lease_prefix, job_ids, lease_expire_time) VALUES (?, ?, ?, ?, ?)`, [
      table,
      requestId,
      prefix,
      jobIds.join(","),
      expire,
    ]),
  );
}
