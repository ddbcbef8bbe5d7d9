/**
 * Wakes long-polling Reserve calls when work may have become ready on this
 * replica: a refresh added jobs, leases were released or expired. A waiter
 * also wakes at its deadline and re-checks at least every recheckMs, which
 * covers work that another replica added and jobs whose scheduled time
 * arrives (issue 5 replaces the recheck with tailing the shared event log).
 */
import { EventEmitter } from "node:events";

export class WorkNotifier {
  private readonly events = new EventEmitter();

  constructor(private readonly recheckMs = 1000) {
    // One listener per waiting Reserve call; hundreds are normal.
    this.events.setMaxListeners(0);
  }

  /** Work may be ready in `table`. */
  notify(table: string): void {
    this.events.emit(table);
  }

  /** Work may be ready in any table (e.g. after a lease sweep). */
  notifyAll(): void {
    for (const name of this.events.eventNames()) this.events.emit(name);
  }

  /** Resolves on a notification for `table`, after min(ms, recheckMs), or when signal aborts. */
  wait(table: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
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
