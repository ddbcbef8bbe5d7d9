/**
 * populate's refresh, coordinated across every worker (promise 4): before it
 * reads the key source, populate asks the server for the table's refresh
 * claim (ClaimRefresh). Granted, it refreshes, its calls carrying the claim,
 * and the final call ends the claim; held back (another refresh is running,
 * or one finished less than `refreshInterval` ago), it reads no key source
 * and goes straight to reserving. So fifty looping workers read an expensive
 * key source once, not fifty times.
 *
 * Held back by a running refresh of a table with nothing pending yet (a new
 * table, or one whose work is done), populate waits, up to 30 s, until that
 * refresh has queued jobs or ended, rather than return with nothing done:
 * workers started together on new keys share the work, as when each
 * refreshed. Past 30 s it returns with nothing done (a worker's next pass
 * comes back), so one long refresh does not stall a worker's other tables.
 * A table with jobs pending has work to reserve meanwhile, and populate goes
 * to it at once.
 *
 * An explicit `jobs.refresh()` claims nothing and is never held back: its
 * caller asked for that refresh.
 *
 * An idle worker waits for work with `table.waitForWork()` (waitForWork
 * below): one ClaimRefresh long-poll, which the server answers when a job of
 * the table becomes pending or when the claim comes due and it grants it to
 * this process; the populate that follows then refreshes under that claim
 * (asked again under its own id, it is granted again).
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { PopulusError } from "./errors.js";
import { type RefreshOutcome, type RefreshParams, refreshKeySource } from "./refresh.js";
import type { JobServiceRpc } from "./rpc.js";
import type { KeySource } from "./table-definition.js";
import { durationOf } from "./wire-values.js";

/**
 * How often a claimed refresh renews its claim while it runs: a third of the server's claim timeout
 * (600 s), so that a key source slow to give its first keys keeps the claim. Renewing never takes a
 * claim that is free, so a renewal that crosses the final call does not take it back.
 */
export const CLAIM_KEEPALIVE_MS = 200_000;

/** Renewals at most (an hour): a key source that hangs must not hold the claim forever; it then lapses. */
const MOST_RENEWALS = 18;

/** The longest a populate waits for another's running refresh of a table with nothing pending. */
export const WAIT_AT_MOST_MS = 30_000;

/** The longest min_interval ClaimRefresh takes: a day. */
const MAX_MIN_INTERVAL_S = 86_400;

/** The longest wait of one ClaimRefresh long-poll (the server's bound). */
const MAX_LONG_POLL_MS = 60_000;

/**
 * The claim_timeout of a claim granted to a long-poll: the populate that follows asks for it again
 * at once (and then holds it for the server's default); if its process stopped in between, the
 * claim lapses this soon.
 */
const LONG_POLL_CLAIM_TIMEOUT_S = 60;

/** The first and longest pause between two asks of a populate waiting for another's refresh. */
const WAIT_FIRST_MS = 250;
const WAIT_LONGEST_MS = 5000;

/** What populate's refresh did: refreshed, or held back by another's (and then what the server said of the table). */
export type ClaimedRefreshOutcome =
  | (RefreshOutcome & { readonly heldBack: false })
  | { readonly heldBack: "running" | "recent"; readonly anyPending: boolean | undefined };

/**
 * A table's refresh claim in this process. Its id is the same on every populate, so that a process
 * whose refresh failed with the server unreachable (the claim still held under its id) gets the
 * claim back on its next pass instead of waiting out the claim's timeout; which is also why this
 * process holds back its own second populate while its first one refreshes.
 * @internal
 */
export class RefreshClaim {
  readonly id = randomUUID();
  refreshing = false;
}

type ClaimAnswer = Awaited<ReturnType<JobServiceRpc["claimRefresh"]>>;

/**
 * Refreshes `table` from `source` unless another refresh of it holds the claim or finished within
 * the interval. `signal` ends a wait for another's refresh (held back, as it stood), and so does
 * `waitAtMostMs`.
 */
