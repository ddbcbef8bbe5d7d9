/**
 * Rows as both dialects return them, mapped to the store's records. The SQL
 * differs per dialect; the column names and meanings do not.
 */
import { createHash } from "node:crypto";
import { isKeyHashScheme, type KeyAttributes } from "../key-codec.js";
import type { SqlDialect } from "./operations/dialect.js";
import type { Param } from "./operations/operation.js";
import type { DeclaredTable, JobRecord, JobStatusName, LeaseGrant, Page, StoredTarget } from "./store.js";

/**
 * Columns every job query selects, in this order, from the jobs table `j` LEFT JOIN
 * `~populus_leases` `l` ON l.batch = j.lease_batch: a reserved job's holder is its batch's lease
 * row; an error or kept success job has its own copy (table-ddl.ts).
 */
export const JOB_COLUMNS =
  "j.id, j.key_json, j.status, j.priority, j.create_time, j.scheduled_time, j.reserve_time, j.complete_time, j.duration_ms, " +
  "COALESCE(l.worker_id, j.worker_id) AS worker_id, COALESCE(l.host, j.host) AS host, COALESCE(l.pid, j.pid) AS pid, " +
  "COALESCE(l.user, j.user) AS user, COALESCE(l.code_version, j.code_version) AS code_version, " +
  "j.attempts, j.lease_expire_time, j.error_message, j.error_stack, j.progress, j.progress_message";

type Num = number | string | bigint | null;

/** mysql2 returns BIGINT as string (bigNumberStrings); SQLite as number. */
function num(v: Num): number {
  return typeof v === "number" ? v : Number(v);
}

function numOrNull(v: Num): number | null {
  return v === null ? null : num(v);
}

/** A time that tables made since migration 0005 store as 0 for none (NOT NULL, so a lease writes it in place). */
function timeOrNull(v: Num): number | null {
  const t = numOrNull(v);
  return t === 0 ? null : t;
}

export interface JobRow {
  id: Num;
  key_json: string;
  status: string;
  priority: Num;
  create_time: Num;
  scheduled_time: Num;
  reserve_time: Num;
  complete_time: Num;
  duration_ms: Num;
  worker_id: string | null;
  host: string | null;
  pid: Num;
  user: string | null;
  code_version: string | null;
  attempts: Num;
  lease_expire_time: Num;
  error_message: string | null;
  error_stack: string | null;
  progress: Num;
  progress_message: string | null;
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    keyJson: row.key_json,
    status: row.status as JobStatusName,
    priority: num(row.priority),
    createTime: num(row.create_time),
    scheduledTime: num(row.scheduled_time),
    reserveTime: timeOrNull(row.reserve_time),
    completeTime: numOrNull(row.complete_time),
    durationMs: numOrNull(row.duration_ms),
    worker:
      row.worker_id === null
        ? null
        : {
            workerId: row.worker_id,
            host: row.host ?? "",
            pid: num(row.pid ?? 0),
            user: row.user ?? "",
            codeVersion: row.code_version ?? "",
          },
    attempts: num(row.attempts),
    leaseExpireTime: timeOrNull(row.lease_expire_time),
    errorMessage: row.error_message,
    errorStack: row.error_stack,
    progress: numOrNull(row.progress),
    progressMessage: row.progress_message,
  };
}

export interface TargetRow {
  key_hash: string;
  key_json: string;
  result_json: string;
  complete_time: Num;
}

export function toStoredTarget(row: TargetRow): StoredTarget {
  return { keyJson: row.key_json, resultJson: row.result_json, completeTime: num(row.complete_time) };
}

export interface TableRow {
  name: string;
  display_name: string;
  key_attributes: string;
  key_hash: string;
  create_time: Num;
}

export function toDeclaredTable(row: TableRow): DeclaredTable {
  // A scheme of a later version (a newer replica declared the table): its keys would be hashed wrong here.
  if (!isKeyHashScheme(row.key_hash)) {
    throw new Error(
      `table "${row.name}" hashes its keys by scheme "${row.key_hash}", which this server does not know; upgrade it to the version that declared the table`,
    );
  }
  return {
    name: row.name,
    displayName: row.display_name,
    keyAttributes: JSON.parse(row.key_attributes) as KeyAttributes,
    keyHash: row.key_hash,
    createTime: num(row.create_time),
  };
}

/** Counts rows of `SELECT status, COUNT(*) AS n ... GROUP BY status`. */
export function toProgressCounts(rows: readonly { status: string; n: Num }[], target: Num) {
  const counts = { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: num(target) };
  for (const r of rows) {
    if (r.status in counts) counts[r.status as JobStatusName] = num(r.n);
  }
  return counts;
}

/**
 * Lease tokens: a random prefix per reservation batch (the batch's name in `~populus_leases` and in
 * its jobs' lease_batch), then the job id in base 36; unique and unguessable. Carrying the id lets
 * every fenced write find its row by primary key, so the jobs table needs no index on lease_batch
 * (one index fewer on every refresh insert and every lease).
 */
export function leaseToken(batch: string, id: Num): string {
  return `${batch}-${num(id).toString(36)}`;
}

/** Length of a batch prefix: 32 hex digits. */
const BATCH_LENGTH = 32;

/** The batch a lease token names (for a string that is not a token, leaseJobId's -1 then matches no row). */
export function leaseBatch(token: string): string {
  return token.slice(0, BATCH_LENGTH);
}

/** Whether two attribute lists are the same names and types in the same order. */
export function sameAttributes(a: KeyAttributes, b: KeyAttributes): boolean {
  return a.length === b.length && a.every((x, i) => x.name === b[i]?.name && x.type === b[i]?.type);
}

