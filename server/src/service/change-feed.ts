/**
 * Tails the shared change log (store/change-log.ts) on this replica. Every
 * replica runs one feed, so a change committed through any replica reaches
 * Watch clients and long-polling Reserve calls on all of them, and nothing
 * depends on one replica's memory: a restarted replica starts again from the
 * log.
 *
 * Ordering: changes are delivered in id order, each exactly once. An id is
 * taken when a transaction inserts its change (its last statement), so a
 * transaction that took id n may commit after one that took n + 1. The feed
 * therefore stops at a gap and waits for it to fill; an id that stays missing
 * for gapTimeoutMs belonged to a transaction that rolled back (a deadlock
 * retry, a failed batch), and the feed moves past it.
 *
 * Demand: the log is read every pollMs only while something here needs
 * changes soon (a watched table, a long-polling Reserve: want()). Otherwise
 * every idlePollMs, so an idle replica does not query its database twenty
 * times a second; the position still advances through every change in order.
 */
import type { Logger } from "pino";
import type { ChangeRow } from "../store/change-log.js";
import type { JobStore } from "../store/store.js";

export interface ChangeFeedOptions {
  /** How often the log is read while something wants changes (ms). */
  readonly pollMs?: number;
  /** How often it is read while nothing does (ms). */
  readonly idlePollMs?: number;
  /** The least time between the starts of two reads, nudged or not (ms). */
  readonly minReadIntervalMs?: number;
  /** How long a missing id holds back later ones before it is taken as rolled back (ms). */
  readonly gapTimeoutMs?: number;
  /** Rows read per query. */
  readonly batchSize?: number;
  readonly logger?: Logger;
}

/** Called with each batch of newly delivered changes and the feed's position after them. */
export type ChangeListener = (rows: readonly ChangeRow[], position: number) => void;

/**
 * Reads of the log start at least this far apart. A busy drain commits a change every few
 * milliseconds; read back to back, each read was one message per event watcher. Spaced, a message
 * carries every change of its interval, at the cost of up to this much more delay.
 */
export const DEFAULT_MIN_READ_INTERVAL_MS = 40;

export class ChangeFeed {
  private positionId = 0;
  private readonly listeners = new Set<ChangeListener>();
  private gap: { after: number; since: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private polling = false;
  private pollAgain = false;
  private readonly pollMs: number;
  private readonly idlePollMs: number;
  /** Holders of want() not yet released. */
  private wanted = 0;
  /** When the pending poll timer fires (performance.now() ms); 0 while none is pending. */
  private timerDue = 0;
  private readonly minReadIntervalMs: number;
  // Monotonic, as every time in this class: a step of the wall clock (NTP) would stretch or cut the spacing and the gap timeout.
  private lastReadAt = Number.NEGATIVE_INFINITY;
  private spacingTimer: NodeJS.Timeout | undefined;
  private readonly gapTimeoutMs: number;
  private readonly batchSize: number;

  constructor(
    private readonly store: JobStore,
    private readonly options: ChangeFeedOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 50;
    this.idlePollMs = options.idlePollMs ?? 1000;
    this.minReadIntervalMs = options.minReadIntervalMs ?? DEFAULT_MIN_READ_INTERVAL_MS;
    this.gapTimeoutMs = options.gapTimeoutMs ?? 2000;
    this.batchSize = options.batchSize ?? 1000;
  }

  /** Every change with an id up to here has been delivered (or given up as rolled back). */
  get position(): number {
    return this.positionId;
  }

  /** Starts at the end of the log: history is read on demand (Watch resume), not replayed. */
  async start(): Promise<void> {
    this.positionId = (await this.store.changeBounds()).lastId;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.spacingTimer);
  }

  /** Listens from the current position on; answers the function that stops listening. */
  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Something needs changes within pollMs from now on, until the answered
   * function is called: the feed polls at pollMs instead of idlePollMs.
   */
  want(): () => void {
    this.wanted++;
    if (this.timerDue > performance.now() + this.pollMs) {
      clearTimeout(this.timer);
      this.schedule();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.wanted--;
    };
  }

  /**
   * Reads the log now instead of at the next tick: a change just committed
   * through this replica reaches its watchers without waiting up to pollMs.
   * Nudges during a read are folded into one more read right after it, and
   * reads start at least minReadIntervalMs apart: each read is one message to
   * every event watcher, so under a busy drain reads back to back made one
   * small message per commit per watcher.
   */
  nudge(): void {
    if (this.stopped || this.spacingTimer !== undefined) return;
    if (this.polling) {
      this.pollAgain = true;
      return;
    }
    clearTimeout(this.timer);
    this.timerDue = 0;
    this.run();
  }

  private schedule(): void {
    if (this.stopped) return;
    const ms = this.wanted > 0 ? this.pollMs : this.idlePollMs;
    this.timerDue = performance.now() + ms;
    this.timer = setTimeout(() => {
      this.timerDue = 0;
      this.run();
    }, ms);
    this.timer.unref();
  }

  private run(): void {
    const wait = this.lastReadAt + this.minReadIntervalMs - performance.now();
    if (wait > 0) {
      this.spacingTimer = setTimeout(() => {
        this.spacingTimer = undefined;
        this.run();
      }, wait);
      this.spacingTimer.unref();
      return;
    }
    this.lastReadAt = performance.now();
    this.polling = true;
    void this.poll().finally(() => {
      this.polling = false;
      if (this.pollAgain && !this.stopped) {
        this.pollAgain = false;
        this.run();
      } else this.schedule();
    });
  }

  /** Reads and delivers what committed since the last poll; a full batch is followed at once by the next. */
  private async poll(): Promise<void> {
    try {
      for (;;) {
        const rows = await this.store.readChanges(this.positionId, this.batchSize, null);
        const delivered = this.inOrder(rows, performance.now());
        if (delivered.length > 0) {
          for (const listener of this.listeners) listener(delivered, this.positionId);
        }
        if (rows.length < this.batchSize || delivered.length === 0) return;
      }
    } catch (err) {
      this.options.logger?.warn({ err }, "reading the change log failed; retrying");
    }
  }

  /** The rows that continue the log without a gap, advancing the position past them. */
  private inOrder(rows: readonly ChangeRow[], now: number): ChangeRow[] {
    const delivered: ChangeRow[] = [];
    for (const row of rows) {
      if (row.id !== this.positionId + 1) {
        if (this.gap?.after !== this.positionId) this.gap = { after: this.positionId, since: now };
        if (now - this.gap.since < this.gapTimeoutMs) break;
        this.options.logger?.debug({ from: this.positionId + 1, to: row.id - 1 }, "change ids never committed; moving past them");
      }
      delivered.push(row);
      this.positionId = row.id;
    }
    return delivered;
  }
}
