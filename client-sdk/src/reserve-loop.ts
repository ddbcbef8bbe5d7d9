/**
 * The reserve loop of one process: reserve a batch of jobs, run make on each,
 * commit the successes in one Complete, record failures with Fail, and repeat
 * until Reserve answers nothing (or maxCalls is reached, or the loop is told
 * to stop). Held leases are kept alive by a heartbeat off the event loop
 * that runs make (a thread, heartbeat-thread.ts, or populate's parent
 * process, populate-heartbeat.ts), so a CPU-bound make cannot starve it.
 *
 * Batching is what makes the coordinator cheap (one round trip and one
 * commit per batch), and pipelining hides the round trips: while a batch's
 * makes run, the next batch is already being reserved and the previous one's
 * results are being committed. The batch size follows the observed make
 * time, so a batch is about BATCH_TARGET_MS of work: a no-op make grows it to
 * MAX_RESERVE_BATCH, a slow one keeps it at one key, and then a process holds
 * two keys at most (the one it makes and the next), as DataJoint's one at a
 * time does with the round trip hidden.
 *
 * Outcomes per lease: make returned → committed (counted in successCount) or,
 * when the lease was lost meanwhile, dropped (another worker has the key);
 * make threw → Fail (errorList), or dropped when the lease was lost, or
 * released (no attempt charged) when its signal was aborted because the loop
 * was stopping; never started because the loop stopped → released; still
 * running when the stop's grace period ended → released, and make's promise
 * is no longer waited for.
 */
import { randomUUID } from "node:crypto";
// Imported, not read from the global: Node loads the global \`performance\` on its first read, and
// that was the first batch's (about 4 ms of a fresh worker process, inside the drain it started).
import { performance } from "node:perf_hooks";
import type { JsonObject } from "@bufbuild/protobuf";
import { InvalidArgumentError, LeaseLostError, ResourceExhaustedError, TableNotFoundError, UnavailableError, WorkerProcessError } from "./errors.js";
import { type CompleteRequest, CompleteRequestSchema, type Completion, type ReserveResponse } from "./gen/populus/v1/job_service_pb.js";
import { AttributeType } from "./gen/populus/v1/types_pb.js";
import type { LeaseKeeper, StartLeaseKeeper } from "./heartbeat-thread.js";
import { fromKeysJson, fromProtoKey, type KeyRecord, type KeyValue, toRestriction } from "./keys.js";
import type { JobServiceRpc } from "./rpc.js";
import type { Make, MakeContext } from "./table-definition.js";
import { count, durationOf } from "./wire-values.js";
import { asciiListField } from "./wire-ascii.js";
import type { WorkerIdentityInfo } from "./worker-identity.js";

/**
 * Jobs reserved by a loop's first Reserve, before any make time is known; the
 * next batch is not reserved ahead until that first batch has been made.
 * Two: the next job is already leased when one finishes.
 */
export const RESERVE_BATCH = 2;

/** Largest batch: the server's limit for one Reserve and one Complete. */
export const MAX_RESERVE_BATCH = 1000;

/** Work per batch the batch size aims at, ms of make time. */
export const BATCH_TARGET_MS = 200;

/** A batch grows at most this many times over the last one: a few fast makes are no proof. */
const BATCH_GROWTH = 8;

/**
 * Leases shorter than this (seconds) start the heartbeat before the first
 * Reserve and wait for it to run. A longer one need not: its first renewal
 * comes a third of a lease after the heartbeat starts, so the heartbeat may
 * start with the first leases and come up to two thirds of a lease late
 * (20 s here) while the first batch is already being made. So a populate
 * waits for no thread to load (0.1-0.2 s of a 1 s drain of 20,000 no-op
 * jobs), and one that finds nothing to do starts none.
 */
const WAIT_FOR_HEARTBEAT_BELOW_S = 30;

/** Lease length asked for, seconds; the heartbeat thread renews it every third of it. */
export const LEASE_DURATION_S = 60;

