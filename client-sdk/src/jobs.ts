/**
 * `table.jobs`: the jobs table of one table, as DataJoint shows it: views by
 * status (`pending`, `reserved`, `errors`, `completed`, `ignored`) with
 * fetch/count/delete, plus refresh, ignore, progress and its live stream
 * (watch.ts).
 */
// Single operators by path, not rxjs's index (see watch.ts: start-up time of every worker process).
import type { Observable } from "rxjs";
import { distinctUntilChanged } from "rxjs/internal/operators/distinctUntilChanged";
import { filter } from "rxjs/internal/operators/filter";
import { map } from "rxjs/internal/operators/map";
import { config } from "./config.js";
import { InvalidArgumentError } from "./errors.js";
import { type Job, JobStatus } from "./gen/populus/v1/types_pb.js";
import { fromProtoKey, type KeyRecord, type KeyValue, sumOverKeyCalls, toRestriction } from "./keys.js";
import { type RefreshCounts, refreshKeySource } from "./refresh.js";
import type { JobServiceRpc } from "./rpc.js";
import type { KeySource } from "./table-definition.js";
import { count, dateOf, millisecondsOf } from "./wire-values.js";
import { progressCountsOf, sameCounts, type WatchOptions, type WatchUpdate, watchJobs } from "./watch.js";

/** A job's status, as DESIGN.md names it. */
export type JobStatusName = "pending" | "reserved" | "success" | "error" | "ignore";

const STATUS_NAMES: Record<number, JobStatusName> = {
  [JobStatus.PENDING]: "pending",
  [JobStatus.RESERVED]: "reserved",
  [JobStatus.SUCCESS]: "success",
  [JobStatus.ERROR]: "error",
  [JobStatus.IGNORE]: "ignore",
};

/** One job, as fetched. Times are Dates; unset ones are undefined. */
export interface JobRecord<K extends object = KeyRecord> {
  readonly key: K;
  readonly status: JobStatusName;
  /** 0-255, lower is more urgent. */
  readonly priority: number;
  readonly createTime: Date | undefined;
  readonly scheduledTime: Date | undefined;
  /** When the current or last lease was granted. */
  readonly reserveTime: Date | undefined;
  /** When the job reached success or error. */
  readonly completeTime: Date | undefined;
  /** Reservation to completion or failure, ms. */
  readonly durationMs: number | undefined;
  /** Set only while reserved. */
  readonly leaseExpireTime: Date | undefined;
  readonly host: string;
  readonly pid: number;
  readonly user: string;
  readonly workerId: string;
  readonly codeVersion: string;
  /** Leases granted so far. */
  readonly attempts: number;
  /** Last failure's message ("" when none). */
  readonly errorMessage: string;
  /** Last failure's stack ("" when none). */
  readonly errorStack: string;
  /** Progress within the job as last reported, 0 to 1. */
  readonly progress: number;
  readonly progressMessage: string;
}

/** Counts of a table's jobs by status and of its target. */
export interface ProgressCounts {
  readonly pending: number;
  readonly reserved: number;
  /** Kept success jobs (keepCompleted). */
  readonly success: number;
  readonly error: number;
  readonly ignore: number;
  /** Rows of the target (keys whose make committed). */
  readonly target: number;
  /** pending + reserved. */
  readonly remaining: number;
}

/** Options of `fetch()`. */
export interface FetchJobsOptions {
  /** Only jobs whose key has these attribute values. */
  readonly restriction?: Readonly<Record<string, KeyValue>>;
  /** Only jobs with priority <= this. */
  readonly maxPriority?: number;
  /** At most this many jobs, the first in reservation order (an operator's first screenful of a large table). @default all */
  readonly limit?: number;
}

/** Options of `jobs.fetch()`: those of a view's `fetch()`, and which statuses. */
export interface FetchAnyJobsOptions extends FetchJobsOptions {
  /** Only jobs with one of these statuses. @default every status */
  readonly statuses?: readonly JobStatusName[];
}

const STATUS_OF_NAME: Record<JobStatusName, JobStatus> = {
  pending: JobStatus.PENDING,
  reserved: JobStatus.RESERVED,
  success: JobStatus.SUCCESS,
  error: JobStatus.ERROR,
  ignore: JobStatus.IGNORE,
};

/** Options of `jobs.refresh()`, in seconds. */
export interface JobsRefreshOptions {
  /** Priority of added jobs, 0-255. @default config.jobs.defaultPriority */
  readonly priority?: number;
  /** Reset reserved jobs leased longer ago than this. @default none (expired leases come back on their own) */
  readonly orphanTimeout?: number;
  /** Remove jobs older than this whose key left the key source. @default config.jobs.staleTimeout */
  readonly staleTimeout?: number;
  /** Added jobs are not reserved before now + delay. @default 0 */
  readonly delay?: number;
}

