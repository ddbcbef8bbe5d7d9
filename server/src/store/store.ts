/**
 * The store seam: everything the service needs from a database, in the
 * design's words. Each operation is written once (store/operations/) and run
 * by a store per dialect (store/sqlite, store/mysql) through shared-store.ts,
 * both held to one conformance suite.
 *
 * Inputs are already validated and encoded by the service (keys in canonical
 * form, durations in milliseconds, priorities in range). The store still
 * checks what only the database knows: whether a table exists, whether its key
 * attributes match, whether a lease is current. Every method is one
 * transaction: it either applies entirely or throws and changes nothing.
 *
 * Time: every time column is epoch milliseconds (UTC), taken from the server
 * clock of the replica that writes it.
 *
 * The words (job, lease, target, change log, ...) and the promises that
 * comments cite by number are defined in ARCHITECTURE.md.
 */
import type { AttributeCondition, EncodedKey, EncodedKeyList, KeyAttributes, KeyHashScheme } from "../key-codec.js";
import type { ChangeRow } from "./change-log.js";
import type { ClaimFinish, ClaimInput, ClaimOutcome } from "./operations/refresh-claims.js";

export type { ClaimInput, ClaimOutcome };

/** The five job statuses, as stored. */
export type JobStatusName = "pending" | "reserved" | "success" | "error" | "ignore";

/** A declared table. */
export interface DeclaredTable {
  /** Stored snake_case name, e.g. "processed_data". */
  readonly name: string;
  /** Name as first given, e.g. "ProcessedData". */
  readonly displayName: string;
  readonly keyAttributes: KeyAttributes;
  /** How its keys are hashed (key-codec.ts). */
  readonly keyHash: KeyHashScheme;
  /** Epoch ms. */
  readonly createTime: number;
}

/** Counts of a table's jobs by status and of its target. */
export interface ProgressCounts {
  readonly pending: number;
  readonly reserved: number;
  readonly success: number;
  readonly error: number;
  readonly ignore: number;
  readonly target: number;
}

/** Who holds a lease. */
export interface WorkerInfo {
  readonly workerId: string;
  readonly host: string;
  readonly pid: number;
  readonly user: string;
  readonly codeVersion: string;
}

export interface RefreshInput {
  readonly table: string;
  readonly displayName: string;
  /** The attributes of the keys in this call; null when the call has no keys. */
  readonly keyAttributes: KeyAttributes | null;
  /** The scheme `keys` were hashed with: the table's, or for a table not yet declared, the one it is declared with. */
  readonly keyHash: KeyHashScheme;
  /** An array, or (a canonical keys_json) a list that hashes each batch as refresh reads it. */
  readonly keys: EncodedKeyList;
  /** Groups the calls of one refresh; null for a single-call refresh. */
  readonly refreshId: string | null;
  /** Last call: stale removal runs over every key of the refresh. */
  readonly final: boolean;
  readonly priority: number;
  readonly delayMs: number;
  readonly staleTimeoutMs: number;
  /** Reset reservations older than this; null: no orphan reset. */
  readonly orphanTimeoutMs: number | null;
  readonly now: number;
}

export interface RefreshCounts {
  readonly added: number;
  readonly removed: number;
  readonly orphaned: number;
  readonly rePended: number;
  /** Final calls only: whether the table has a pending job afterwards (due or delayed); null otherwise. */
  readonly anyPending: boolean | null;
}

export interface ReserveInput {
  readonly table: string;
  readonly maxJobs: number;
  readonly maxPriority: number | null;
  readonly restriction: readonly AttributeCondition[];
  readonly worker: WorkerInfo;
  readonly leaseMs: number;
  readonly now: number;
  /**
   * The client's name for this Reserve (promise 1 under retries): while the leases an earlier
   * Reserve of the same id and table granted are held, and for at most the lease length it asked
   * for, the store answers those leases again instead of granting more. Null: lease anew.
   */
  readonly requestId: string | null;
  /**
   * Whether the call has ended for its caller (the client left, or its deadline passed): a Reserve
   * that has not yet written its leases then writes none. Its answer would reach no one, and its
   * jobs would sit reserved until their leases expired. A server that is stopping is not such an
   * end: its unary calls in flight finish, and their clients take the answer.
   */
  readonly callerGone?: () => boolean;
}