/** One failed key. */
export interface KeyError {
  /** The key whose make failed. */
  readonly key: KeyRecord;
  /** What make threw (its message). */
  readonly message: string;
}

/** What a reserve loop did. */
export interface LoopResult {
  /** Results committed by this loop. */
  successCount: number;
  /** Failures recorded by this loop, in order. */
  errorList: KeyError[];
  /** The failure that stopped the loop (suppressErrors false), with what make threw. */
  failure?: KeyError & { readonly cause: unknown };
}

/** Everything a reserve loop needs. */
export interface LoopOptions {
  readonly rpc: JobServiceRpc;
  /** Starts what renews the loop's leases (with the loop's lease length) until stopped. */
  readonly heartbeat: StartLeaseKeeper;
  /** Table name. */
  readonly table: string;
  readonly make: Make<KeyRecord>;
  readonly identity: WorkerIdentityInfo;
  /** Most make calls of this loop; undefined for no limit. */
  readonly maxCalls: number | undefined;
  /** Reserve only jobs with priority <= this. */
  readonly priority: number | undefined;
  /** Reserve only jobs whose key has these attribute values. */
  readonly restriction: Readonly<Record<string, KeyValue>> | undefined;
  /** false: stop at the first failure (after recording it). */
  readonly suppressErrors: boolean;
  /** Complete with keep_completed. */
  readonly keepCompleted: boolean;
  /** Lease length, seconds. @default LEASE_DURATION_S */
  readonly leaseDurationS?: number;
  /** Aborted: reserve nothing more and start no new make; a running make may finish (and commit). */
  readonly signal?: AbortSignal;
  /** Aborted: abort running makes' signals, stop waiting for them and release what is held (no attempt charged). */
  readonly cancel?: AbortSignal;
  /** Called once with the first failure when suppressErrors is false (a child tells its parent at once). */
  readonly onFailure?: (failure: KeyError) => void;
}

/** A leased job, as the loop keeps it. */
interface LeasedJob {
  readonly leaseToken: string;
  readonly key: KeyRecord;
  /** Which lease of this job this is, from 1. */
  readonly attempt: number;
}

interface Held {
  readonly lease: LeasedJob;
  lost: boolean;
  /** make's ctx.signal, made when make first reads it: most makes never do, and one per job cost 2 µs and garbage. */
  controller?: AbortController;
  /** Set once the job is aborted (its lease lost, or the loop cancelled), with the signal's reason. */
  aborted?: { readonly reason: unknown };
}

/** Aborts the job's signal (made now or when make first reads it); the first reason stays. */
function abortHeld(h: Held, reason: unknown): void {
  if (h.aborted !== undefined) return;
  h.aborted = { reason };
  h.controller?.abort(reason);
}

/** The job's ctx.signal. */
function signalOf(h: Held): AbortSignal {
  if (h.controller === undefined) {
    h.controller = new AbortController();
    if (h.aborted !== undefined) h.controller.abort(h.aborted.reason);
  }
  return h.controller.signal;
}

