/**
 * What both stores share: every JobStore method that runs an operation (store/operations/) in a
 * transaction, the cache of declared tables, and refresh's declaration step. A dialect's store
 * (mysql/mysql-store.ts, sqlite/sqlite-store.ts) supplies how a transaction runs, how a table is
 * declared, and its connections.
 */
import { randomBytes } from "node:crypto";
import { InvalidKeyError, TableNotFoundError } from "../errors.js";
import { type AttributeCondition, type EncodedKey, rehashKeys } from "../key-codec.js";
import type { ChangeRow } from "./change-log.js";
import { changeBounds, pruneChanges, readChanges } from "./operations/changes.js";
import { complete } from "./operations/complete.js";
import { deleteJobs } from "./operations/delete-jobs.js";
import { deleteTargets } from "./operations/delete-targets.js";
import type { SqlDialect } from "./operations/dialect.js";
import { fail } from "./operations/fail.js";
import { heartbeat } from "./operations/heartbeat.js";
import { ignore } from "./operations/ignore.js";
import { listJobs, listTargets } from "./operations/list-jobs.js";
import type { Operation } from "./operations/operation.js";
import { progressCounts, progressSnapshot } from "./operations/progress.js";
import { ClaimReads } from "./claim-reads.js";
import { EmptyTables } from "./empty-tables.js";
import type { RecentReads } from "./recent-reads.js";
import { dropStaging, holdsAnyJob, NewKeyExpectations, refresh, refreshOneKey } from "./operations/refresh.js";
import { abandonClaim, type ClaimFinish, claimRefresh, extendClaim, finishClaim, heldBackBy, jobsHeld, renewClaim } from "./operations/refresh-claims.js";
import { release } from "./operations/release.js";
import { reserve } from "./operations/reserve.js";
import { deleteSpentRecords, expireTableLeases } from "./operations/sweep.js";
import { describeTable, listTables } from "./operations/tables.js";
import { describeAttributes, sameAttributes, stagingId } from "./row-mapping.js";
import type {
  ChangeBounds,
  ClaimInput,
  ClaimOutcome,
  CompleteOutcome,
  Completion,
  DeclaredTable,
  JobFilter,
  JobRecord,
  JobStatusName,
  JobStore,
  LeaseGrant,
  LeaseProgressInput,
  Page,
  PageRequest,
  ProgressCounts,
  RefreshCounts,
  RefreshInput,
  ReserveInput,
  StoredTarget,
  StoreOptions,
} from "./store.js";

const NOTHING_REFRESHED: RefreshCounts = { added: 0, removed: 0, orphaned: 0, rePended: 0, anyPending: null };

/**
 * The staging ids of refreshes of one call, unique across replicas and restarts without a random
 * draw or a hash per call (a hash was a tenth of the server's CPU for a keyless pass): 64 random
 * bits per process and a counter, at most 29 characters where the column holds 32.
 */
const STAGING_PREFIX = `s${randomBytes(8).toString("hex")}-`;
let stagingCalls = 0;

/** The JobStore both dialects share; a subclass supplies transactions, declaration and connections. */
export abstract class SharedStore implements JobStore {
  abstract readonly dialect: "sqlite" | "mysql";
  abstract readonly refreshCallsAtOnce: number;
  readonly #tables = new Map<string, DeclaredTable>();
  readonly #newKeyExpectations = new NewKeyExpectations();
  readonly #emptyTables = new EmptyTables();
  readonly #claimReads = new ClaimReads();

  constructor(
    protected readonly sql: SqlDialect,
    protected readonly options: StoreOptions,
  ) {}

  /**
   * Runs an operation in one transaction. `make` builds it afresh for each try: the MySQL store
   * retries a transaction that met a deadlock. `rows`: how many jobs or keys the call names, when
   * it names them (the SQLite store commits small transactions that arrive together as one).
   */
  protected abstract transaction<T>(make: () => Operation<T>, rows?: number): Promise<T>;
  /** Runs an operation statement by statement, outside a transaction (reads, and writes that need none). */
  protected abstract statements<T>(make: () => Operation<T>): Promise<T>;
  /** Runs reads in one snapshot. */
  protected abstract snapshot<T>(make: () => Operation<T>): Promise<T>;
  /** Declares a table (refresh's first call with keys): its jobs table, target and registry row. A no-op when it exists. */
  protected abstract declare(input: RefreshInput): Promise<void>;

  abstract ping(): Promise<void>;
  abstract close(): Promise<void>;

  protected async table(name: string): Promise<DeclaredTable> {
    const cached = this.#tables.get(name);
    if (cached !== undefined) return cached;
    const def = await this.statements(() => describeTable(this.sql, name));
    if (def === null) throw new TableNotFoundError(name);
    // Key attributes never change once declared, so the cache cannot go stale.
    this.#tables.set(name, def);
    return def;
  }