/** A job leased to a worker. */
export interface LeaseGrant {
  readonly keyJson: string;
  readonly leaseToken: string;
  readonly leaseExpireTime: number;
  readonly attempt: number;
  readonly priority: number;
}

export interface Completion {
  readonly leaseToken: string;
  /** The result record, as JSON text. */
  readonly resultJson: string;
}

export interface CompleteOutcome {
  readonly committed: number;
  readonly alreadyCommitted: number;
}

export interface LeaseProgressInput {
  readonly leaseToken: string;
  readonly progress: number;
  readonly message: string;
}

/** A job row as read back. */
export interface JobRecord {
  readonly keyJson: string;
  readonly status: JobStatusName;
  readonly priority: number;
  readonly createTime: number;
  readonly scheduledTime: number;
  readonly reserveTime: number | null;
  readonly completeTime: number | null;
  readonly durationMs: number | null;
  readonly worker: WorkerInfo | null;
  readonly attempts: number;
  readonly leaseExpireTime: number | null;
  readonly errorMessage: string | null;
  readonly errorStack: string | null;
  readonly progress: number | null;
  readonly progressMessage: string | null;
}

/** A computed row as read back. */
export interface StoredTarget {
  readonly keyJson: string;
  readonly resultJson: string;
  readonly completeTime: number;
}

/** Filters of ListJobs. */
export interface JobFilter {
  readonly statuses: readonly JobStatusName[];
  readonly maxPriority: number | null;
  readonly restriction: readonly AttributeCondition[];
}

/** A page request: rows after `after` (an opaque position from the previous page). */
export interface PageRequest {
  readonly pageSize: number;
  readonly after: string | null;
}

export interface Page<T> {
  readonly rows: readonly T[];
  /** Position to pass as `after` for the next page; null on the last page. */
  readonly next: string | null;
}

