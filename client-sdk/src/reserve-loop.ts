/**
 * The reserve loop of one process: reserve a small batch of jobs, run make on
 * each, commit the successes in one Complete, record failures with Fail, and
 * repeat until Reserve answers nothing (or maxCalls is reached, or the loop is
 * told to stop). Held leases are kept alive by a heartbeat thread
 * (heartbeat-thread.ts), off the event loop that runs make, so a CPU-bound
 * make cannot starve it.
 *
 * Outcomes per lease: make returned → committed (counted in successCount) or,
 * when the lease was lost meanwhile, dropped (another worker has the key);
 * make threw → Fail (errorList), or dropped when the lease was lost, or
 * released (no attempt charged) when its signal was aborted because the loop
 * was stopping; never started because the loop stopped → released; still
 * running when the stop's grace period ended → released, and make's promise
 * is no longer waited for.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import type { ResolvedConnectOptions } from "./config.js";
import { InvalidArgumentError, LeaseLostError, ResourceExhaustedError, TableNotFoundError, UnavailableError, WorkerProcessError } from "./errors.js";
import type { Lease } from "./gen/populus/v1/job_service_pb.js";
import { type HeartbeatThread, startHeartbeatThread } from "./heartbeat-thread.js";
import { fromProtoKey, type KeyRecord, type KeyValue, toRestriction } from "./keys.js";
import type { JobServiceRpc } from "./rpc.js";
import type { Make, MakeContext } from "./table-definition.js";
import { count, durationOf } from "./wire-values.js";
import type { WorkerIdentityInfo } from "./worker-identity.js";

/**
 * Jobs reserved per Reserve call: 2 × the makes run at once (one, as in
 * DataJoint), so the next job is already leased when one finishes, while a
 * process never sits on more keys than it is about to compute.
 */
export const RESERVE_BATCH = 2;

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
  /** The options `rpc` was opened with: the heartbeat thread opens its own connection with them. */
  readonly connect: ResolvedConnectOptions;
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

