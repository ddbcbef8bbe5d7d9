/**
 * `table.jobs.watch()`: the server's Watch stream (promise 5) as a cold rxjs
 * Observable of plain objects.
 *
 * Each subscription opens one Watch call and unsubscribing aborts it. A
 * stream cut by the network or a server going away (UNAVAILABLE,
 * RESOURCE_EXHAUSTED, CANCELED or ABORTED not of our making, or a stream that simply ends: the server ends
 * it only when it shuts down) is reopened after a backoff of retry.ts's
 * policy (`WatchOptions.retry`: after `maxAttempts` failed tries in a row
 * the last error ends the Observable), passing the last cursor seen, so the subscriber gets every event
 * once and in commit order across reconnects (RESOURCE_EXHAUSTED is the
 * server dropping a reader too slow to keep up: resuming is what it asks
 * for). Every other error ends the
 * Observable with the SDK's typed error: TableNotFoundError (unknown table),
 * InvalidArgumentError (a cursor the server did not issue),
 * CursorExpiredError (a cursor whose events were pruned; resubscribing with
 * it could never succeed, so it is not retried).
 */
import { Code } from "@connectrpc/connect";
// rxjs's own module of the class, not its index: the index loads all of rxjs (about 100 ms of CPU at
// every worker process's start, most of a short populate's start-up), and this is the same class.
import { Observable } from "rxjs/internal/Observable";
import { fromRpcError, type PopulusError } from "./errors.js";
import type { JobEvent as JobEventMessage, WatchResponse } from "./gen/populus/v1/job_service_pb.js";
import { AttributeType, JobStatus, type Progress } from "./gen/populus/v1/types_pb.js";
import type { JobStatusName, ProgressCounts } from "./jobs.js";
import { fromKeysJson, fromProtoKey, type KeyRecord } from "./keys.js";
import { DEFAULT_RETRY, isRetryable, jittered, type RetryPolicy, sleep } from "./retry.js";
import type { JobServiceRpc } from "./rpc.js";
import { count, dateOf } from "./wire-values.js";

/** Options of `jobs.watch()`. */
export interface WatchOptions {
  /**
   * Resume after this cursor (a `WatchUpdate.cursor` of an earlier
   * subscription): the first updates replay the events committed since, then
   * the stream goes live. Without it the first update is a snapshot of the
   * counts. @default none
   */
  readonly cursor?: string;
  /**
   * How a cut stream is reopened: after `maxAttempts` tries in a row that
   * got no message, the last error ends the Observable. The default gives up
   * after about 6 to 12 s of outage, like every other call of the SDK; a
   * dashboard that should outlive a longer outage passes more attempts.
   * @default DEFAULT_RETRY
   */
  readonly retry?: RetryPolicy;
}

/** A job's status after an event: "deleted" when the job row was removed (completed without keepCompleted, or deleted). */
export type JobEventStatus = JobStatusName | "deleted";

/** One change to one job, as Watch streams it. */
export interface JobEvent<K extends object = KeyRecord> {
  readonly key: K;
  /** The job's status after the change. */
  readonly status: JobEventStatus;
  /** When the change committed (undefined only if the server sent no time). */
  readonly time: Date | undefined;
  /** The worker that made the change ("" when none did, e.g. a refresh). */
  readonly workerId: string;
  /** True when the change committed a result to the target. */
  readonly committed: boolean;
  /** make's error message, for a change to "error" ("" otherwise). */
  readonly errorMessage: string;
}

/** One message of the Watch stream. */
export interface WatchUpdate<K extends object = KeyRecord> {
  /** Pass to `watch({ cursor })` to resume right after this update. */
  readonly cursor: string;
  /**
   * The table's counts after this update's events. While a resumed
   * subscription replays missed events the server sends no counts, and this
   * stays at the last counts this subscription received (undefined before
   * any); it is current again once the replay reaches the live position.
   */
  readonly progress: ProgressCounts | undefined;
  /**
   * The job changes since the previous update, in commit order. Empty in the
   * first update of a subscription without a cursor (the snapshot) and in
   * updates for bulk changes (refresh, `errors.delete()`, `table.delete()`),
   * which change only the counts.
   */
  readonly events: readonly JobEvent<K>[];
}

const EVENT_STATUS: Record<number, JobEventStatus> = {
  [JobStatus.UNSPECIFIED]: "deleted",
  [JobStatus.PENDING]: "pending",
  [JobStatus.RESERVED]: "reserved",
  [JobStatus.SUCCESS]: "success",
  [JobStatus.ERROR]: "error",
  [JobStatus.IGNORE]: "ignore",
};

/** A proto Progress as numbers (all zero when unset). */
export function progressCountsOf(p: Progress | undefined): ProgressCounts {
  return {
    pending: count(p?.pending),
    reserved: count(p?.reserved),
    success: count(p?.success),
    error: count(p?.error),
    ignore: count(p?.ignore),
    target: count(p?.target),
    remaining: count(p?.remaining),
  };
}

