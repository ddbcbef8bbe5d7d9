/**
 * Wakes long-polling Reserve calls when work may have become ready on this
 * replica: a refresh added jobs, leases were released or expired, or the
 * change feed saw pending jobs added through another replica. A waiter also
 * wakes at its deadline and re-checks at least every recheckMs, which covers
 * jobs whose scheduled time arrives.
 *
 * A Reserve looks for work and then waits: a notification that comes while
 * it is looking must not be lost (it would then wait for the recheck, up to
 * a second, with work ready). So it takes a mark() before it looks, and
 * wait() returns at once when anything was notified since that mark.
 *
 * An idle worker's ClaimRefresh long-poll waits here too (waitIdle), for
 * longer and more cheaply: it wakes on a notification or at its own time,
 * which a change of its table's refresh claim through this replica moves
 * (claimChanged: a fleet's waiters do not all look when one takes the claim
 * and when its refresh finishes; they learn the next due time from it),
 * with no recheck a second and without speeding up the change feed. Work
 * made ready through another replica still reaches it through the feed's
 * idle read (a second), and the caller computes its own time (when the
 * claim comes due), so a thousand idle workers cost timers, not reads.
 */
import { EventEmitter } from "node:events";

/** What keeps the change feed reading often while a Reserve waits (ChangeFeed.want). */
export interface ChangeDemand {
  want(): () => void;
}

/**
 * A table's idle long-polls, woken together when its claim is freed, look again spread over this
 * long: one takes the claim, and the rest find it taken without a read of their own.
 */
const CLAIM_FREED_SPREAD_MS = 1000;

/** What became of a table's refresh claim through this replica (WorkNotifier.claimChanged). */
export type ClaimChange = { readonly kind: "taken" } | { readonly kind: "finished"; readonly lastRefreshTime: number } | { readonly kind: "freed" };

export class WorkNotifier {
  private readonly events = new EventEmitter();
  /** Refresh claims changed, per table: heard by idle long-polls only (claimChanged). */
  private readonly claimEvents = new EventEmitter();
  /** Notifications so far, per table and for all tables at once. */
  private readonly notified = new Map<string, number>();
  private notifiedAll = 0;
  /** Claim changes so far, per table: counted apart, so that a Reserve does not look again for one. */
  private readonly claimsChanged = new Map<string, number>();
  private waitingNow = 0;
  private idleNow = 0;

  constructor(
    private readonly recheckMs = 1000,
    private readonly feed: ChangeDemand | null = null,
  ) {
    // One listener per waiting Reserve call; hundreds are normal.
    this.events.setMaxListeners(0);
    this.claimEvents.setMaxListeners(0);
  }

  /** Reserve calls waiting in wait() now (the populus_reserve_waiting gauge). */
  get waiting(): number {
    return this.waitingNow;
  }

  /** ClaimRefresh long-polls waiting in waitIdle() now (the populus_refresh_claims_waiting gauge). */
  get idleWaiting(): number {
    return this.idleNow;
  }

  /** Work may be ready in `table`. */
  notify(table: string): void {
    this.notified.set(table, (this.notified.get(table) ?? 0) + 1);
    this.events.emit(table);
  }

  /**
   * `table`'s refresh claim changed through this replica: its idle long-polls reschedule their next
   * look (taken: a refresh runs; finished: the next is due an interval from its finish) without
   * looking, or (freed: given back, or the refresh made due by deleted jobs or computed rows) look
   * again within a spread second, when one of them may be granted it.
   */
  claimChanged(table: string, change: ClaimChange): void {
    this.claimsChanged.set(table, (this.claimsChanged.get(table) ?? 0) + 1);
    this.claimEvents.emit(table, change);
  }

  /** Work may be ready in any table (e.g. after a lease sweep). */
  notifyAll(): void {
    this.notifiedAll++;
    for (const name of this.events.eventNames()) this.events.emit(name);
  }

  /** Where `table`'s notifications stand now: take it before looking for work, pass it to wait(). */
  mark(table: string): number {
    return (this.notified.get(table) ?? 0) + this.notifiedAll;
  }

  /** mark() for waitIdle(), which claim changes reach too. */
  markIdle(table: string): number {
    return this.mark(table) + (this.claimsChanged.get(table) ?? 0);
  }

  /**
   * Resolves on a notification for `table`, after min(ms, recheckMs), or when
   * signal aborts; at once when `table` was notified since `since` (a mark()).
   */
  wait(table: string, ms: number, signal: AbortSignal, since: number): Promise<void> {
    if (this.mark(table) !== since || signal.aborted) return Promise.resolve();
    this.waitingNow++;
    // Work made ready through another replica reaches this one through the feed.
    const unwant = this.feed?.want();
    return this.until(table, Math.min(ms, this.recheckMs), signal).finally(() => {
      this.waitingNow--;
      unwant?.();
    });
  }

  /**
   * Resolves on a notification for `table`, after `ms`, or when signal aborts; at once when either,
   * or a claim change, came since `since` (a markIdle()). On a change of the table's claim,
   * `rescheduled` says how long from then to wait instead, or null to look again (within a spread
   * second: of a table's waiters one reads the claim, and the rest share that read). For waits
   * that may last a minute and need no recheck (see above).
   */
  waitIdle(table: string, ms: number, signal: AbortSignal, since: number, rescheduled: (change: ClaimChange) => number | null): Promise<void> {
    if (this.markIdle(table) !== since || signal.aborted) return Promise.resolve();
    this.idleNow++;
    return this.until(table, ms, signal, rescheduled).finally(() => this.idleNow--);
  }

  /** Resolves on `table`'s notification, after ms, or on abort; a claim change moves the end as `rescheduled` says, if given. */
  private until(table: string, ms: number, signal: AbortSignal, rescheduled?: (change: ClaimChange) => number | null): Promise<void> {
    return new Promise((resolve) => {
      let timer = setTimeout(() => done(), ms);
      const onClaim = (change: ClaimChange) => {
        clearTimeout(timer);
        timer = setTimeout(done, rescheduled?.(change) ?? Math.random() * CLAIM_FREED_SPREAD_MS);
      };
      const done = () => {
        clearTimeout(timer);
        this.events.off(table, done);
        if (rescheduled !== undefined) this.claimEvents.off(table, onClaim);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.events.once(table, done);
      if (rescheduled !== undefined) this.claimEvents.on(table, onClaim);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
