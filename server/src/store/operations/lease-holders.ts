/**
 * Who holds a lease: one row of `~populus_leases` per Reserve batch (migration 0005), named by the
 * batch prefix that starts each of its lease tokens. A reserved job records only its batch, so a
 * lease changes fixed-size columns of the job (table-ddl.ts); the holder is read from here for
 * the change log and ListJobs, and copied into a job that ends in error or kept success, whose row
 * outlives its batch's.
 */
import type { WorkerInfo } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, type Param, rows, run, type Statement, sql, write } from "./operation.js";

/**
 * How long a batch's row outlives its last expiry. Its jobs' leases end by then (their expiry is
 * never later than the row's), and the sweep that runs every few seconds has taken the expired
 * ones, copying the holder into those it fails; a job still reserved past that shows the holder
 * columns of its own row in ListJobs (none, or on a table made before migration 0005, its holder
 * before the upgrade).
 */
export const LEASE_ROW_GRACE_MS = 60_000;

/** Records `batch`'s holder, in the round trip of the Reserve's next statement. */
export function recordLeaseHolder(d: SqlDialect, batch: string, worker: WorkerInfo, expire: number): Statement {
  return d.bind(`INSERT INTO ${d.names.leases} (batch, worker_id, host, pid, user, code_version, expire_time) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
    batch,
    worker.workerId,
    worker.host,
    worker.pid,
    worker.user,
    worker.codeVersion,
    expire,
  ]);
}

/** Reads the holders of `batches` (a plain read: a batch's holder never changes). */
export function holdersSql(d: SqlDialect, batches: readonly string[]): Statement {
  const list = d.inList(batches);
  return sql(`SELECT batch, worker_id, host, pid, user, code_version FROM ${d.names.leases} WHERE batch IN (${list.sql})`, list.params);
}

export interface HolderRow {
  readonly batch: string;
  readonly worker_id: string;
  readonly host: string;
  readonly pid: string | number;
  readonly user: string;
  readonly code_version: string;
}

/** The rows of holdersSql by batch. */
export function holdersByBatch(found: readonly HolderRow[]): Map<string, WorkerInfo> {
  return new Map(found.map((r) => [r.batch, { workerId: r.worker_id, host: r.host, pid: Number(r.pid), user: r.user, codeVersion: r.code_version }]));
}

/** The holders of `batches`; a batch whose row is gone has none. */
export function* leaseHolders(d: SqlDialect, batches: readonly string[]): Operation<Map<string, WorkerInfo>> {
  if (batches.length === 0) return new Map();
  return holdersByBatch(yield* rows<HolderRow>(holdersSql(d, batches)));
}

/**
 * Copies each batch's holder into its jobs among `jobs` (by id), for rows that outlive the batch
 * (error, kept success). One statement per batch: a call's jobs come from one batch or a few.
 */
export function* copyHolders(
  d: SqlDialect,
  jobsTable: string,
  jobs: readonly { id: Param; lease_batch: string }[],
  holders: ReadonlyMap<string, WorkerInfo>,
): Operation<void> {
  const idsByBatch = new Map<string, Param[]>();
  for (const j of jobs) {
    const ids = idsByBatch.get(j.lease_batch);
    if (ids === undefined) idsByBatch.set(j.lease_batch, [j.id]);
    else ids.push(j.id);
  }
  for (const [batch, ids] of idsByBatch) {
    const w = holders.get(batch);
    if (w === undefined) continue;
    const list = d.inList(ids);
    yield* write(
      sql(`UPDATE ${d.byId(jobsTable)} SET worker_id = ?, host = ?, pid = ?, user = ?, code_version = ? WHERE id IN (${list.sql})`, [
        w.workerId,
        w.host,
        w.pid,
        w.user,
        w.codeVersion,
        ...list.params,
      ]),
    );
  }
}

/** Heartbeat: a batch's row lives as long as the longest lease of its jobs. */
export function* extendLeaseRows(d: SqlDialect, batches: readonly string[], expire: number): Operation<void> {
  const list = d.inList(batches);
  yield* write(sql(`UPDATE ${d.names.leases} SET expire_time = ${d.greatest("expire_time", "?")} WHERE batch IN (${list.sql})`, [expire, ...list.params]));
}

/** The sweep: rows of batches whose leases have all ended (LEASE_ROW_GRACE_MS). */
export function* deleteSpentLeaseRows(d: SqlDialect, now: number): Operation<number> {
  return yield* run(sql(`DELETE FROM ${d.names.leases} WHERE expire_time < ?`, [now - LEASE_ROW_GRACE_MS]));
}