function jobEventOf<K extends object>(e: JobEventMessage): JobEvent<K> {
  return {
    key: fromProtoKey(e.key) as K,
    // A status this SDK does not know yet (a newer server) reads as the row
    // being gone, the only status with no row to look at.
    status: EVENT_STATUS[e.status] ?? "deleted",
    time: dateOf(e.time),
    workerId: e.workerId,
    committed: e.committed,
    errorMessage: e.errorMessage,
  };
}

/**
 * A message's job events. Asked for in groups (grouped_events): per group one JSON.parse of its
 * keys and a few shared fields, instead of a JobEvent message with a map of Value messages per
 * event; a server that predates groups answers JobEvent messages, which are taken too.
 */
function eventsOf<K extends object>(message: WatchResponse): JobEvent<K>[] {
  if (message.eventGroups.length === 0) return message.events.map((e) => jobEventOf<K>(e));
  const int64 = message.keyAttributes.filter((a) => a.type === AttributeType.INT64).map((a) => a.name);
  const events: JobEvent<K>[] = [];
  for (const g of message.eventGroups) {
    const status = EVENT_STATUS[g.status] ?? "deleted";
    const ms = dateOf(g.time)?.getTime();
    fromKeysJson(g.keysJson, int64).forEach((key, i) => {
      // A Date each: they are mutable, and a subscriber may change one.
      const time = ms === undefined ? undefined : new Date(ms);
      events.push({ key: key as K, status, time, workerId: g.workerId, committed: g.committed, errorMessage: g.errorMessages[i] ?? "" });
    });
  }
  return events;
}

/**
 * True for a failure of the stream rather than of the request. Besides the
 * retried codes: connect-node reports a server that vanished mid-stream as
 * CANCELED ("http/2 stream closed with error code CANCEL", seen when the
 * server is SIGKILLed; our own cancel is told apart by our signal) and a
 * connection reset as ABORTED. Watch only reads, so reopening it is always
 * safe.
 */
function reconnectable(err: PopulusError): boolean {
  return isRetryable(err) || err.code === Code.Canceled || err.code === Code.Aborted;
}

/**
 * The Watch stream of `table` as a cold Observable; see the module comment.
 * `countsOnly` asks the server for counts without job events (it then
 * coalesces counts for a slow reader instead of queueing every message).
 */
export function watchJobs<K extends object>(rpc: JobServiceRpc, table: string, options: WatchOptions = {}, countsOnly = false): Observable<WatchUpdate<K>> {
  const policy = options.retry ?? DEFAULT_RETRY;
  return new Observable<WatchUpdate<K>>((subscriber) => {
    const abort = new AbortController();
    const signal = abort.signal;
    let cursor = options.cursor ?? "";
    let progress: ProgressCounts | undefined;

    const follow = async (): Promise<void> => {
      let delay = policy.initialDelayMs;
      let failures = 0;
      for (;;) {
        try {
          for await (const message of rpc.watch({ table, cursor, countsOnly, groupedEvents: true }, { signal })) {
            // A message proves the stream works: the next cut starts a fresh backoff.
            failures = 0;
            delay = policy.initialDelayMs;
            if (message.progress !== undefined) progress = progressCountsOf(message.progress);
            if (message.cursor !== "") cursor = message.cursor;
            subscriber.next({ cursor, progress, events: eventsOf<K>(message) });
            if (signal.aborted) return;
          }
          if (signal.aborted) return;
          // The server ended the stream: it is shutting down, and another
          // replica (or it, restarted) takes the stream over. Not a failure,
          // but not a reason to skip the backoff either: a server that ends
          // every stream at once must not be hammered.
        } catch (err) {
          if (signal.aborted) return;
          const error = fromRpcError(err);
          if (!reconnectable(error)) throw error;
          failures++;
          if (failures >= policy.maxAttempts) throw error;
        }
        await sleep(jittered(delay), signal).catch(() => undefined);
        if (signal.aborted) return;
        delay = Math.min(delay * 2, policy.maxDelayMs);
      }
    };

    // follow() returns only once unsubscribed: like the server's stream, the
    // Observable never completes on its own.
    follow().catch((err: unknown) => {
      if (!signal.aborted) subscriber.error(err);
    });
    return () => abort.abort();
  });
}

/** Two counts are the same. */
export function sameCounts(a: ProgressCounts, b: ProgressCounts): boolean {
  return (
    a.pending === b.pending &&
    a.reserved === b.reserved &&
    a.success === b.success &&
    a.error === b.error &&
    a.ignore === b.ignore &&
    a.target === b.target &&
    a.remaining === b.remaining
  );
}
