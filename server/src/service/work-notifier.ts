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
 */
import { EventEmitter } from "node:events";

/** What keeps the change feed reading often while a Reserve waits (ChangeFeed.want). */
export interface ChangeDemand {
  want(): () => void;
}

export class WorkNotifier {
  private readonly events = new EventEmitter();
  /** Notifications so far, per table and for all tables at once. */
  private readonly notified = new Map<string, number>();
  private notifiedAll = 0;
  private waitingNow = 0;

  constructor(
    private readonly recheckMs = 1000,
    private readonly feed: ChangeDemand | null = null,
  ) {
    // One listener per waiting Reserve call; hundreds are normal.
    this.events.setMaxListeners(0);
  }

  /** Reserve calls waiting in wait() now (the populus_reserve_waiting gauge). */
  get waiting(): number {
    return this.waitingNow;
  }

  /** Work may be ready in `table`. */
  notify(table: string): void {
    this.notified.set(table, (this.notified.get(table) ?? 0) + 1);
    this.events.emit(table);
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

  /**
   * Resolves on a notification for `table`, after min(ms, recheckMs), or when
   * signal aborts; at once when `table` was notified since `since` (a mark()).
   */
  wait(table: string, ms: number, signal: AbortSignal, since: number): Promise<void> {
    if (this.mark(table) !== since || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // Work made ready through another replica reaches this one through the feed.
      const unwant = this.feed?.want();
      this.waitingNow++;
      const done = () => {
        this.waitingNow--;
        unwant?.();
        clearTimeout(timer);
        this.events.off(table, done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.min(ms, this.recheckMs));
      this.events.once(table, done);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