/** Describes attributes for messages: `{ session: string, subject_id: int64 }`. */
export function describeAttributes(a: KeyAttributes): string {
  return `{ ${a.map((x) => `${x.name}: ${x.type}`).join(", ")} }`;
}

/** A restriction value as the dialects' JSON text extraction yields it. */
export function restrictionText(value: string | number | boolean): string {
  return typeof value === "boolean" ? (value ? "true" : "false") : String(value);
}

/** The staging id of one refresh: its table and refresh id, hashed to a fixed 32 characters. */
export function stagingId(table: string, refreshId: string): string {
  return createHash("sha256").update(`${table}\0${refreshId}`).digest("hex").slice(0, 32);
}

/** The job id a lease token names, or -1 for a string that is not a lease token (matches no row). */
export function leaseJobId(token: string): number {
  // By hand, not /^[0-9a-f]{32}-([0-9a-z]{1,11})$/ and parseInt: a Complete reads a thousand
  // tokens, and the expression's match per token was about 3% of a SQLite server's drain.
  const length = token.length;
  if (length < 34 || length > 44 || token.charCodeAt(32) !== 45 /* - */) return -1;
  for (let i = 0; i < 32; i++) {
    const c = token.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return -1;
  }
  let id = 0;
  for (let i = 33; i < length; i++) {
    const c = token.charCodeAt(i);
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 122 ? c - 87 : -1;
    if (digit < 0) return -1;
    id = id * 36 + digit;
  }
  return id;
}

/** A row of `~populus_reserve_requests`: the batch one Reserve with a request id leased. */
export interface ReserveRequestRow {
  readonly lease_prefix: string;
  /** The leased job ids, comma-separated, in the order they were granted. */
  readonly job_ids: string;
}

/** The lease tokens a recorded Reserve granted, in the order it granted them. */
export function requestLeaseTokens(request: ReserveRequestRow): string[] {
  return request.job_ids.split(",").map((id) => leaseToken(request.lease_prefix, Number(id)));
}

/** A job a recorded Reserve leased that its lease still holds, as read back for a repeated Reserve. */
export interface HeldGrantRow {
  readonly id: Num;
  readonly lease_batch: string;
  readonly key_json: string;
  readonly priority: Num;
  readonly attempts: Num;
  readonly lease_expire_time: Num;
}

/**
 * A repeated Reserve's answer: the recorded batch's leases still held, in the order first granted,
 * each with its current expiry (a Heartbeat may have extended it) and the attempt it was charged.
 */
export function repeatedGrants(tokens: readonly string[], held: readonly HeldGrantRow[]): LeaseGrant[] {
  const byToken = byLeaseToken(held);
  const grants: LeaseGrant[] = [];
  for (const token of tokens) {
    const r = byToken.get(token);
    if (r === undefined) continue;
    grants.push({ keyJson: r.key_json, leaseToken: token, leaseExpireTime: num(r.lease_expire_time), attempt: num(r.attempts), priority: num(r.priority) });
  }
  return grants;
}

/**
 * `id IN (...) AND lease_batch IN (...)`: the rows these leases may hold (a token names its own id
 * and batch), and those batches, each once. A row it matches is held by the token
 * leaseToken(row.lease_batch, row.id) (byLeaseToken), which the caller checks against the tokens
 * given: a token naming one batch and another batch's job matches that job here, and is not the
 * token that holds it.
 */
export function leaseFilter(d: Pick<SqlDialect, "inList">, tokens: readonly string[]): { sql: string; params: Param[]; batches: string[] } {
  const ids = d.inList(tokens.map(leaseJobId));
  const batches = [...new Set(tokens.map(leaseBatch))];
  const list = d.inList(batches);
  return { sql: `id IN (${ids.sql}) AND lease_batch IN (${list.sql})`, params: [...ids.params, ...list.params], batches };
}

/** Rows a leaseFilter read, by the token that holds each. */
export function byLeaseToken<R extends { readonly id: Num; readonly lease_batch: string }>(rows: readonly R[]): Map<string, R> {
  return new Map(rows.map((r) => [leaseToken(r.lease_batch, r.id), r]));
}

/** A ListJobs position: the last row's priority, scheduled time and id, as "p.s.id". */
export function jobCursor(row: JobRow): string {
  return `${num(row.priority)}.${num(row.scheduled_time)}.${num(row.id)}`;
}

/** Reads a ListJobs position (validated by the service); null is before the first job. */
export function parseJobCursor(cursor: string | null): [number, number, number] {
  if (cursor === null) return [-1, -1, -1];
  const [p, s, id] = cursor.split(".").map(Number);
  return [p ?? -1, s ?? -1, id ?? -1];
}

/** A page from `pageSize + 1` rows: the extra row only says whether another page follows. */
function pageOf<R, T>(rows: readonly R[], pageSize: number, map: (row: R) => T, cursor: (last: R) => string): Page<T> {
  const pageRows = rows.slice(0, pageSize);
  const last = pageRows[pageRows.length - 1];
  return { rows: pageRows.map(map), next: rows.length > pageSize && last !== undefined ? cursor(last) : null };
}

/** A ListJobs page, continued after its last job's (priority, scheduled_time, id). */
export function jobPage(rows: readonly JobRow[], pageSize: number): Page<JobRecord> {
  return pageOf(rows, pageSize, toJobRecord, jobCursor);
}

/** A ListTargets page, continued after its last key hash. */
export function targetPage(rows: readonly TargetRow[], pageSize: number): Page<StoredTarget> {
  return pageOf(rows, pageSize, toStoredTarget, (r) => r.key_hash);
}
