/**
 * The reserve loop of one process: reserve a small batch of jobs, run make on
 * each, commit the successes in one Complete, record failures with Fail, and
 * repeat until Reserve answers nothing (or maxCalls is reached, or the loop is
 * told to stop). Held leases are kept alive by a heartbeat timer in this
 * process (issue 5 moves it off the thread that runs make, so a CPU-bound make
 * cannot starve it).
 *
 * Outcomes per lease: make returned → committed (counted in successCount) or,
 * when the lease was lost meanwhile, dropped (another worker has the key);
 * make threw → Fail (errorList), or dropped when the lease was lost, or
 * released (no attempt charged) when the loop was stopping; never started
 * because the loop stopped → released.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { InvalidArgumentError, LeaseLostError, TableNotFoundError } from "./errors.js";
import type { Lease } from "./gen/populus/v1/job_service_pb.js";
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

/** Lease length asked for, seconds; the heartbeat renews it every third of it. */
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
  /** Aborted: stop reserving, abort running makes' signals, release what is held. */
  readonly signal?: AbortSignal;
  /** Called once with the first failure when suppressErrors is false (a child tells its parent at once). */
  readonly onFailure?: (failure: KeyError) => void;
}

interface Held {
  readonly lease: Lease;
  readonly controller: AbortController;
  lost: boolean;
  progress?: { fraction: number; message: string };
}

/** Runs the loop to its end; rejects only on an RPC error that is not about a lease. */
export async function runReserveLoop(o: LoopOptions): Promise<LoopResult> {
  const result: LoopResult = { successCount: 0, errorList: [] };
  const leaseDurationS = o.leaseDurationS ?? LEASE_DURATION_S;
  const held = new Map<string, Held>();
  let stopping = o.signal?.aborted ?? false;
  const onStop = () => {
    stopping = true;
    for (const h of held.values()) h.controller.abort(new Error("the worker is stopping"));
  };
  o.signal?.addEventListener("abort", onStop, { once: true });

  let beating: Promise<void> | undefined;
  const heartbeat = async () => {
    if (held.size === 0) return;
    const tokens = [...held.keys()];
    const progress = [...held.values()].flatMap((h) =>
      h.progress === undefined ? [] : [{ leaseToken: h.lease.leaseToken, progress: h.progress.fraction, message: h.progress.message }],
    );
    try {
      const answer = await o.rpc.heartbeat({ table: o.table, leaseTokens: tokens, leaseDuration: durationOf(leaseDurationS), progress });
      for (const token of answer.lostLeaseTokens) markLost(token);
    } catch {
      // The next beat tries again; a lease that expires meanwhile shows up
      // as lost there or as LeaseLostError at Complete.
    }
  };
  const markLost = (token: string) => {
    const h = held.get(token);
    if (h === undefined || h.lost) return;
    h.lost = true;
    h.controller.abort(new LeaseLostError(`the lease of this job was lost (expired and reassigned)`, [token]));
  };
  const timer = setInterval(() => {
    beating ??= heartbeat().finally(() => (beating = undefined));
  }, (leaseDurationS * 1000) / 3);
  timer.unref();

  const restriction = toRestriction(o.restriction);
  let calls = 0;
  try {
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
      if (stopping) onStop();

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
            h.progress = { fraction: Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0)), message: message.slice(0, 255) };
          },
        };
        try {
          completions.push({ leaseToken: lease.leaseToken, result: toResultRecord(await o.make(key, ctx)) });
        } catch (err) {
          if (h.lost) {
            held.delete(lease.leaseToken); // another worker holds the key now
            continue;
          }
          if (stopping) continue; // released below, no attempt charged
          const message = err instanceof Error ? err.message : String(err);
          const recorded = await fail(o, lease.leaseToken, message, err instanceof Error ? (err.stack ?? "") : "");
          held.delete(lease.leaseToken);
          if (!recorded) continue;
          const failure = { key, message };
          result.errorList.push(failure);
          if (!o.suppressErrors) {
            result.failure = { ...failure, cause: err };
            o.onFailure?.(failure);
            stopping = true;
            onStop();
          }
        }
      }
      result.successCount += await complete(o, completions.filter((c) => held.get(c.leaseToken)?.lost !== true));
      for (const c of completions) held.delete(c.leaseToken);
      await release(o, held);
    }
  } finally {
    clearInterval(timer);
    o.signal?.removeEventListener("abort", onStop);
    await beating;
    await release(o, held);
  }
  return result;
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
 */
async function complete(o: LoopOptions, completions: { leaseToken: string; result: JsonObject }[]): Promise<number> {
  let committed = 0;
  for (let i = 0; i < completions.length; i += 1000) {
    let batch = completions.slice(i, i + 1000);
    while (batch.length > 0) {
      try {
        const answer = await o.rpc.complete({ table: o.table, completions: batch, keepCompleted: o.keepCompleted });
        committed += count(answer.committed) + count(answer.alreadyCommitted);
        break;
      } catch (err) {
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

/** Releases every held lease (no attempt charged) and forgets them. */
async function release(o: LoopOptions, held: Map<string, Held>): Promise<void> {
  const tokens = [...held.entries()].filter(([, h]) => !h.lost).map(([t]) => t);
  held.clear();
  for (let i = 0; i < tokens.length; i += 1000) {
    try {
      await o.rpc.release({ table: o.table, leaseTokens: tokens.slice(i, i + 1000) });
    } catch {
      // Unreleased leases expire on their own (LEASE_DURATION_S) and come back.
    }
  }
}