/** Runs the loop to its end; rejects only on an RPC error that is not about a lease, or when the heartbeat thread dies. */
export async function runReserveLoop(o: LoopOptions): Promise<LoopResult> {
  const result: LoopResult = { successCount: 0, errorList: [] };
  const restriction = toRestriction(o.restriction);
  const leaseDurationS = o.leaseDurationS ?? LEASE_DURATION_S;
  const held = new Map<string, Held>();
  let stopping = false;
  let fatal: Error | undefined;
  const onStop = () => {
    stopping = true;
  };
  const onCancel = () => {
    stopping = true;
    for (const h of held.values()) abortHeld(h, o.cancel?.reason ?? new Error("the worker is stopping"));
  };
  const makes = new MakeRunner();
  // The loop's cancel signal also stops waiting for running makes (a failed heartbeat only aborts them).
  const onCancelSignal = () => {
    makes.cancel();
    onCancel();
  };
  if (o.signal?.aborted === true) onStop();
  o.signal?.addEventListener("abort", onStop, { once: true });
  o.cancel?.addEventListener("abort", onCancelSignal, { once: true });

  const markLost = (tokens: readonly string[]) => {
    for (const token of tokens) {
      const h = held.get(token);
      if (h === undefined || h.lost) continue;
      h.lost = true;
      abortHeld(h, new LeaseLostError(`the lease of this job was lost (expired and reassigned)`, [token]));
    }
  };
  // Short leases (under WAIT_FOR_HEARTBEAT_BELOW_S) start the heartbeat before the first Reserve
  // and wait for it to run: started once leases were held, it came up too late for 1 s leases on
  // the loaded 2-core dev machine (sdk-heartbeat.test.ts, both dialects at once, load average 6: a
  // lease expired before its first renewal in 1 run of 4). Longer ones start it with the first
  // leases they get: it has a third of a lease to come up, and a populate that finds nothing to
  // do (an idle populus-worker's every pass) starts no thread at all.
  let heartbeat: LeaseKeeper | undefined;
  const keeper = (): LeaseKeeper =>
    (heartbeat ??= o.heartbeat({
      onLost: markLost,
      onError: (err) => {
        fatal ??= new WorkerProcessError(`the heartbeat of ${o.table} failed, so held leases are no longer renewed: ${err.message}`, { cause: err });
        onCancel();
      },
    }));
  const forget = (tokens: readonly string[]) => {
    for (const t of tokens) held.delete(t);
    if (tokens.length > 0) heartbeat?.drop(tokens);
  };

  let calls = 0;
  const sizer = new BatchSizer();
  const reportProgress = (token: string, fraction: number, message: string) => keeper().progress(token, fraction, message);
  /** Whether the server takes results in columns (results_json): it answered a Reserve in columns. */
  let columnResults = false;
  const take = (leases: readonly LeasedJob[]) => {
    for (const lease of leases) held.set(lease.leaseToken, { lease, lost: false });
    if (leases.length > 0) keeper().hold(leases.map((l) => l.leaseToken));
    if (o.cancel?.aborted === true) onCancelSignal();
  };
  /** Reserves a batch and holds it (heartbeats) from the moment it arrives, also when it arrives ahead of its turn. */
  const reserve = async (want: number) => {
    const batch = await reserveBatch(o, restriction, leaseDurationS, want);
    if (batch === undefined) return undefined;
    columnResults ||= batch.columns;
    take(batch.leases);
    return batch.leases;
  };
  /** The next batch, reserved while the current one is made. */
  let ahead: Promise<LeasedJob[] | undefined> | undefined;
  let aheadSize = 0;
  /** The latest batch's Complete; each waits for the one before, so results commit in order. */
  let committing: Promise<void> = Promise.resolve();
  const commit = (completions: ReadyResult[]) => {
    const previous = committing;
    committing = (async () => {
      await previous;
      if (completions.length === 0) return;
      try {
        result.successCount += await complete(
          o,
          completions.filter((c) => held.get(c.leaseToken)?.lost !== true),
          columnResults,
        );
      } catch (err) {
        fatal ??= err instanceof Error ? err : new Error(String(err));
        stopping = true;
      } finally {
        forget(completions.map((c) => c.leaseToken));
      }
    })();
  };
  try {
    // A heartbeat that cannot start sets fatal and stopping (onError), whether or not we wait here.
    if (leaseDurationS < WAIT_FOR_HEARTBEAT_BELOW_S) await keeper().ready.catch(() => undefined);
    let want = RESERVE_BATCH;
    let first = true;
    while (!stopping) {
      let requested = o.maxCalls === undefined ? want : Math.min(want, o.maxCalls - calls);
      if (ahead === undefined && requested <= 0) break;
      let leases: LeasedJob[] | undefined;
      if (ahead === undefined) leases = await reserve(requested);
      else [leases, requested] = [await ahead, aheadSize];
      ahead = undefined;
      if (leases === undefined || leases.length === 0) break;

      // Reserve the next batch now, while this one is made (not during the first: its make time is not known yet).
      want = sizer.next(want);
      const nextBudget = o.maxCalls === undefined ? want : Math.min(want, o.maxCalls - calls - leases.length);
      // A short batch means the queue is (nearly) empty: the next Reserve waits its turn and will likely end the loop.
      if (!first && !stopping && nextBudget > 0 && leases.length >= requested) {
        aheadSize = nextBudget;
        ahead = reserve(nextBudget);
        // Its failure is rethrown where it is awaited (next turn, or on the way out); until then
        // (a batch of makes, a Complete being retried) it must not count as unhandled.
        ahead.catch(() => undefined);
      }
      first = false;

      const completions: ReadyResult[] = [];
      // Timed per batch, not per make: two clock reads per job were a measurable share of a no-op make.
      const batchStarted = performance.now();
      let made = 0;
      for (const lease of leases) {
        const h = held.get(lease.leaseToken);
        if (h === undefined || h.lost || stopping) continue;
        const key = lease.key;
        calls++;
        made++;
        const ctx = new JobContext(lease, h, reportProgress);
        try {
          const running = makes.run(o.make, key, ctx);
          const outcome = running instanceof Promise ? await running : running;
          // Cancelled: the grace period ended with make still running; its lease is released below.
          if (outcome !== CANCELLED) completions.push(toReadyResult(lease.leaseToken, outcome));
        } catch (err) {
          if (h.lost) {
            forget([lease.leaseToken]); // another worker holds the key now
            continue;
          }
          // make gave up because the loop is stopping: released below, no attempt charged.
          if (h.aborted !== undefined) continue;
          const message = err instanceof Error ? err.message : String(err);
          let recorded: boolean;
          try {
            recorded = await fail(o, lease.leaseToken, message, err instanceof Error ? (err.stack ?? "") : "");
          } catch (failErr) {
            // Fail itself failed (server unreachable past retries): stop, but still commit what this batch made.
            fatal ??= failErr instanceof Error ? failErr : new Error(String(failErr));
            stopping = true;
            continue;
          }
          forget([lease.leaseToken]);
          if (!recorded) continue;
          const failure = { key, message };
          result.errorList.push(failure);
          if (!o.suppressErrors) {
            result.failure = { ...failure, cause: err };
            o.onFailure?.(failure);
            stopping = true;
          }
        }
      }
      if (made > 0) sizer.observe(performance.now() - batchStarted, made);
      // At most two Completes outstanding: this one, overlapping the next batch's makes, and none older.
      const previous = committing;
      commit(completions);
      await previous;
      // What this batch did not start (the loop is stopping) goes back now, not after the next batch.
      if (stopping) {
        await committing;
        await release(o, held, forget);
      }
    }
  } finally {
    o.signal?.removeEventListener("abort", onStop);
    o.cancel?.removeEventListener("abort", onCancelSignal);
    await committing;
    // A batch reserved ahead that will not be made goes back with the rest.
    await ahead?.catch(() => undefined);
    // Release before the thread stops, so no held lease goes unrenewed meanwhile.
    await release(o, held, forget);
    await heartbeat?.stop();
  }
  if (fatal !== undefined) throw fatal;
  return result;
}

