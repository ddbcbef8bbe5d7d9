/**
 * Refresh (promise 4): adds `key source - target - jobs` as pending, removes stale jobs whose key
 * left the key source, re-pends kept success jobs whose key left the target and resets orphans,
 * set-based over batches of keys. The store declares the table first (its own transaction).
 */
import type { EncodedKey } from "../../key-codec.js";
import { Change } from "../change-log.js";
import type { RefreshCounts, RefreshInput, StoreOptions } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { logChange, logInsertedByPrevious } from "./changes.js";
import { insertJobs, insertJobUnlessComputed, type NewJobRow } from "./insert-jobs.js";
import { KEY_CHUNK, lastTogether, type Operation, type Param, type Part, rows, run, type Statement, sql, together, write } from "./operation.js";
import { resetLeases } from "./sweep.js";
import { mayHoldStaleJobs, oldestJobSql, staleCandidateSql } from "./stale-candidates.js";

/** Staging rows of refreshes abandoned before their final call are dropped after this. */
export const ABANDONED_REFRESH_MS = 24 * 3600_000;

export interface RefreshResult {
  readonly counts: RefreshCounts;
  /** Whether the store drops the staging rows now, after the answer (dialects that keep them past the transaction). */
  readonly dropStaging: boolean;
}

/**
 * Per table, whether refresh's next batch of keys is expected to be new: whether the last batch
 * refreshed on this server was. Where the dialect can (dropComputedJustInserted), such a batch is
 * inserted first and its computed keys' jobs deleted after, which on MySQL costs a quarter less
 * than looking every key up first; a batch of keys mostly queued or computed still goes lookup
 * first, because inserts that collide cost more than lookups (see refresh). A guess wrong either
 * way costs time, never correctness.
 */
export class NewKeyExpectations {
  readonly #lastBatchNew = new Map<string, boolean>();

  expectsNew(table: string): boolean {
    return this.#lastBatchNew.get(table) === true;
  }

