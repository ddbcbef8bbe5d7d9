/**
 * Refresh claims (promise 4): when many workers loop on populate, one refresh of a table runs at a
 * time cluster-wide, and one that finished less than the caller's interval ago is not repeated.
 *
 * A claim is a row of `~populus_refresh_claims` per table, taken by one conditional UPDATE: the
 * database decides who wins, so replicas need no lock of their own. Each statement stands alone
 * (no transaction): a claim changes no job, and a claim lost in a crash lapses on its own.
 *
 *     free ──ClaimRefresh──▶ held ──final Refresh call──▶ free, last_refresh_time = now (NULL if made_due)
 *       ▲                     │ ├──AbandonRefresh──────────▶ free
 *       └─────────────────────┘ └──claim_timeout without a call: lapses (the next claim takes it)
 *
 * DeleteJobs and DeleteTargets make the next refresh due (last_refresh_time NULL), and mark a held
 * claim `made_due`: its refresh may have read its key source before the delete, so its finish
 * records no time. The claim stays held: one refresh of a table at a time, as ever.
 */
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, run, sql, write } from "./operation.js";
import { pendingJobSql } from "./refresh.js";
import { oldestJobSql } from "./stale-candidates.js";

/** What a claim asks. */
export interface ClaimInput {
  readonly table: string;
  readonly claimId: string;
  /** A refresh that finished less than this long ago is not repeated. */
  readonly minIntervalMs: number;
  /** A claim with no call of its refresh for this long lapses. */
  readonly claimTimeoutMs: number;
  readonly now: number;
}

/** What a claim answers. */
export interface ClaimOutcome {
  readonly granted: boolean;
  /** Not granted because another refresh holds the claim (else: one finished too recently). */
  readonly running: boolean;
  /** When the table's last claimed refresh finished; null if none has. */
  readonly lastRefreshTime: number | null;
}

interface ClaimRow {
  claim_id: string | null;
  claim_expire_time: number | string | null;
  last_refresh_time: number | string | null;
}

/** A table's claim as read (times as numbers). */
export interface ClaimState {
  readonly claimId: string | null;
  readonly expireTime: number | null;
  readonly lastRefreshTime: number | null;
}

/** The answer `state` gives a claim without a write: held back, or null when the claim may be taken. */
export function heldBackBy(state: ClaimState, input: ClaimInput): ClaimOutcome | null {
  const running = state.expireTime !== null && state.expireTime > input.now && state.claimId !== input.claimId;
  const recent = state.lastRefreshTime !== null && state.lastRefreshTime > input.now - input.minIntervalMs;
  return running || recent ? { granted: false, running, lastRefreshTime: state.lastRefreshTime } : null;
}

/**
 * Takes the claim if no refresh holds it and none finished within the interval. A claim held under
 * the same id is taken again: its holder's refresh failed before it could give the claim back (the
 * server was unreachable), and the holder is the one asking.
 *
 * The claim row is read first and written only when the read finds it free: of fifty looping
 * workers, all but one are held back, and a read is all they cost. The UPDATE checks the same
 * conditions again, so of several that read it free at once only one takes it.
 */
export function* claimRefresh(d: SqlDialect, input: ClaimInput): Operation<ClaimOutcome & { readonly state?: ClaimState }> {
  const claims = d.names.refreshClaims;
  const intervalCutoff = input.now - input.minIntervalMs;
  for (let tries = 0; tries < 2; tries++) {
    const [row] = yield* rows<ClaimRow>(sql(`SELECT claim_id, claim_expire_time, last_refresh_time FROM ${claims} WHERE table_name = ?`, [input.table]));
    if (row === undefined) {
      // The table's first claim: its row, then the same read (of replicas that insert it at once, one row stands).
      yield* run(sql(`INSERT INTO ${claims} (table_name) VALUES (?) ${d.onConflictKeep("table_name", "table_name")}`, [input.table]));
      continue;
    }
    const state = { claimId: row.claim_id, expireTime: timeOf(row.claim_expire_time), lastRefreshTime: timeOf(row.last_refresh_time) };
    const heldBack = heldBackBy(state, input);
    if (heldBack !== null) return { ...heldBack, state };
    const { lastRefreshTime } = state;
    const taken = yield* run(
      sql(
        `UPDATE ${claims} SET claim_id = ?, claim_timeout_ms = ?, claim_expire_time = ?, made_due = 0
         WHERE table_name = ? AND (claim_expire_time IS NULL OR claim_expire_time <= ? OR claim_id = ?) AND (last_refresh_time IS NULL OR last_refresh_time <= ?)`,
        [input.claimId, input.claimTimeoutMs, input.now + input.claimTimeoutMs, input.table, input.now, input.claimId, intervalCutoff],
      ),
    );
    if (taken > 0) return { granted: true, running: false, lastRefreshTime };
    // Changed no value (the MySQL store counts changed rows, not matched ones): taken again under its
    // own id within the millisecond its expiry already stood at.
    if (yield* holds(d, input.table, input.claimId, input.now)) return { granted: true, running: false, lastRefreshTime };
    // Lost the race to another claim (or a refresh finished meanwhile).
    return { granted: false, running: true, lastRefreshTime };
  }
  throw new Error(`the refresh claim row of "${input.table}" vanished while it was claimed`);
}

