/**
 * Sending a key source to Refresh (promise 4): the keys go in calls of at
 * most 10,000 (the server's per-call limit) that share one refresh_id, the
 * last one marked final so that stale removal sees every key. The key source
 * is read once, streaming: at most four batches are in memory at a time
 * (two being sent, one held back until the next key shows whether it is the
 * last, one being filled).
 */
import { randomUUID } from "node:crypto";
import { InvalidArgumentError, TableNotFoundError } from "./errors.js";
import { KEYS_PER_CALL, RefreshKeys } from "./keys.js";
import type { JobServiceRpc } from "./rpc.js";
import type { KeySource, KeySourceKeys } from "./table-definition.js";
import { count, durationOf } from "./wire-values.js";

/** Keys per Refresh call: the server's limit (RESOURCE_EXHAUSTED above it). */
export const REFRESH_BATCH = KEYS_PER_CALL;

/** Refresh calls of one refresh in flight at once, past its first, when the server does not say (RefreshResponse.calls_at_once). */
const DEFAULT_CALLS_AT_ONCE = 2;

/** The most calls in flight a server's answer can ask for: each holds up to REFRESH_BATCH keys in memory. */
const MAX_CALLS_AT_ONCE = 8;

/** What a refresh changed, summed over its calls. */
export interface RefreshCounts {
  /** Keys added as pending. */
  added: number;
  /** Stale jobs removed (their key left the key source). */
  removed: number;
  /** Reserved jobs reset by orphanTimeout. */
  orphaned: number;
  /** Kept success jobs re-pended because their key left the target. */
  rePended: number;
}

/** Options of one refresh, all resolved (seconds). */
export interface RefreshParams {
  /** Priority of added jobs, 0-255. */
  readonly priority: number;
  /** Stale removal age, seconds. */
  readonly staleTimeout: number;
  /** Orphan reset age, seconds; undefined for none. */
  readonly orphanTimeout: number | undefined;
  /** Seconds before added jobs may be reserved. */
  readonly delay: number;
}

/** The keys of a key source (calls it when it is a function); InvalidArgumentError for anything else. */
export async function keysOf<K extends object>(source: KeySource<K>): Promise<KeySourceKeys<K>> {
  const keys = typeof source === "function" ? await source() : source;
  if (typeof keys === "object" && keys !== null && (Symbol.asyncIterator in keys || Symbol.iterator in keys)) return keys;
  throw new InvalidArgumentError(
    `keySource must be an array, an iterable or an async iterable of keys, or a function returning one; got ${keys === null ? "null" : typeof keys}`,
  );
}

/** What a refresh did, and what the server said of the table after it. */
export interface RefreshOutcome {
  readonly counts: RefreshCounts;
  /**
   * Whether the table has a pending job after the refresh (due or delayed): false means a populate
   * has nothing to reserve. Undefined when the server does not say (it predates the answer).
   */
  readonly anyPending: boolean | undefined;
}

/**
 * Refreshes `table` with every key of `source`. A table never refreshed and an empty key source answer all zeros.
 * `claimId`: the refresh claim it holds (claimed-refresh.ts), which each call holds on and the final one ends.
 */
export async function refreshKeySource<K extends object>(
  rpc: JobServiceRpc,
  table: string,
  source: KeySource<K>,
  params: RefreshParams,
  claimId = "",
): Promise<RefreshOutcome> {
  const totals: RefreshCounts = { added: 0, removed: 0, orphaned: 0, rePended: 0 };
  let anyPending: boolean | undefined;
  let callsAtOnce = DEFAULT_CALLS_AT_ONCE;
  const refreshId = randomUUID();
  const send = async (keys: RefreshKeys, final: boolean) => {
    const answer = await rpc.refresh({
      table,
      ...keys.fields(),
      // A key source that fits in one call is a refresh of that call alone (no refresh id), which
      // spares the server the bookkeeping that ties several calls together (3 statements a call).
      refreshId: final && !sentFirst ? "" : refreshId,
      final,
      priority: params.priority,
      delay: durationOf(params.delay),
      staleTimeout: durationOf(params.staleTimeout),
      orphanTimeout: params.orphanTimeout === undefined ? undefined : durationOf(params.orphanTimeout),
      claimId,
    });
    totals.added += count(answer.added);
    totals.removed += count(answer.removed);
    totals.orphaned += count(answer.orphaned);
    totals.rePended += count(answer.rePended);
    if (final) anyPending = answer.anyPending;
    if (answer.callsAtOnce > 0) callsAtOnce = Math.min(answer.callsAtOnce, MAX_CALLS_AT_ONCE);
  };
  /*
   * The first call alone (the server fixes the refresh's stale cutoff then),
   * then as many calls at once as its answer says the server's store writes
   * side by side (2 when it does not say), the final one alone after every
   * other has answered (stale removal must see every key). With several at
   * once the server decodes and hashes one call's keys while the database
   * writes another's, or the database writes several (MySQL, each on a
   * connection of its own), and the SDK reads and converts the next batch
   * meanwhile.
   */
  const inFlight = new Set<Promise<void>>();
  /** The first failure of a call in flight: no later call is sent, least of all the final one. */
  let failure: { error: unknown } | undefined;
  const settled = async () => {
    await Promise.allSettled(inFlight);
    if (failure !== undefined) throw failure.error;
  };
  let sentFirst = false;
  /** A call before the last: the first alone, then up to callsAtOnce in flight. */
  const sendMiddle = async (keys: RefreshKeys) => {
    if (!sentFirst) {
      sentFirst = true;
      return send(keys, false);
    }
    while (inFlight.size >= callsAtOnce) await Promise.race(inFlight);
    if (failure !== undefined) throw failure.error;
    const call: Promise<void> = send(keys, false)
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => inFlight.delete(call));
    inFlight.add(call);
  };
  let batch = new RefreshKeys();
  let full: RefreshKeys | undefined; // a full batch waits until we know whether it is the last
  /** Adds a key; answers the call to wait for when a batch was sent. */
  const take = (key: unknown): Promise<void> | undefined => {
    batch.add(key);
    if (batch.length < REFRESH_BATCH) return undefined;
    const ready = full;
    full = batch;
    batch = new RefreshKeys();
    return ready === undefined ? undefined : sendMiddle(ready);
  };
  const keys = await keysOf(source);
  if (Symbol.asyncIterator in keys) {
    for await (const key of keys) await take(key);
  } else {
    // A sync key source is read without an await per key (for await wraps every key in a promise).
    for (const key of keys) {
      const sending = take(key);
      if (sending !== undefined) await sending;
    }
  }
  const last = batch.length === 0 && full !== undefined ? full : batch;
  if (full !== undefined && last !== full) await sendMiddle(full);
  await settled();
  try {
    await send(last, true);
  } catch (err) {
    // An empty key source of a table never declared: nothing to refresh.
    if (last.length === 0 && full === undefined && err instanceof TableNotFoundError) return { counts: totals, anyPending: false };
    throw err;
  }
  return { counts: totals, anyPending };
}