  /** `known` of a batch of `size` keys already had a job or a result. */
  observe(table: string, known: number, size: number): void {
    // Under a quarter known: the direct insert's collisions cost less than the lookups it saves.
    if (this.#lastBatchNew.size >= MAX_TABLES_EXPECTED && !this.#lastBatchNew.has(table)) this.#lastBatchNew.clear();
    this.#lastBatchNew.set(table, known * 4 < size);
  }
}

/** Tables whose last batch NewKeyExpectations keeps; past this it starts over (a guess lost costs one batch's lookups). */
const MAX_TABLES_EXPECTED = 10_000;

/**
 * One refresh call's transaction. `staging`: the refresh's staging id (row-mapping's stagingId);
 * `expectations`: this server's guesses of new keys, per table.
 */
export function* refresh(
  d: SqlDialect,
  input: RefreshInput,
  staging: string,
  options: StoreOptions,
  expectations: NewKeyExpectations,
): Operation<RefreshResult> {
  const jobs = d.jobsTable(input.table);
  const target = d.targetTable(input.table);
  const final = input.refreshId === null || input.final;
  const change = new Change();
  const row = pendingRow(input);
  const keepJob = keepExistingJob(d);
  const insertOne = (key: EncodedKey) => insertJobUnlessComputed(d, jobs, target, key, row, keepJob);
  // A refresh of one call with keys reads its table's state in its first batch's first round trip.
  let state = input.refreshId === null && input.keys.length > 0 ? undefined : yield* refreshState(d, staging, input);
  let added = 0;
  for (let i = 0; i < input.keys.length; i += KEY_CHUNK) {
    const chunk = input.keys.slice(i, i + KEY_CHUNK);
    const hashes = chunk.map((k) => k.hash);
    const stateNotRead = state === undefined ? stateRead(d, jobs, false) : undefined;
    let stateRows: StateRow[] | undefined;
    if (chunk.length === 1) {
      let inserted: number;
      [stateRows, [inserted]] = yield* afterRead<[number]>(stateNotRead, { kind: "run", statement: insertOne(chunk[0] as EncodedKey) });
      added += inserted;
    } else if (d.dropComputedJustInserted !== null && expectations.expectsNew(input.table)) {
      // Expected new: inserted first, then the jobs of keys already computed are deleted, in the
      // same round trip. The DELETE reads the target after the INSERT, so a Complete of one of
      // these keys that commits meanwhile is seen: the INSERT waited on the job row the Complete deleted.
      let counts: number[];
      [stateRows, counts] = yield* afterRead<number[]>(
        stateNotRead,
        { kind: "run", statement: insertJobs(d, jobs, chunk, row, keepJob) },
        ...d.dropComputedJustInserted(jobs, target, row.createTime).map((statement): Part => ({ kind: "run", statement })),
      );
      const inserted = counts[0] as number;
      const computed = counts.at(-1) as number;
      added += inserted - computed;
      expectations.observe(input.table, chunk.length - inserted + computed, chunk.length);
    } else {
      // Keys already computed (or queued) are skipped before inserting: point lookups on unique indexes
      // cost far less than inserts that collide (measured on MySQL: an identical 1M refresh went 3x faster).
      let known: { key_hash: string }[];
      [stateRows, [known]] = yield* afterRead<[{ key_hash: string }[]]>(stateNotRead, { kind: "rows", statement: d.knownKeys(jobs, target, hashes) });
      const done = new Set(known.map((r) => r.key_hash));
      const fresh = done.size === 0 ? chunk : chunk.filter((k) => !done.has(k.hash));
      if (fresh.length > 0) added += yield* run(insertJobs(d, jobs, fresh, row, keepJob));
      expectations.observe(input.table, chunk.length - fresh.length, chunk.length);
    }
    state ??= yield* stateOf(d, input, stateRows?.[0], false);
    if (state.staging) {
      // Stage the hashes for stale removal on the final call.
      const staged: Param[] = [];
      for (const h of hashes) staged.push(staging, h, input.now);
      yield* write(
        d.insertRows(
          `INSERT INTO ${d.names.refreshKeys} (refresh, key_hash, create_time)`,
          "(?, ?, ?)",
          hashes.length,
          staged,
          d.onConflictKeep("", "key_hash"),
        ),
      );
    }
  }
  if (state === undefined) throw new Error("refresh: a refresh of one call with keys reads its state with its first batch");
  let removed = 0;
  let rePended = 0;
  if (final) {
    const [carried] = state.staging ? yield* rows(sql(`SELECT 1 AS x FROM ${d.names.refreshKeys} WHERE refresh = ? LIMIT 1`, [staging])) : [];
    if (carried !== undefined) {
      // Never reserved or ignore jobs. One statement per status, so the change log gets exact counts.
      for (const status of ["pending", "error", "success"] as const) {
        const n = yield* run(
          sql(
            `DELETE FROM ${jobs} WHERE status = ? AND create_time < ?
               AND NOT EXISTS (SELECT 1 FROM ${d.names.refreshKeys} s WHERE s.refresh = ? AND s.key_hash = ${jobs}.key_hash)`,
            [status, state.staleCutoff, staging],
          ),
        );
        change.move(status, null, n);
        removed += n;
      }
    }
    if (d.dropsStagingInTransaction && state.staging) {
      // As dropStaging does after the answer elsewhere: only a refresh that staged cleans up,
      // abandoned rows included, so a refresh of one key is not four more statements.
      yield* write(sql(`DELETE FROM ${d.names.refreshKeys} WHERE refresh = ?`, [staging]));
      yield* write(sql(`DELETE FROM ${d.names.refreshes} WHERE refresh = ?`, [staging]));
      yield* write(sql(`DELETE FROM ${d.names.refreshKeys} WHERE create_time < ?`, [input.now - ABANDONED_REFRESH_MS]));
      yield* write(sql(`DELETE FROM ${d.names.refreshes} WHERE create_time < ?`, [input.now - ABANDONED_REFRESH_MS]));
    } else if (input.refreshId !== null) {
      // A refresh of one call wrote no refreshes row (refreshState): one round trip fewer. One that
      // staged nothing has no staging rows either.
      yield* write(sql(`DELETE FROM ${d.names.refreshes} WHERE refresh = ?`, [staging]));
    }
    // Kept success jobs whose key left the target (its row was deleted to recompute it). A success
    // job committed after refreshState's read has its target row, so it needs no re-pend either.
    if (state.anySuccess !== false) {
      rePended = yield* run(
        sql(
          `UPDATE ${jobs} SET status = 'pending', scheduled_time = ?, complete_time = NULL, duration_ms = NULL, lease_batch = '',
             worker_id = NULL, host = NULL, pid = NULL, user = NULL, code_version = NULL
           WHERE status = 'success' AND NOT EXISTS (SELECT 1 FROM ${target} t WHERE t.key_hash = ${jobs}.key_hash)`,
          [input.now],
        ),
      );
      change.move("success", "pending", rePended);
    }
    // Nothing records the time of a refresh (~populus_tables.last_refresh_time stays as migration 0001 made it, for
    // replicas of older versions that still write it): a refresh that changes nothing then writes nothing, and an idle
    // worker's pass commits no write (bench scenario 7).
  }
  change.move(null, "pending", added);
  // A table that held no job when this call read its state has no orphan: orphans are judged as of
  // the state read, and a job reserved since then is not one.
  const orphaned =
    input.orphanTimeoutMs === null || state.heldNoJob
      ? 0
      : yield* resetLeases(d, input.table, "reserve_time", input.now - input.orphanTimeoutMs, input.now, change, "wait", options);
  yield* logChange(d, input.table, change, input.now);
  // Whether a populate that refreshed has anything to reserve: surely, when this call made a job
  // pending; as the state read found it, when this call changed no job and took no lock after that
  // read (a keyless refresh of a table with nothing to do: an idle worker's pass, then one statement
  // in all). A statement that waited on a lock (the orphan reset, the re-pend) may have waited on a
  // release or an expiry that made a job pending since, so then the answer is read again.
  const unchanged = added + removed + rePended + orphaned === 0;
  const lockedNothing = (input.orphanTimeoutMs === null || state.heldNoJob) && state.anySuccess === false;
  const anyPending = !final
    ? null
    : added + rePended > 0 ||
      (unchanged && lockedNothing && state.anyPending !== null ? state.anyPending : (yield* rows(sql(pendingJobSql(d, jobs)))).length > 0);
  return { counts: { added, removed, orphaned, rePended, anyPending }, dropStaging: final && state.staging && !d.dropsStagingInTransaction };
}

/** The job row a refresh adds for a key. */
function pendingRow(input: RefreshInput): NewJobRow {
  return { status: "pending", priority: input.priority, createTime: input.now, scheduledTime: input.now + input.delayMs };
}

/**
 * The tail of refresh's INSERTs: a key that already has a job (of any status, including ignore) is
 * left as it is and not counted. MySQL's no-op assignment must not be to the AUTO_INCREMENT id:
 * assigning it moved the statement's next id past a duplicate committed by a later statement, into
 * that statement's ids, and the rows after it were dropped as duplicates of those, uncounted (found
 * in review). Without it a duplicate's id goes to the next row, so a statement's rows take its
 * first ids in turn.
 */
function keepExistingJob(d: SqlDialect): string {
  return d.onConflictKeep("key_hash", "key_hash");
}

/** Whether `table` holds a job of any status: whether it has an oldest one. */
export function* holdsAnyJob(d: SqlDialect, table: string): Operation<boolean> {
  return (yield* rows(sql(oldestJobSql(d.jobsTable(table))))).length > 0;
}

interface RefreshState {
  readonly staleCutoff: number;
  /** Whether the refresh stages its keys for stale removal. */
  readonly staging: boolean;
  /** Whether a success job existed when this call started; null when not read in this call. */
  readonly anySuccess: boolean | null;
  /** Whether a pending job existed when this call started; null when not read (only a keyless refresh of one call reads it). */
  readonly anyPending: boolean | null;
  /** The table held no job at all when this call read its state (false when not read in this call). */
  readonly heldNoJob: boolean;
}

/**
 * A refresh's stale cutoff, fixed at its first call, and whether it stages its keys: only when a
 * job older than the cutoff existed then. Otherwise no job can be stale for this refresh, and a
 * refresh of a fresh or recently refreshed table (the common case) writes no staging rows at all
 * (measured on MySQL: staging was most of a repeated 1M-key refresh in the default 128 MB buffer pool).
 *
 * Every call holds the refresh's row until it commits: the calls before the final one share it, so
 * the calls the SDK keeps in flight (RefreshResponse.calls_at_once) write side by side, and the
 * final one holds it alone, so it waits for those still in flight and its stale removal sees every
 * key they staged. (Each call locked it alone before, and a 1M-key refresh on MariaDB wrote one
 * call at a time: 45,000-55,000 keys/s, against 69,000-75,000 shared, alternated on one machine.)
 */
function* refreshState(d: SqlDialect, staging: string, input: RefreshInput): Operation<RefreshState> {
  function* read() {
    const [row] = yield* rows<{ stale_cutoff: string | number; staging: string | number }>(
      sql(`SELECT stale_cutoff, staging FROM ${d.names.refreshes} WHERE refresh = ?${input.final ? d.forUpdate : d.forShare}`, [staging]),
    );
    return row === undefined
      ? undefined
      : { staleCutoff: Number(row.stale_cutoff), staging: Number(row.staging) === 1, anySuccess: null, anyPending: null, heldNoJob: false };
  }
  if (input.refreshId !== null) {
    const known = yield* read();
    if (known !== undefined) return known;
  }
  // For a keyless call, which may change nothing, whether any job is pending.
  const askPending = input.refreshId === null && input.keys.length === 0;
  const [first] = yield* rows<StateRow>(stateRead(d, d.jobsTable(input.table), askPending));
  const state = yield* stateOf(d, input, first, askPending);
  if (input.refreshId === null) return state;
  yield* write(
    sql(
      `INSERT INTO ${d.names.refreshes} (refresh, table_name, stale_cutoff, staging, create_time) VALUES (?, ?, ?, ?, ?) ${d.onConflictKeep("refresh", "refresh")}`,
      [staging, input.table, state.staleCutoff, state.staging ? 1 : 0, input.now],
    ),
  );
  if (d.singleWriter) return state;
  // Concurrent first calls of one refresh: the first insert wins and every call reads its row.
  return (yield* read()) ?? state;
}

type StateRow = { oldest: string | number | null; any_success: string | number | null; any_pending?: string | number | null };

/** A refresh's state from its table's state read (`first`, its row; `askedPending`: stateRead's): whether it stages asks one more read when a job may be stale. */
function* stateOf(d: SqlDialect, input: RefreshInput, first: StateRow | undefined, askedPending: boolean): Operation<RefreshState> {
  const staleCutoff = input.now - input.staleTimeoutMs;
  const oldest = first?.oldest ?? null;
  // A keyless refresh of one call stages nothing, so it removes nothing: it need not ask.
  const mayStage = input.refreshId !== null || input.keys.length > 0;
  const candidate =
    mayStage && mayHoldStaleJobs(oldest === null ? undefined : Number(oldest), staleCutoff)
      ? (yield* rows(sql(staleCandidateSql(d.jobsTable(input.table)), [staleCutoff])))[0]
      : undefined;
  // A refresh of several calls re-pends in its final call, long after this read.
  return {
    staleCutoff,
    staging: candidate !== undefined,
    anySuccess: input.refreshId === null ? first?.any_success != null : null,
    anyPending: askedPending ? first?.any_pending != null : null,
    heldNoJob: oldest === null,
  };
}

/**
 * `parts` in one round trip, after `read` when there is one: answers read's rows (undefined
 * without it) and the parts' results. A refresh of one call reads its table's state so, with its
 * first batch: at READ COMMITTED the read sees what it would have seen alone just before.
 */
function* afterRead<R extends unknown[]>(read: Statement | undefined, ...parts: [Part, ...Part[]]): Operation<[StateRow[] | undefined, R]> {
  if (read === undefined) return [undefined, (yield* together(...parts)) as R];
  const [stateRows, ...results] = yield* together({ kind: "rows", statement: read }, ...parts);
  return [stateRows as StateRow[], results as R];
}

/** A row (its one column 1) if the table holds a pending job, due or delayed; none if not. */
export function pendingJobSql(d: SqlDialect, jobs: string): string {
  return `SELECT 1 AS x FROM ${d.inReadyOrder(jobs)} WHERE status = 'pending' LIMIT 1`;
}

/**
 * One read for a refresh's questions of its table: the oldest job (stale removal, orphans), whether
 * any job is a success (the re-pend) and, with `askPending`, whether any is pending.
 */
function stateRead(d: SqlDialect, jobs: string, askPending: boolean): Statement {
  return sql(
    `SELECT (${oldestJobSql(jobs)}) AS oldest, (SELECT 1 FROM ${d.inReadyOrder(jobs)} WHERE status = 'success' LIMIT 1) AS any_success${
      askPending ? `, (${pendingJobSql(d, jobs)}) AS any_pending` : ""
    }`,
  );
}

/** What refreshOneKey did; `settled` false: the table needs the rest of a refresh (refresh, in a transaction of its own). */
export interface OneKeyResult {
  readonly counts: RefreshCounts;
  readonly settled: boolean;
}

/**
 * A refresh of one call and one key (populate's refresh of a single key, an enqueue from a web
 * hook) in one round trip on MySQL: the state read, the insert and its change-log row go with the
 * transaction's START and COMMIT (three round trips when each waited for the one before). The
 * change-log row counts the insert in SQL and is written only when it inserted.
 *
 * The read says whether the table needs more of a refresh: a job old enough to be stale, a success
 * job to re-pend, or (with an orphan timeout) any job to reset. Then the answer is not settled and
 * the store runs refresh for the same key next, in its own transaction; the key's insert there
 * finds this one's job and adds nothing. Most tables need none of it, having no success job kept
 * and none older than the stale timeout.
 */
export function* refreshOneKey(d: SqlDialect, input: RefreshInput, key: EncodedKey): Operation<OneKeyResult> {
  if (input.refreshId !== null || input.keys.length !== 1) throw new Error("refreshOneKey: a refresh of one call and one key only");
  const jobs = d.jobsTable(input.table);
  const insert = insertJobUnlessComputed(d, jobs, d.targetTable(input.table), key, pendingRow(input), keepExistingJob(d));
  const [found, inserted] = (yield* lastTogether(
    { kind: "rows", statement: stateRead(d, jobs, true) },
    { kind: "run", statement: insert },
    { kind: "run", statement: logInsertedByPrevious(d, input.table, input.now) },
  )) as [StateRow[], number, number];
  const [first] = found;
  const oldest = first?.oldest == null ? undefined : Number(first.oldest);
  const settled =
    first?.any_success == null && (input.orphanTimeoutMs === null || oldest === undefined) && !mayHoldStaleJobs(oldest, input.now - input.staleTimeoutMs);
  // Pending now: this call's job, or one that was pending when the state was read (the insert changes no other job).
  const anyPending = inserted > 0 || first?.any_pending != null;
  return { counts: { added: inserted, removed: 0, orphaned: 0, rePended: 0, anyPending }, settled };
}

/**
 * Deletes a finished refresh's staging rows (and abandoned ones) after its answer, in chunks,
 * statement by statement: a million-row DELETE inside the final call took seconds on MySQL and
 * held its locks meanwhile. Only a refresh that staged keys comes here, so rows abandoned by a
 * refresh of several calls wait for the next refresh that stages (any table's): an idle worker's
 * keyless pass, which stages nothing, should stay one statement, not clean up for others.
 */
export function* dropStaging(d: SqlDialect, staging: string, now: number): Operation<void> {
  while ((yield* run(sql(`DELETE FROM ${d.names.refreshKeys} WHERE refresh = ? LIMIT 10000`, [staging]))) > 0);
  while ((yield* run(sql(`DELETE FROM ${d.names.refreshKeys} WHERE create_time < ? LIMIT 10000`, [now - ABANDONED_REFRESH_MS]))) > 0);
  yield* run(sql(`DELETE FROM ${d.names.refreshes} WHERE create_time < ?`, [now - ABANDONED_REFRESH_MS]));
}