/** A job of a ListJobs answer as a JobRecord. */
export function jobRecord<K extends object>(job: Job): JobRecord<K> {
  return {
    key: fromProtoKey(job.key) as K,
    status: STATUS_NAMES[job.status] ?? "pending",
    priority: job.priority,
    createTime: dateOf(job.createTime),
    scheduledTime: dateOf(job.scheduledTime),
    reserveTime: dateOf(job.reserveTime),
    completeTime: dateOf(job.completeTime),
    durationMs: millisecondsOf(job.duration),
    leaseExpireTime: dateOf(job.leaseExpireTime),
    host: job.worker?.host ?? "",
    pid: job.worker?.pid ?? 0,
    user: job.worker?.user ?? "",
    workerId: job.worker?.workerId ?? "",
    codeVersion: job.worker?.codeVersion ?? "",
    attempts: job.attempts,
    errorMessage: job.errorMessage,
    errorStack: job.errorStack,
    progress: job.progress,
    progressMessage: job.progressMessage,
  };
}

/** The jobs of one status. */
export class JobsView<K extends object = KeyRecord> {
  readonly #rpc: JobServiceRpc;
  readonly #table: string;
  readonly #status: JobStatus;
  readonly #countOf: (p: ProgressCounts) => number;

  /** @internal Made by Jobs. */
  constructor(rpc: JobServiceRpc, table: string, status: JobStatus, countOf: (p: ProgressCounts) => number) {
    this.#rpc = rpc;
    this.#table = table;
    this.#status = status;
    this.#countOf = countOf;
  }