/** Whether `claimId` holds the table's claim at `now`. */
function* holds(d: SqlDialect, table: string, claimId: string, now: number): Operation<boolean> {
  const found = yield* rows(
    sql(`SELECT 1 AS x FROM ${d.names.refreshClaims} WHERE table_name = ? AND claim_id = ? AND claim_expire_time > ?`, [table, claimId, now]),
  );
  return found.length > 0;
}

/** A claimed refresh slow to send its first call renews its claim: held for its timeout from now, if still held. */
export function* renewClaim(d: SqlDialect, table: string, claimId: string, now: number): Operation<boolean> {
  yield* extendClaim(d, table, claimId, now);
  return yield* holds(d, table, claimId, now);
}

/** A call of the claimed refresh: the claim is held for its timeout from now (nothing when it lapsed and another holds it). */
export function* extendClaim(d: SqlDialect, table: string, claimId: string, now: number): Operation<void> {
  yield* run(sql(`UPDATE ${d.names.refreshClaims} SET claim_expire_time = ? + claim_timeout_ms WHERE table_name = ? AND claim_id = ?`, [now, table, claimId]));
}

/** The SET list of a claim that ends, by its refresh's final call or given back: no holder, and no made_due left for the next. */
const CLAIM_ENDS = "claim_id = NULL, claim_timeout_ms = NULL, claim_expire_time = NULL, made_due = 0";

/** How a claimed refresh's final call ended its claim: its finish recorded, recorded as due at once (made_due), or the claim no longer held. */
export type ClaimFinish = "recorded" | "due" | "not-held";

/** The claimed refresh's final call committed: the claim ends and its finish time is recorded, unless an operator made the refresh due meanwhile. */
export function* finishClaim(d: SqlDialect, table: string, claimId: string, now: number): Operation<ClaimFinish> {
  const claims = d.names.refreshClaims;
  // last_refresh_time before CLAIM_ENDS clears made_due: MySQL assigns left to right, each reading the values already set.
  const ended = sql(
    `UPDATE ${claims} SET last_refresh_time = CASE WHEN made_due = 1 THEN NULL ELSE ? END, ${CLAIM_ENDS} WHERE table_name = ? AND claim_id = ?`,
    [now, table, claimId],
  );
  if ((yield* run(ended)) === 0) return "not-held";
  // Read after the write: a delete that made the refresh due since is seen either way. On MySQL the two
  // go on their own connections, so another claim may be taken and finished in between: the answer then
  // only tells this replica's idle waiters a later finish, and the row itself is right.
  const [row] = yield* rows<{ last_refresh_time: number | string | null }>(sql(`SELECT last_refresh_time FROM ${claims} WHERE table_name = ?`, [table]));
  return row?.last_refresh_time == null ? "due" : "recorded";
}

/** The claimed refresh failed: the claim ends unrecorded. */
export function* abandonClaim(d: SqlDialect, table: string, claimId: string): Operation<boolean> {
  const claims = d.names.refreshClaims;
  const given = sql(`UPDATE ${claims} SET ${CLAIM_ENDS} WHERE table_name = ? AND claim_id = ?`, [table, claimId]);
  return (yield* run(given)) > 0;
}

/** Whether a declared table holds any job, and any pending one (due or delayed), in one read. */
export function* jobsHeld(d: SqlDialect, table: string): Operation<{ anyJob: boolean; anyPending: boolean }> {
  const jobs = d.jobsTable(table);
  const [row] = yield* rows<{ any_job: number | null; any_pending: number | null }>(
    sql(`SELECT (${oldestJobSql(jobs)}) AS any_job, (${pendingJobSql(d, jobs)}) AS any_pending`),
  );
  return { anyJob: (row?.any_job ?? null) !== null, anyPending: (row?.any_pending ?? null) !== null };
}

/**
 * An operator deleted jobs or computed rows, which the next refresh queues again: that refresh is
 * due now, whatever populate's interval (the finish time of the last one is forgotten). A claimed
 * refresh running meanwhile is not that refresh (it may have read its key source before the
 * delete): its claim is marked, and its finish records no time.
 */
export function* refreshDueNow(d: SqlDialect, table: string): Operation<void> {
  yield* write(
    sql(`UPDATE ${d.names.refreshClaims} SET last_refresh_time = NULL, made_due = CASE WHEN claim_id IS NULL THEN 0 ELSE 1 END WHERE table_name = ?`, [table]),
  );
}

/** A BIGINT time as mysql2 or better-sqlite3 reads it. */
function timeOf(value: number | string | null): number | null {
  return value === null ? null : Number(value);
}