/** The store. Every method is one transaction. */
export interface JobStore {
  readonly dialect: "sqlite" | "mysql";
  /** Calls of one refresh worth having in flight at once (RefreshResponse.calls_at_once): how many this store writes side by side. */
  readonly refreshCallsAtOnce: number;
  /** The table's definition, or null when it was never declared. */
  describeTable(name: string): Promise<DeclaredTable | null>;
  /** Every declared table, by name. */
  listTables(): Promise<DeclaredTable[]>;
  /** Promise 4. Declares the table on its first call with keys. */
  refresh(input: RefreshInput): Promise<RefreshCounts>;
  /** Promise 4's coordination: takes a table's refresh claim (operations/refresh-claims.ts); the table need not be declared. */
  claimRefresh(input: ClaimInput): Promise<ClaimOutcome>;
  /**
   * A call of the claimed refresh (`final`: its last, committed): holds the claim on ("held"), or
   * ends it and records the refresh ("recorded"; "due" when an operator made the next one due
   * while it ran); "not-held" when a final call's claim was no longer held under claimId.
   */
  refreshClaimed(table: string, claimId: string, final: boolean, now: number): Promise<"held" | ClaimFinish>;
  /** Renews a claim still held under `claimId` for its timeout from now; false when it is not held. */
  renewRefreshClaim(table: string, claimId: string, now: number): Promise<boolean>;
  /** Gives a claim back unrecorded; false when it was no longer held. */
  abandonRefresh(table: string, claimId: string): Promise<boolean>;
  /** Whether the table has a pending job, due or delayed; false for a table never declared. */
  anyPending(table: string, now: number): Promise<boolean>;
  /** The table's jobs changed through another replica (the change feed said): no read this server made before answers for it. */
  jobsChangedElsewhere(table: string): void;
  /** Promise 1: leases up to maxJobs ready jobs; answers at once. */
  reserve(input: ReserveInput): Promise<LeaseGrant[]>;
  /** Promise 2: all or nothing; LeaseLostError when any lease is not current. */
  complete(table: string, completions: readonly Completion[], keepCompleted: boolean, now: number): Promise<CompleteOutcome>;
  /** Records a failure; LeaseLostError when the lease is not current. */
  fail(table: string, leaseToken: string, errorMessage: string, errorStack: string, now: number): Promise<void>;
  /** Extends the leases still held; answers the lost ones. */
  heartbeat(
    table: string,
    leaseTokens: readonly string[],
    leaseMs: number,
    progress: readonly LeaseProgressInput[],
    now: number,
  ): Promise<{ lost: string[]; leaseExpireTime: number }>;
  /** Returns held leases to pending without charging an attempt. */
  release(table: string, leaseTokens: readonly string[]): Promise<{ released: number; lost: string[] }>;
  /** Reserved jobs whose lease expired: back to pending, or error past maxLostAttempts. */
  expireLeases(now: number): Promise<number>;
  getProgress(table: string): Promise<ProgressCounts>;
  listJobs(table: string, filter: JobFilter, page: PageRequest): Promise<Page<JobRecord>>;
  deleteJobs(table: string, statuses: readonly JobStatusName[], keys: readonly EncodedKey[]): Promise<number>;
  ignore(table: string, keys: readonly EncodedKey[], now: number): Promise<number>;
  deleteTargets(table: string, keys: readonly EncodedKey[] | "all"): Promise<number>;
  listTargets(table: string, restriction: readonly AttributeCondition[], page: PageRequest): Promise<Page<StoredTarget>>;

  // The change log (store/change-log.ts): every mutating method above appends its change in its own transaction.

  /** Change rows with id > afterId in id order, at most `limit`, of one table or (null) all. */
  readChanges(afterId: number, limit: number, table: string | null): Promise<ChangeRow[]>;
  /** The highest change id written so far, and the highest pruned (0: none). */
  changeBounds(): Promise<ChangeBounds>;
  /**
   * A table's counts read in one snapshot with the change ids after `afterId` that the snapshot
   * already includes: a tailer positioned at afterId applies every later change except those.
   */
  progressSnapshot(table: string, afterId: number): Promise<{ counts: ProgressCounts; includedIds: number[] }>;
  /** Deletes change rows written before `before` (epoch ms); answers how many. */
  pruneChanges(before: number): Promise<number>;
  /** Resolves when the database answers a trivial query; rejects with why it does not (health). */
  ping(): Promise<void>;
  /** Closes the connections. */
  close(): Promise<void>;
}

export interface ChangeBounds {
  readonly lastId: number;
  readonly prunedThrough: number;
}

/** Settings every store takes. */
export interface StoreOptions {
  /** A job whose worker was lost this many times becomes error. */
  readonly maxLostAttempts: number;
}

/**
 * The message a job gets when its worker was lost too many times, in two parts around the count:
 * the stores build it in SQL, where the count is the row's attempts.
 */
export const WORKER_LOST_MESSAGE = {
  before: "worker lost ",
  after: " times (lease expired or orphaned each time); not retried again. Delete the error job to retry it.",
} as const;

/** Error messages are kept to 2047 characters, as DataJoint's jobs table does. */
export const ERROR_MESSAGE_MAX = 2047;
const TRUNCATED = "...truncated";

/** Cuts an error message to ERROR_MESSAGE_MAX characters, marking the cut. */
export function truncateErrorMessage(message: string): string {
  if (message.length <= ERROR_MESSAGE_MAX) return message;
  return message.slice(0, ERROR_MESSAGE_MAX - TRUNCATED.length) + TRUNCATED;
}