/**
 * The next batch size from the mean make time so far: about BATCH_TARGET_MS
 * of work, from 1 to MAX_RESERVE_BATCH, growing at most BATCH_GROWTH-fold.
 */
class BatchSizer {
  #makes = 0;
  #totalMs = 0;

  /** `makes` makes took `ms` in all. */
  observe(ms: number, makes: number): void {
    this.#makes += makes;
    this.#totalMs += ms;
  }

  next(current: number): number {
    if (this.#makes === 0) return current;
    const meanMs = Math.max(this.#totalMs / this.#makes, 0.001);
    const ideal = Math.max(1, Math.min(MAX_RESERVE_BATCH, Math.floor(BATCH_TARGET_MS / meanMs)));
    return Math.min(ideal, current * BATCH_GROWTH);
  }
}

/** A reserved batch: its jobs, and whether the server answered in columns (so it also takes results so). */
interface ReservedBatch {
  readonly leases: LeasedJob[];
  readonly columns: boolean;
}

/**
 * One Reserve, asking for the answer in columns (as_columns): a few lists and one native
 * JSON.parse of every key, instead of a Lease message with a map of Value messages per job. A server
 * that predates as_columns answers Lease messages, which are taken too. Undefined when the table
 * does not exist yet (never refreshed: nothing to do).
 */
async function reserveBatch(
  o: LoopOptions,
  restriction: ReturnType<typeof toRestriction>,
  leaseDurationS: number,
  want: number,
): Promise<ReservedBatch | undefined> {
  let answer: ReserveResponse;
  try {
    answer = await o.rpc.reserve({
      table: o.table,
      maxJobs: want,
      maxPriority: o.priority,
      restriction,
      worker: {
        workerId: o.identity.workerId,
        host: o.identity.host,
        pid: o.identity.pid,
        user: o.identity.user,
        codeVersion: o.identity.codeVersion,
      },
      leaseDuration: durationOf(leaseDurationS),
      asColumns: true,
      // One id for this Reserve and every retry of it (rpc.ts resends this request): a retry after an
      // answer lost on the way back gets the jobs that answer leased, not a second batch.
      requestId: randomUUID(),
    });
  } catch (err) {
    if (err instanceof TableNotFoundError) return undefined;
    throw err;
  }
  const c = answer.columns;
  if (c === undefined) {
    return { leases: answer.leases.map((l): LeasedJob => ({ leaseToken: l.leaseToken, key: fromProtoKey(l.key), attempt: l.attempt })), columns: false };
  }
  const int64 = c.keyAttributes.filter((a) => a.type === AttributeType.INT64).map((a) => a.name);
  const keys = fromKeysJson(c.keysJson, int64);
  if (keys.length !== c.leaseTokens.length) throw new InvalidArgumentError(`the server sent ${c.leaseTokens.length} lease tokens but ${keys.length} keys`);
  const leases = new Array<LeasedJob>(keys.length);
  for (let i = 0; i < leases.length; i++) {
    leases[i] = { leaseToken: c.leaseTokens[i] as string, key: keys[i] as KeyRecord, attempt: c.attempts[i] as number };
  }
  return { leases, columns: true };
}

/** What MakeRunner answers for a make that was left running because the loop was cancelled. */
const CANCELLED: unique symbol = Symbol("cancelled");

/** make's second argument: one per job, its methods on the prototype rather than closures per job. */
class JobContext implements MakeContext<KeyRecord> {
  readonly key: KeyRecord;
  readonly attempt: number;
  readonly #held: Held;
  readonly #report: (token: string, fraction: number, message: string) => void;

  constructor(lease: LeasedJob, held: Held, report: (token: string, fraction: number, message: string) => void) {
    this.key = lease.key;
    this.attempt = lease.attempt;
    this.#held = held;
    this.#report = report;
  }

  get signal(): AbortSignal {
    return signalOf(this.#held);
  }

  progress(fraction: number, message = ""): void {
    const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    this.#report(this.#held.lease.leaseToken, clamped, message.slice(0, 255));
  }
}

/**
 * Runs makes and waits for them until the loop is cancelled. The loop's one
 * cancel listener tells it (cancel()), not one listener per job: adding and
 * removing an AbortSignal listener cost about 3 µs a job, and a synchronous
 * make (most of them) needs no waiting at all.
 */
class MakeRunner {
  #cancelled = false;
  /** Resolvers of the makes being waited for, told when the loop is cancelled. */
  readonly #waiting = new Set<(outcome: typeof CANCELLED) => void>();

  /** Stops waiting for running makes (their outcome is CANCELLED) and starts no more. */
  cancel(): void {
    this.#cancelled = true;
    for (const resolve of this.#waiting) resolve(CANCELLED);
    this.#waiting.clear();
  }

  /**
   * Runs make(key, ctx). A synchronous make's value comes back as is (a
   * throw propagates); an asynchronous one is waited for, or only until the
   * loop is cancelled: then the outcome is CANCELLED and the promise is left
   * behind (its late rejection is handled here, never unhandled).
   */
  run<T>(
    make: (key: KeyRecord, ctx: MakeContext<KeyRecord>) => T | PromiseLike<T>,
    key: KeyRecord,
    ctx: MakeContext<KeyRecord>,
  ): T | typeof CANCELLED | Promise<T | typeof CANCELLED> {
    if (this.#cancelled) return CANCELLED;
    const value = make(key, ctx);
    if (!isThenable(value)) return value;
    return new Promise((resolve, reject) => {
      this.#waiting.add(resolve);
      Promise.resolve(value).then(
        (v) => {
          this.#waiting.delete(resolve);
          resolve(v);
        },
        (err: unknown) => {
          this.#waiting.delete(resolve);
          reject(err);
        },
      );
    });
  }
}

function isThenable<T>(v: T | PromiseLike<T>): v is PromiseLike<T> {
  return typeof (v as { then?: unknown } | null)?.then === "function";
}

/** The server's limit on one result, in bytes of its JSON (larger is INVALID_ARGUMENT there). */
const MAX_RESULT_JSON_BYTES = 4 * 1024 * 1024;

/** A result ready for Complete: the record as JSON text, and a bound of its UTF-8 bytes. */
export interface ReadyResult {
  readonly leaseToken: string;
  readonly resultJson: string;
  /** At least the UTF-8 bytes of resultJson: exact for a large record, 3 per UTF-16 unit for a small one. */
  readonly jsonBytes: number;
}

/**
 * The result record of what make returned: an object, made JSON (Dates
 * become strings, undefined members disappear); nothing means `{}`.
 * Anything else, or a record over the server's size limit, is an
 * InvalidArgumentError, recorded as the job's failure.
 */
export function toReadyResult(leaseToken: string, v: unknown): ReadyResult {
  if (v === undefined) return { leaseToken, resultJson: "{}", jsonBytes: 2 };
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvalidArgumentError(`make must return an object (the result record) or nothing; it returned ${Array.isArray(v) ? "an array" : String(v)}`);
  }
  let json: string;
  try {
    json = JSON.stringify(v);
  } catch (err) {
    throw new InvalidArgumentError(`make's result record is not JSON-able: ${(err as Error).message}`, { cause: err });
  }
  // UTF-8 takes at most 3 bytes per UTF-16 unit: only a record that might be over the limit is measured.
  const jsonBytes = json.length * 3 <= MAX_RESULT_JSON_BYTES ? json.length * 3 : Buffer.byteLength(json, "utf8");
  if (jsonBytes > MAX_RESULT_JSON_BYTES) {
    throw new InvalidArgumentError(
      `make's result record is ${jsonBytes} bytes as JSON; the server takes at most ${MAX_RESULT_JSON_BYTES} (store large data elsewhere and return a reference)`,
    );
  }
  return { leaseToken, resultJson: json, jsonBytes };
}

/** Fail; false when the lease was already lost (another worker has the key, nothing recorded). */
async function fail(o: LoopOptions, leaseToken: string, errorMessage: string, errorStack: string): Promise<boolean> {
  try {
    await o.rpc.fail({ table: o.table, leaseToken, errorMessage, errorStack });
    return true;
  } catch (err) {
    if (err instanceof LeaseLostError) return false;
    throw err;
  }
}

/**
 * Completes in calls the server accepts (completeBatches); on LeaseLostError drops the lost leases
 * (named by the error's detail) and commits the rest. Answers results
 * committed (including ones an identical earlier call committed).
 *
 * A server that stays unreachable past rpc's retries (about 12 s) is waited
 * for, for as long as the leases could still be current (one lease length):
 * giving up would throw away computed results and, once the release reached
 * the restarted server, make those keys again. A server stopped with its
 * 10 s drain and started again took longer than the retries on the loaded
 * dev machine (worker-cli.test.ts, keys made twice before this).
 */
async function complete(o: LoopOptions, completions: readonly ReadyResult[], columnResults: boolean): Promise<number> {
  const until = Date.now() + (o.leaseDurationS ?? LEASE_DURATION_S) * 1000;
  let committed = 0;
  for (let batch of completeBatches(completions, columnResults)) {
    while (batch.length > 0) {
      try {
        // A message literal: the client's create() takes it as it is instead of copying every completion by reflection.
        const request: CompleteRequest = {
          $typeName: "populus.v1.CompleteRequest",
          table: o.table,
          completions: columnResults
            ? []
            : batch.map(
                ({ leaseToken, resultJson }): Completion => ({ $typeName: "populus.v1.Completion", leaseToken, result: JSON.parse(resultJson) as JsonObject }),
              ),
          keepCompleted: o.keepCompleted,
          leaseTokens: [],
          resultsJson: columnResults ? `[${batch.map((c) => c.resultJson).join(",")}]` : "",
        };
        if (columnResults) {
          // The connection speaks binary protobuf (rpc.ts), so the tokens can go pre-encoded (wire-ascii.ts).
          const tokens = batch.map((c) => c.leaseToken);
          const field = asciiListField(CompleteRequestSchema.field.leaseTokens.number, tokens);
          if (field === undefined) request.leaseTokens = tokens;
          else request.$unknown = [field];
        }
        const answer = await o.rpc.complete(request);
        committed += count(answer.committed) + count(answer.alreadyCommitted);
        break;
      } catch (err) {
        if ((err instanceof UnavailableError || err instanceof ResourceExhaustedError) && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        if (!(err instanceof LeaseLostError)) throw err;
        const lost = new Set(err.leaseTokens);
        // Without a detail we cannot tell which lease was lost: commit one at a time.
        if (lost.size === 0) {
          if (batch.length === 1) break;
          for (const one of batch) committed += await complete(o, [one], columnResults);
          break;
        }
        batch = batch.filter((c) => !lost.has(c.leaseToken));
      }
    }
  }
  return committed;
}

/** Results per Complete call (the server's limit), and their wire bytes per call: under the server's 16 MiB request limit, with room for the envelope. */
const COMPLETE_BATCH = 1000;
const COMPLETE_BATCH_BYTES = 15 * 1024 * 1024;
/** Bytes on the wire per JSON byte of a result sent as a Struct (to a server without result_json): small numbers take about 6 times their JSON. */
const STRUCT_WIRE_FACTOR = 6;
/** Bytes on the wire per completion besides its result: the lease token and the framing. */
const COMPLETION_OVERHEAD_BYTES = 128;

/** The completions cut into calls the server accepts: at most COMPLETE_BATCH results and COMPLETE_BATCH_BYTES on the wire each. */
function* completeBatches(completions: readonly ReadyResult[], columnResults: boolean): Generator<ReadyResult[]> {
  let batch: ReadyResult[] = [];
  let bytes = 0;
  for (const c of completions) {
    const wireBytes = (columnResults ? c.jsonBytes : c.jsonBytes * STRUCT_WIRE_FACTOR) + COMPLETION_OVERHEAD_BYTES;
    if (batch.length > 0 && (batch.length === COMPLETE_BATCH || bytes + wireBytes > COMPLETE_BATCH_BYTES)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(c);
    bytes += wireBytes;
  }
  if (batch.length > 0) yield batch;
}

/** Releases every held lease that is not lost (no attempt charged) and forgets them all. */
async function release(o: LoopOptions, held: Map<string, Held>, forget: (tokens: readonly string[]) => void): Promise<void> {
  const all = [...held.keys()];
  const tokens = all.filter((t) => held.get(t)?.lost !== true);
  forget(all);
  for (let i = 0; i < tokens.length; i += 1000) {
    try {
      await o.rpc.release({ table: o.table, leaseTokens: tokens.slice(i, i + 1000) });
    } catch {
      // Unreleased leases expire on their own (leaseDurationS) and come back.
    }
  }
}