export async function claimedRefresh<K extends object>(
  rpc: JobServiceRpc,
  table: string,
  source: KeySource<K>,
  params: RefreshParams,
  claim: RefreshClaim,
  refreshInterval: number,
  signal?: AbortSignal,
  waitAtMostMs = WAIT_AT_MOST_MS,
): Promise<ClaimedRefreshOutcome> {
  if (claim.refreshing) return { heldBack: "running", anyPending: undefined };
  // Taken before the claim is asked for: two populates of the table in this process would ask under
  // one id, and the server grants a claim again to its own id.
  claim.refreshing = true;
  try {
    const ask = (minInterval: number) => rpc.claimRefresh({ table, claimId: claim.id, minInterval: durationOf(minInterval) });
    const askedAt = Date.now();
    let answer: ClaimAnswer;
    try {
      answer = await ask(refreshInterval);
    } catch (err) {
      // A server older than refresh claims: refresh as populate always did.
      if (err instanceof PopulusError && err.code === Code.Unimplemented) return { heldBack: false, ...(await refreshKeySource(rpc, table, source, params)) };
      throw err;
    }
    // Waiting for the running refresh: any refresh that finished since this populate first asked
    // will do (held back as recent, with what is pending now); one that was given back or lapsed
    // leaves the claim to this populate.
    for (let pause = WAIT_FIRST_MS; !answer.granted && answer.running && answer.anyPending === false; ) {
      const left = askedAt + waitAtMostMs - Date.now();
      if (left <= 0) break;
      await sleep(Math.min(pause, left), undefined, { signal }).catch(() => undefined);
      if (signal?.aborted === true) break;
      pause = Math.min(pause * 2, WAIT_LONGEST_MS);
      answer = await ask(Math.min(MAX_MIN_INTERVAL_S, Math.max(refreshInterval, (Date.now() - askedAt) / 1000)));
    }
    if (!answer.granted) return { heldBack: answer.running ? "running" : "recent", anyPending: answer.anyPending };
    // A day's min_interval: a server older than `renew` takes this for a plain claim, and answers it
    // "recent" rather than take back a claim that the final call just ended.
    let renewals = 0;
    const renew = () => rpc.claimRefresh({ table, claimId: claim.id, renew: true, minInterval: durationOf(MAX_MIN_INTERVAL_S) }).catch(() => undefined);
    const keepalive = setInterval(() => {
      if (++renewals > MOST_RENEWALS) clearInterval(keepalive);
      else void renew();
    }, CLAIM_KEEPALIVE_MS).unref();
    try {
      return { heldBack: false, ...(await refreshKeySource(rpc, table, source, params, claim.id)) };
    } catch (err) {
      // Given back so that the next populate (this one's retry, or another worker's) may refresh at
      // once; if the server cannot be reached either, this process gets the claim back by its id.
      await rpc.abandonRefresh({ table, claimId: claim.id }).catch(() => undefined);
      throw err;
    } finally {
      clearInterval(keepalive);
    }
  } finally {
    claim.refreshing = false;
  }
}

/**
 * Waits up to `waitS` seconds until `table` has work for a populate: a job pending (answered at once
 * if one is), or the table's refresh due (no refresh within `refreshInterval` seconds, none
 * running), whose claim this process then holds for the populate that follows. True when there is
 * work; false when the wait ended without any, or `signal` aborted it. A server older than the
 * long-poll answers at once, and the rest of each wait is slept here; one older than refresh
 * claims is waited out, then answered true, as a worker slept and tried again before.
 */
export async function waitForWork(
  rpc: JobServiceRpc,
  table: string,
  claim: RefreshClaim,
  refreshInterval: number,
  waitS: number,
  signal?: AbortSignal,
): Promise<boolean> {
  // This process is refreshing the table now: its populate will have work.
  if (claim.refreshing) return true;
  const stopped = () => signal?.aborted === true;
  const until = Date.now() + waitS * 1000;
  for (let left = until - Date.now(); left > 0 && !stopped(); left = until - Date.now()) {
    const waitMs = Math.min(left, MAX_LONG_POLL_MS);
    const askedAt = Date.now();
    let answer: ClaimAnswer;
    try {
      answer = await rpc.claimRefresh(
        {
          table,
          claimId: claim.id,
          minInterval: durationOf(refreshInterval),
          claimTimeout: durationOf(LONG_POLL_CLAIM_TIMEOUT_S),
          wait: durationOf(waitMs / 1000),
        },
        { signal },
      );
    } catch (err) {
      if (stopped()) return false;
      if (!(err instanceof PopulusError && err.code === Code.Unimplemented)) throw err;
      await sleep(left, undefined, { signal }).catch(() => undefined);
      return !stopped();
    }
    if (answer.granted || answer.anyPending === true) return true;
    const early = askedAt + waitMs - Date.now();
    if (early > 0) await sleep(early, undefined, { signal }).catch(() => undefined);
  }
  return false;
}