  async describeTable(name: string): Promise<DeclaredTable | null> {
    try {
      return await this.table(name);
    } catch (err) {
      if (err instanceof TableNotFoundError) return null;
      throw err;
    }
  }

  listTables(): Promise<DeclaredTable[]> {
    return this.statements(() => listTables(this.sql));
  }

  async refresh(given: RefreshInput): Promise<RefreshCounts> {
    let input = given;
    let def = await this.describeTable(input.table);
    if (def === null) {
      // A call with no keys on an undeclared table has nothing to maintain.
      if (input.keyAttributes === null) return NOTHING_REFRESHED;
      await this.declare(input);
      def = await this.table(input.table);
    }
    if (input.keyAttributes !== null && !sameAttributes(def.keyAttributes, input.keyAttributes)) {
      throw new InvalidKeyError(
        `refresh of "${input.table}": keys ${describeAttributes(input.keyAttributes)} do not match the table's key attributes ${describeAttributes(def.keyAttributes)}`,
      );
    }
    // Keys hashed for a new table, of a table that another replica (or an earlier version) declared meanwhile.
    if (def.keyHash !== input.keyHash) {
      const table = def;
      input = { ...input, keyHash: table.keyHash, keys: rehashKeys(input.keys, table.keyAttributes, table.keyHash) };
    }
    // An idle worker's pass (one call, an empty key source) on a table that holds no job has
    // nothing to remove, re-pend, reset or reserve: one plain read, not a transaction, and none
    // while an earlier pass's read still answers (empty-tables.ts).
    if (input.keys.length === 0 && input.refreshId === null) {
      if (this.#emptyTables.known(input.table, input.now)) return { ...NOTHING_REFRESHED, anyPending: false };
      const since = this.#emptyTables.mark(input.table);
      if (!(await this.statements(() => holdsAnyJob(this.sql, input.table)))) {
        this.#emptyTables.remember(input.table, since, input.now);
        return { ...NOTHING_REFRESHED, anyPending: false };
      }
    }
    if (input.keys.length === 0) return this.refreshTransactions(input);
    return this.writing(this.#emptyTables, input.table, () => this.refreshTransactions(input));
  }

  async claimRefresh(input: ClaimInput): Promise<ClaimOutcome> {
    const cached = this.#claimReads.fresh(input.table, input.now);
    const heldBack = cached === undefined ? null : heldBackBy(cached, input);
    if (heldBack !== null) return heldBack;
    const since = this.#claimReads.mark(input.table);
    const { state, ...outcome } = await this.statements(() => claimRefresh(this.sql, input));
    // Held back: its read answers the next asks for a second. Granted: the claim was written.
    if (state !== undefined) this.#claimReads.remember(input.table, since, input.now, state);
    else this.#claimReads.written(input.table);
    return outcome;
  }

  async refreshClaimed(table: string, claimId: string, final: boolean, now: number): Promise<"held" | ClaimFinish> {
    if (final) return this.writing(this.#claimReads, table, () => this.statements(() => finishClaim(this.sql, table, claimId, now)));
    await this.writing(this.#claimReads, table, () => this.statements(() => extendClaim(this.sql, table, claimId, now)));
    return "held";
  }

  renewRefreshClaim(table: string, claimId: string, now: number): Promise<boolean> {
    return this.writing(this.#claimReads, table, () => this.statements(() => renewClaim(this.sql, table, claimId, now)));
  }

  abandonRefresh(table: string, claimId: string): Promise<boolean> {
    return this.writing(this.#claimReads, table, () => this.statements(() => abandonClaim(this.sql, table, claimId)));
  }

  jobsChangedElsewhere(table: string): void {
    this.#emptyTables.written(table);
  }

  async anyPending(table: string, now: number): Promise<boolean> {
    if ((await this.describeTable(table)) === null) return false;
    // Read as an idle pass's refresh reads it (empty-tables.ts): held-back workers of a drained table share one read a second.
    if (this.#emptyTables.known(table, now)) return false;
    const since = this.#emptyTables.mark(table);
    const held = await this.statements(() => jobsHeld(this.sql, table));
    if (!held.anyJob) this.#emptyTables.remember(table, since, now);
    return held.anyPending;
  }

  /**
   * `write`, which writes to `table` what `reads` answer for (jobs: the idle passes' reads; its
   * claim, DeleteJobs and DeleteTargets making its refresh due: held-back claims' reads): the
   * table's read is forgotten before and after (recent-reads.ts).
   */
  private async writing<T>(reads: RecentReads<unknown>, table: string, write: () => Promise<T>): Promise<T> {
    reads.written(table);
    try {
      return await write();
    } finally {
      reads.written(table);
    }
  }

  /** Refresh's transactions, the table declared and the keys hashed as it keeps them. */
  private async refreshTransactions(input: RefreshInput): Promise<RefreshCounts> {
    const onlyKey = input.refreshId === null && input.keys.length === 1 ? input.keys.slice(0)[0] : undefined;
    let oneKey: RefreshCounts | null = null;
    if (onlyKey !== undefined) {
      const { counts, settled } = await this.transaction(() => refreshOneKey(this.sql, input, onlyKey), 1);
      if (settled) return counts;
      oneKey = counts;
    }
    const staging = input.refreshId === null ? `${STAGING_PREFIX}${(++stagingCalls).toString(36)}` : stagingId(input.table, input.refreshId);
    const result = await this.transaction(() => refresh(this.sql, input, staging, this.options, this.#newKeyExpectations), input.keys.length);
    if (result.dropStaging) {
      // Left for the next refresh's abandoned-row cleanup if it fails.
      void this.statements(() => dropStaging(this.sql, staging, input.now)).catch(() => undefined);
    }
    // The one-key transaction's job is counted there; the refresh after it found the job and added nothing.
    return oneKey === null ? result.counts : { ...result.counts, added: result.counts.added + oneKey.added };
  }

  async reserve(input: ReserveInput): Promise<LeaseGrant[]> {
    await this.table(input.table);
    return this.transaction(() => reserve(this.sql, input), input.maxJobs);
  }

  async complete(table: string, completions: readonly Completion[], keepCompleted: boolean, now: number): Promise<CompleteOutcome> {
    await this.table(table);
    return this.transaction(() => complete(this.sql, table, completions, keepCompleted, now), completions.length);
  }

  async fail(table: string, leaseToken: string, errorMessage: string, errorStack: string, now: number): Promise<void> {
    await this.table(table);
    return this.transaction(() => fail(this.sql, table, leaseToken, errorMessage, errorStack, now), 1);
  }

  async heartbeat(
    table: string,
    leaseTokens: readonly string[],
    leaseMs: number,
    progress: readonly LeaseProgressInput[],
    now: number,
  ): Promise<{ lost: string[]; leaseExpireTime: number }> {
    await this.table(table);
    return this.transaction(() => heartbeat(this.sql, table, leaseTokens, leaseMs, progress, now), leaseTokens.length);
  }

  async release(table: string, leaseTokens: readonly string[]): Promise<{ released: number; lost: string[] }> {
    await this.table(table);
    return this.transaction(() => release(this.sql, table, leaseTokens), leaseTokens.length);
  }

  /** One transaction per table, so that one table's sweep holds up no other. */
  async expireLeases(now: number): Promise<number> {
    let expired = 0;
    for (const t of await this.listTables()) expired += await this.transaction(() => expireTableLeases(this.sql, t.name, now, this.options));
    await this.statements(() => deleteSpentRecords(this.sql, now));
    return expired;
  }

  async getProgress(table: string): Promise<ProgressCounts> {
    await this.table(table);
    return this.statements(() => progressCounts(this.sql, table));
  }

  async listJobs(table: string, filter: JobFilter, page: PageRequest): Promise<Page<JobRecord>> {
    await this.table(table);
    return this.statements(() => listJobs(this.sql, table, filter, page));
  }

  async deleteJobs(table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Promise<number> {
    await this.table(table);
    return this.writing(this.#claimReads, table, () =>
      this.transaction(() => deleteJobs(this.sql, table, statuses, keys), keys.length === 0 ? undefined : keys.length),
    );
  }

  async ignore(table: string, keys: readonly EncodedKey[], now: number): Promise<number> {
    await this.table(table);
    return this.writing(this.#emptyTables, table, () => this.transaction(() => ignore(this.sql, table, keys, now), keys.length));
  }

  async deleteTargets(table: string, keys: readonly EncodedKey[] | "all"): Promise<number> {
    await this.table(table);
    return this.writing(this.#claimReads, table, () => this.transaction(() => deleteTargets(this.sql, table, keys), keys === "all" ? undefined : keys.length));
  }

  async listTargets(table: string, restriction: readonly AttributeCondition[], page: PageRequest): Promise<Page<StoredTarget>> {
    await this.table(table);
    return this.statements(() => listTargets(this.sql, table, restriction, page));
  }

  readChanges(afterId: number, limit: number, table: string | null): Promise<ChangeRow[]> {
    return this.statements(() => readChanges(this.sql, afterId, limit, table));
  }

  changeBounds(): Promise<ChangeBounds> {
    return this.statements(() => changeBounds(this.sql));
  }

  async progressSnapshot(table: string, afterId: number): Promise<{ counts: ProgressCounts; includedIds: number[] }> {
    await this.table(table);
    return this.snapshot(() => progressSnapshot(this.sql, table, afterId));
  }

  pruneChanges(before: number): Promise<number> {
    return this.statements(() => pruneChanges(this.sql, before));
  }
}
