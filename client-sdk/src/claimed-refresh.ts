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
 * (asked again under its own id, it is granted again). A claim granted to a
 * wait whose populate never comes lapses after LONG_POLL_CLAIM_TIMEOUT_S.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { MAX_REFRESH_INTERVAL_S } from "./config.js";
import { PopulusError, UnavailableError } from "./errors.js";
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

/** The longest wait of one ClaimRefresh long-poll (the server's bound). */
const MAX_LONG_POLL_MS = 60_000;

/**
 * The claim_timeout of a claim granted to a long-poll: the populate that follows asks for it again
 * at once (and then holds it for the server's default); if its process stopped in between, the
 * claim lapses this soon.
 */
const LONG_POLL_CLAIM_TIMEOUT_S = 60;

/** A long-poll's call deadline is its wait and this much more. */
const LONG_POLL_DEADLINE_MARGIN_MS = 30_000;

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
      answer = await ask(Math.min(MAX_REFRESH_INTERVAL_S, Math.max(refreshInterval, (Date.now() - askedAt) / 1000)));
    }
    if (!answer.granted) return { heldBack: answer.running ? "running" : "recent", anyPending: answer.anyPending };
    // A day's min_interval: a server older than `renew` takes this for a plain claim, and answers it
    // "recent" rather than take back a claim that the final call just ended.
    let renewals = 0;
    const renew = () => rpc.claimRefresh({ table, claimId: claim.id, renew: true, minInterval: durationOf(MAX_REFRESH_INTERVAL_S) }).catch(() => undefined);
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

/** What a wait for work found: jobs pending, or the table's refresh due (this process holds its claim); null: nothing. */
export type WorkFound = "jobs" | "refresh" | null;

/**
 * How often a wait asks a server that cannot long-poll: one older than ClaimRefresh's wait answers
 * at once (asked again this much later, as an idle worker asked before), one older than refresh
 * claims answers UNIMPLEMENTED (a pass is due this much later), and so does the progress read of a
 * wait without refreshes (autoRefresh off).
 */
export const POLL_WITHOUT_LONG_POLL_MS = 10_000;

/**
 * Waits up to `waitS` seconds until `table` has work for a populate: a job pending (answered at once
 * if one is), or the table's refresh due (no refresh within `refreshInterval` seconds, none
 * running), whose claim this process then holds for the populate that follows. `signal` ends the
 * wait. With `refresh` false (a populate that does not refresh) no claim is asked for: the table's
 * counts are read every POLL_WITHOUT_LONG_POLL_MS until a job is pending.
 */
export async function waitForWork(
  rpc: JobServiceRpc,
  table: string,
  claim: RefreshClaim,
  options: { readonly refresh: boolean; readonly refreshInterval: number; readonly waitS: number; readonly signal?: AbortSignal },
): Promise<WorkFound> {
  const { signal } = options;
  // This process is refreshing the table now: its populate will have work.
  if (claim.refreshing) return "refresh";
  const stopped = () => signal?.aborted === true;
  const pause = (ms: number) => sleep(ms, undefined, { signal }).catch(() => undefined);
  const until = Date.now() + options.waitS * 1000;
  for (let left = until - Date.now(); left > 0 && !stopped(); left = until - Date.now()) {
    if (!options.refresh) {
      const { progress } = await rpc.getProgress({ table }, { signal }).catch((err: unknown) => {
        // A table no one refreshed yet has no jobs to wait for.
        if (err instanceof PopulusError && err.code === Code.NotFound) return { progress: undefined };
        throw err;
      });
      if ((progress?.pending ?? 0n) > 0n) return "jobs";
      await pause(Math.min(left, POLL_WITHOUT_LONG_POLL_MS));
      continue;
    }
    const waitMs = Math.min(left, MAX_LONG_POLL_MS);
    const askedAt = Date.now();
    let answer: ClaimAnswer;
    try {
      answer = await rpc.claimRefresh(
        {
          table,
          claimId: claim.id,
          minInterval: durationOf(options.refreshInterval),
          claimTimeout: durationOf(LONG_POLL_CLAIM_TIMEOUT_S),
          wait: durationOf(waitMs / 1000),
        },
        // The server answers before this deadline; past it, a call whose connection died unnoticed fails.
        { signal, timeoutMs: waitMs + LONG_POLL_DEADLINE_MARGIN_MS },
      );
    } catch (err) {
      if (stopped()) return null;
      if (err instanceof PopulusError && err.code === Code.DeadlineExceeded) {
        // The server answers a long-poll before its deadline: one that never did hangs, or its connection does.
        throw new UnavailableError(
          `${table}: the server did not answer a wait for work within ${Math.round((waitMs + LONG_POLL_DEADLINE_MARGIN_MS) / 1000)} s`,
          {
            cause: err,
          },
        );
      }
      if (!(err instanceof PopulusError && err.code === Code.Unimplemented)) throw err;
      await pause(Math.min(left, POLL_WITHOUT_LONG_POLL_MS));
      return stopped() ? null : "refresh";
    }
    if (answer.granted) return "refresh";
    if (answer.anyPending === true) return "jobs";
    // Answered well before its wait with nothing to do: a server that cannot long-poll.
    const early = askedAt + waitMs - Date.now();
    if (early > 0) await pause(Math.min(early, POLL_WITHOUT_LONG_POLL_MS));
  }
  return null;
}