interface Held {
  readonly lease: Lease;
  readonly controller: AbortController;
  lost: boolean;
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
    for (const h of held.values()) h.controller.abort(o.cancel?.reason ?? new Error("the worker is stopping"));
  };
  if (o.signal?.aborted === true) onStop();
  o.signal?.addEventListener("abort", onStop, { once: true });
  o.cancel?.addEventListener("abort", onCancel, { once: true });

  const markLost = (tokens: readonly string[]) => {
    for (const token of tokens) {
      const h = held.get(token);
      if (h === undefined || h.lost) continue;
      h.lost = true;
      h.controller.abort(new LeaseLostError(`the lease of this job was lost (expired and reassigned)`, [token]));
    }
  };
  // Running before the first Reserve, so that no lease waits for it: started
  // once leases were held, it came up too late for 1 s leases on the loaded
  // 2-core dev machine (sdk-heartbeat.test.ts, both dialects at once, load
  // average 6: a lease expired before its first renewal in 1 run of 4).
  const heartbeat: HeartbeatThread = startHeartbeatThread(
    { connect: o.connect, table: o.table, leaseDurationS },
    {
      onLost: markLost,
      onError: (err) => {
        fatal ??= new WorkerProcessError(`the heartbeat thread of ${o.table} failed, so held leases are no longer renewed: ${err.message}`, { cause: err });
        onCancel();
      },
    },
  );
  const forget = (tokens: readonly string[]) => {
    for (const t of tokens) held.delete(t);
    heartbeat.drop(tokens);
  };

  let calls = 0;
  try {
    await heartbeat.ready.catch(() => undefined); // a thread that could not start has set fatal and stopping
    while (!stopping) {
      const want = o.maxCalls === undefined ? RESERVE_BATCH : Math.min(RESERVE_BATCH, o.maxCalls - calls);
      if (want <= 0) break;
      let leases: Lease[];
      try {
        ({ leases } = await o.rpc.reserve({
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
        }));
      } catch (err) {
        // A table that was never refreshed has no jobs: nothing to do.
        if (err instanceof TableNotFoundError) break;
        throw err;
      }
      if (leases.length === 0) break;
      for (const lease of leases) held.set(lease.leaseToken, { lease, controller: new AbortController(), lost: false });
      heartbeat.hold(leases.map((l) => l.leaseToken));
      if (o.cancel?.aborted === true) onCancel();

      const completions: { leaseToken: string; result: JsonObject }[] = [];
      for (const lease of leases) {
        const h = held.get(lease.leaseToken);
        if (h === undefined || h.lost || stopping) continue;
        const key = fromProtoKey(lease.key);
        calls++;
        const ctx: MakeContext<KeyRecord> = {
          key,
          attempt: lease.attempt,
          signal: h.controller.signal,
          progress(fraction, message = "") {
            const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
            heartbeat.progress(lease.leaseToken, clamped, message.slice(0, 255));
          },
        };
        try {
          const outcome = await unlessCancelled(() => o.make(key, ctx), o.cancel);
          // Cancelled: the grace period ended with make still running; its lease is released below.
          if (outcome.done) completions.push({ leaseToken: lease.leaseToken, result: toResultRecord(outcome.value) });
        } catch (err) {
          if (h.lost) {
            forget([lease.leaseToken]); // another worker holds the key now
            continue;
          }
          // make gave up because the loop is stopping: released below, no attempt charged.
          if (h.controller.signal.aborted) continue;
          const message = err instanceof Error ? err.message : String(err);
          const recorded = await fail(o, lease.leaseToken, message, err instanceof Error ? (err.stack ?? "") : "");
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
      result.successCount += await complete(o, completions.filter((c) => held.get(c.leaseToken)?.lost !== true));
      forget(completions.map((c) => c.leaseToken));
      await release(o, held, forget);
    }
  } finally {
    o.signal?.removeEventListener("abort", onStop);
    o.cancel?.removeEventListener("abort", onCancel);
    // Release before the thread stops, so no held lease goes unrenewed meanwhile.
    await release(o, held, forget);
    await heartbeat.stop();
  }
  if (fatal !== undefined) throw fatal;
  return result;
}

/**
 * Runs make (a synchronous throw becomes a rejection) and waits for it, or
 * only until `cancel` aborts: then answers `{ done: false }` and leaves the
 * promise behind (its late rejection is handled by Promise's subscription,
 * never unhandled).
 */
function unlessCancelled<T>(make: () => T | Promise<T>, cancel: AbortSignal | undefined): Promise<{ done: true; value: T } | { done: false }> {
  const work = new Promise<T>((resolve) => resolve(make()));
  if (cancel === undefined) return work.then((value) => ({ done: true, value }));
  if (cancel.aborted) {
    work.catch(() => undefined);
    return Promise.resolve({ done: false });
  }
  return new Promise((resolve, reject) => {
    const onCancel = () => resolve({ done: false });
    cancel.addEventListener("abort", onCancel, { once: true });
    work.then(
      (value) => {
        cancel.removeEventListener("abort", onCancel);
        resolve({ done: true, value });
      },
      (err: unknown) => {
        cancel.removeEventListener("abort", onCancel);
        reject(err);
      },
    );
  });
}

/**
 * The result record of what make returned: an object, made JSON (Dates
 * become strings, undefined members disappear); nothing means `{}`.
 * Anything else is an InvalidArgumentError, recorded as the job's failure.
 */
export function toResultRecord(v: unknown): JsonObject {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new InvalidArgumentError(`make must return an object (the result record) or nothing; it returned ${Array.isArray(v) ? "an array" : String(v)}`);
  }
  try {
    return JSON.parse(JSON.stringify(v)) as JsonObject;
  } catch (err) {
    throw new InvalidArgumentError(`make's result record is not JSON-able: ${(err as Error).message}`, { cause: err });
  }
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
 * Completes in batches of ≤ 1000; on LeaseLostError drops the lost leases
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
async function complete(o: LoopOptions, completions: { leaseToken: string; result: JsonObject }[]): Promise<number> {
  const until = Date.now() + (o.leaseDurationS ?? LEASE_DURATION_S) * 1000;
  let committed = 0;
  for (let i = 0; i < completions.length; i += 1000) {
    let batch = completions.slice(i, i + 1000);
    while (batch.length > 0) {
      try {
        const answer = await o.rpc.complete({ table: o.table, completions: batch, keepCompleted: o.keepCompleted });
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
          for (const one of batch) committed += await complete(o, [one]);
          break;
        }
        batch = batch.filter((c) => !lost.has(c.leaseToken));
      }
    }
  }
  return committed;
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