  /** Every job of this status (every page, or the first `limit`), in reservation order (priority, scheduled time, id). */
  fetch(options: FetchJobsOptions = {}): Promise<JobRecord<K>[]> {
    return fetchJobs<K>(this.#rpc, this.#table, [this.#status], options);
  }

  /** How many jobs have this status. */
  async count(): Promise<number> {
    return this.#countOf(await progressOf(this.#rpc, this.#table));
  }

  /** Deletes the jobs of this status (all, or only those of `keys`; an empty `keys` deletes none); answers how many. */
  async delete(keys?: readonly K[]): Promise<number> {
    if (keys === undefined) return count((await this.#rpc.deleteJobs({ table: this.#table, statuses: [this.#status], keys: [] })).deleted);
    // An empty list restricts to nothing, as in DataJoint (not "no restriction": that would delete them all).
    return sumOverKeyCalls(keys, async (chunk) => count((await this.#rpc.deleteJobs({ table: this.#table, statuses: [this.#status], keys: chunk })).deleted));
  }
}

/** ListJobs, page after page, until the last page or `limit` jobs. */
async function fetchJobs<K extends object>(rpc: JobServiceRpc, table: string, statuses: JobStatus[], options: FetchJobsOptions): Promise<JobRecord<K>[]> {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (limit !== Number.POSITIVE_INFINITY && (!Number.isSafeInteger(limit) || limit < 1)) {
    throw new InvalidArgumentError(`fetch: limit must be a whole number of 1 or more, got ${String(limit)}`);
  }
  const out: JobRecord<K>[] = [];
  let pageToken = "";
  do {
    const page = await rpc.listJobs({
      table,
      statuses,
      maxPriority: options.maxPriority,
      restriction: toRestriction(options.restriction),
      pageSize: Math.min(1000, limit - out.length),
      pageToken,
    });
    for (const job of page.jobs) out.push(jobRecord<K>(job));
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && out.length < limit);
  return out.length > limit ? out.slice(0, limit) : out;
}

/** GetProgress as numbers. */
export async function progressOf(rpc: JobServiceRpc, table: string): Promise<ProgressCounts> {
  return progressCountsOf((await rpc.getProgress({ table })).progress);
}

/** `table.jobs`. */
export class Jobs<K extends object = KeyRecord> {
  /** Jobs waiting to be reserved. */
  readonly pending: JobsView<K>;
  /** Jobs leased to a worker. */
  readonly reserved: JobsView<K>;
  /** Failed jobs; `errors.delete()` lets the next refresh queue them again. */
  readonly errors: JobsView<K>;
  /** Kept success jobs (only with config.jobs.keepCompleted). */
  readonly completed: JobsView<K>;
  /** Jobs marked to skip. */
  readonly ignored: JobsView<K>;
  readonly #rpc: JobServiceRpc;
  readonly #table: string;
  /** Undefined for the jobs of a table known only by name (`db.jobs(name)`), which cannot refresh. */
  readonly #keySource: KeySource<K> | undefined;

  /** @internal Made by Table, and by PopulusClient.jobs() without a key source. */
  constructor(rpc: JobServiceRpc, table: string, keySource: KeySource<K> | undefined) {
    this.#rpc = rpc;
    this.#table = table;
    this.#keySource = keySource;
    this.pending = new JobsView(rpc, table, JobStatus.PENDING, (p) => p.pending);
    this.reserved = new JobsView(rpc, table, JobStatus.RESERVED, (p) => p.reserved);
    this.errors = new JobsView(rpc, table, JobStatus.ERROR, (p) => p.error);
    this.completed = new JobsView(rpc, table, JobStatus.SUCCESS, (p) => p.success);
    this.ignored = new JobsView(rpc, table, JobStatus.IGNORE, (p) => p.ignore);
  }

  /**
   * Syncs the jobs with the key source (promise 4): adds `key source −
   * target − jobs` as pending, removes stale jobs, re-pends kept success
   * jobs whose key left the target and resets orphans.
   */
  async refresh(options: JobsRefreshOptions = {}): Promise<RefreshCounts> {
    if (this.#keySource === undefined) {
      throw new InvalidArgumentError(
        `jobs.refresh: ${this.#table} was opened by name (db.jobs()), without its key source; refresh the table defined with db.table()`,
      );
    }
    const settings = config.jobs;
    for (const [name, v] of Object.entries({ orphanTimeout: options.orphanTimeout, staleTimeout: options.staleTimeout, delay: options.delay })) {
      if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) {
        throw new InvalidArgumentError(`jobs.refresh: ${name} must be a number of seconds >= 0, got ${String(v)}`);
      }
    }
    const priority = options.priority ?? settings.defaultPriority;
    if (!Number.isInteger(priority) || priority < 0 || priority > 255) {
      throw new InvalidArgumentError(`jobs.refresh: priority must be an integer from 0 to 255, got ${String(priority)}`);
    }
    const outcome = await refreshKeySource(this.#rpc, this.#table, this.#keySource, {
      priority,
      staleTimeout: options.staleTimeout ?? settings.staleTimeout,
      orphanTimeout: options.orphanTimeout,
      delay: options.delay ?? 0,
    });
    return outcome.counts;
  }

  /**
   * Jobs of any status (or of `statuses`), in reservation order (priority,
   * scheduled time, id): every page, or the first `limit`.
   */
  async fetch(options: FetchAnyJobsOptions = {}): Promise<JobRecord<K>[]> {
    return fetchJobs<K>(
      this.#rpc,
      this.#table,
      (options.statuses ?? []).map((name) => {
        const status = Object.hasOwn(STATUS_OF_NAME, name) ? STATUS_OF_NAME[name] : undefined;
        if (status === undefined) throw new InvalidArgumentError(`fetch: unknown status "${String(name)}"; use ${Object.keys(STATUS_OF_NAME).join(", ")}`);
        return status;
      }),
      options,
    );
  }

  /** Marks keys to skip (in calls of ≤ 10,000); answers how many jobs were set to ignore. */
  ignore(keys: readonly K[]): Promise<number> {
    return sumOverKeyCalls(keys, async (chunk) => count((await this.#rpc.ignore({ table: this.#table, keys: chunk })).ignored));
  }

  /** The table's counts by status and of its target. */
  progress(): Promise<ProgressCounts> {
    return progressOf(this.#rpc, this.#table);
  }

  /**
   * The live stream of the table's counts and job events (the server's
   * Watch), as a cold Observable: each subscription opens its own stream,
   * unsubscribing closes it. The first update is a snapshot of the counts
   * (no events); each later one carries the job changes since, in commit
   * order, and the counts after them. A stream cut by the network or a server
   * restart reconnects by itself and resumes after the last update, so no
   * event is missed or repeated; other failures end it with a typed error
   * (TableNotFoundError, InvalidArgumentError for a foreign cursor,
   * CursorExpiredError for one whose events were pruned). It never completes
   * on its own: unsubscribe when done.
   *
   * ```ts
   * const sub = ProcessedData.jobs.watch().subscribe(({ progress, events }) => {
   *   for (const e of events) if (e.status === "error") console.log(e.key, e.errorMessage);
   * });
   * sub.unsubscribe();
   * ```
   */
  watch(options: WatchOptions = {}): Observable<WatchUpdate<K>> {
    return watchJobs<K>(this.#rpc, this.#table, options);
  }

  /**
   * Just the counts of `watch()`: the snapshot, then the counts each time
   * they change. The server sends no job events on this stream, and a
   * subscriber slower than the changes gets the newest counts rather than
   * every intermediate one, so it suits dashboards and progress bars.
   */
  watchProgress(options: WatchOptions = {}): Observable<ProgressCounts> {
    return watchJobs<K>(this.#rpc, this.#table, options, true).pipe(
      map((u) => u.progress),
      filter((p): p is ProgressCounts => p !== undefined),
      distinctUntilChanged(sameCounts),
    );
  }
}
