/**
 * Reserve (promise 1): the next ready jobs in the total order priority, scheduled_time, id, leased
 * as one batch, whose holder is one row of `~populus_leases` (lease-holders.ts). MySQL locks them
 * FOR UPDATE SKIP LOCKED in a READ COMMITTED transaction (a large batch by primary key:
 * readyJobsByCandidates), so concurrent reservers skip each other's rows instead of waiting;
 * SQLite's BEGIN IMMEDIATE transaction is the only writer.
 */
import { randomUUID } from "node:crypto";
import { Change } from "../change-log.js";
import { leaseToken } from "../row-mapping.js";
import type { LeaseGrant, ReserveInput } from "../store.js";
import { logChange } from "./changes.js";
import type { SqlDialect } from "./dialect.js";
import { recordLeaseHolder } from "./lease-holders.js";
import { type Operation, type Param, rows, rowsAndRows, sql, write } from "./operation.js";
import { type RequestRecord, recordReserveRequest, repeatedReserve, requestRecordSql } from "./reserve-requests.js";

/**
 * Reserves of at most this many jobs run side by side on MySQL; larger ones take turns per table
 * (mysql-store.ts). A small one locks by the scan, which steps over rows others hold: side by side,
 * Reserves read the same first candidates, and a read of candidates by primary key came back short
 * for 114 of 304 one-job Reserves at 4 clients (bench scenario 4), a round trip more each.
 */
export const SIDE_BY_SIDE_RESERVE_JOBS = 16;

/** The jobs Reserve may lease now: pending, scheduled by now, within its priority and restriction. */
export function readyFilter(d: SqlDialect, input: ReserveInput): { sql: string; params: Param[] } {
  const restriction = d.restriction(input.restriction);
  return {
    sql: `status = 'pending' AND scheduled_time <= ?${input.maxPriority === null ? "" : " AND priority <= ?"}${restriction.sql}`,
    params: [input.now, ...(input.maxPriority === null ? [] : [input.maxPriority]), ...restriction.params],
  };
}

/** One Reserve's transaction: the leases of an earlier Reserve with the same request id, else the next ready jobs. */
export function* reserve(d: SqlDialect, input: ReserveInput, ready = readyFilter(d, input)): Operation<LeaseGrant[]> {
  const jobs = d.jobsTable(input.table);
  type ReadyRow = { id: string | number; key_json: string; priority: string | number; attempts: string | number };
  const nextReady = `${ready.sql} ORDER BY priority, scheduled_time, id LIMIT ?`;
  const scan = sql(`SELECT id, key_json, priority, attempts FROM ${d.inReadyOrder(jobs)} WHERE ${nextReady}${d.skipLocked}`, [...ready.params, input.maxJobs]);
  const byCandidates = input.maxJobs > SIDE_BY_SIDE_RESERVE_JOBS ? d.readyJobsByCandidates : null;
  const first = byCandidates === null ? scan : sql(byCandidates(jobs, nextReady, ready.sql), [...ready.params, input.maxJobs, ...ready.params]);
  let found: ReadyRow[];
  if (input.requestId === null) found = yield* rows<ReadyRow>(first);
  else {
    // The request's record and the ready jobs in one round trip. A repeat answers its earlier
    // leases, and the jobs just read stay as they were; they were locked until its commit (a
    // retry after a lost answer, so rare), and concurrent reservers skipped them meanwhile.
    const [[request], next] = yield* rowsAndRows<RequestRecord, ReadyRow>(requestRecordSql(d, input.table, input.requestId), first);
    const repeated = yield* repeatedReserve(d, input.table, input.requestId, input.now, request);
    if (repeated.length > 0) return repeated;
    found = next;
  }
  // Short: the queue holds fewer ready jobs, or others held some of those read (another Reserve
  // that read the same ones, a refresh removing stale jobs). The scan steps past held rows to the
  // next ready ones, and answers those this transaction just locked too, unless a scan of another
  // Reserve holds their entry in the ready index: those are let go at commit, unleased.
  if (byCandidates !== null && found.length < input.maxJobs) found = yield* rows<ReadyRow>(scan);
  // Checked after the reads, which may have waited for a pooled connection or the write lock: the
  // transaction then commits with no lease written, and its locks go.
  if (found.length === 0 || input.callerGone?.() === true) return [];
  // 122 random bits from Node's buffered UUID pool: randomBytes(16) asks OpenSSL on every call,
  // which was 2% of the server's CPU in a Reserve→Complete loop.
  const batch = randomUUID().replaceAll("-", "");
  const expire = input.now + input.leaseMs;
  const ids = found.map((r) => r.id);
  yield* write(recordLeaseHolder(d, batch, input.worker, expire));
  yield* write(d.leaseJobs(jobs, batch, input.now, expire, ids));
  const change = new Change().move("pending", "reserved", found.length).jobs(
    "reserved",
    found.map((r) => r.key_json),
    { workerId: input.worker.workerId },
  );
  yield* logChange(d, input.table, change, input.now);
  if (input.requestId !== null) yield* recordReserveRequest(d, input.table, input.requestId, batch, ids, expire);
  return found.map((row) => ({
    keyJson: row.key_json,
    leaseToken: leaseToken(batch, row.id),
    leaseExpireTime: expire,
    attempt: Number(row.attempts) + 1,
    priority: Number(row.priority),
  }));
}
