/**
 * Watch streams of this replica (promise 5), fed by the change feed.
 *
 * Per watched table the hub keeps one set of counts, read once in a snapshot
 * when the first watcher arrives and then kept current by the count deltas of
 * each change, so a thousand watchers cost one snapshot and no queries per
 * change. A snapshot and the log are read together (store.progressSnapshot),
 * so changes the snapshot already holds are not counted twice.
 *
 * Cursors are change ids. A watcher that resumes after cursor c first gets
 * the table's changes after c read back from the log (catch-up, without
 * counts), then the counts, then live changes; it registers for live changes
 * before reading the log, so nothing falls between the two.
 *
 * A watcher that reads slower than changes arrive is ended with
 * RESOURCE_EXHAUSTED once more than maxQueuedEvents wait for it; it resumes
 * with its last cursor. A counts-only watcher never falls behind: only its
 * latest counts are kept, and sent at most every COUNTS_ONLY_INTERVAL_MS, or
 * less often when so many watch that the replica would otherwise send more
 * than COUNTS_ONLY_MESSAGES_PER_S counts messages a second.
 */
import type { ChangeFeed } from "./change-feed.js";
import type { ChangeRow, CountName, JobEventGroupRecord, JobEventRecord } from "../store/change-log.js";
import type { JobStore, ProgressCounts } from "../store/store.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { CursorExpiredError, InvalidRequestError, LimitExceededError } from "../errors.js";

/**
 * One message of a Watch stream: its changes, with their events one by one or in their stored
 * groups, each worked out on first use. One message object serves every watcher it reaches, so
 * whatever a form costs is paid once per message, not per watcher (job-service.ts caches the
 * encoded response by it too).
 */
export class WatchMessage {
  #events: TimedEvent[] | undefined;
  #groups: TimedGroup[] | undefined;
  #countsOnly: WatchMessage | undefined;

  constructor(
    /** Resume after this change id. */
    readonly cursor: number,
    /** Counts after this message's changes; null in catch-up messages. */
    readonly progress: ProgressCounts | null,
    private readonly changes: readonly ChangeRow[],
  ) {}

  get events(): readonly TimedEvent[] {
    return (this.#events ??= this.changes.flatMap((row) => row.events.map((e) => ({ ...e, changeId: row.id, time: row.time }))));
  }

  get groups(): readonly TimedGroup[] {
    return (this.#groups ??= this.changes.flatMap((row) => row.groups.map((g) => ({ ...g, changeId: row.id, time: row.time }))));
  }

  /** How many job events the message holds. */
  get eventCount(): number {
    let n = 0;
    for (const row of this.changes) for (const g of row.groups) n += g.size;
    return n;
  }

  /** The same message without job events, for counts-only watchers. */
  countsOnly(): WatchMessage {
    if (this.changes.length === 0) return this;
    return (this.#countsOnly ??= new WatchMessage(this.cursor, this.progress, []));
  }

  /** The message without the changes up to `cursor` (a client that resumed from a replica ahead of this one has them). */
  after(cursor: number): WatchMessage {
    const kept = this.changes.filter((row) => row.id > cursor);
    return kept.length === this.changes.length ? this : new WatchMessage(this.cursor, this.progress, kept);
  }
}

export interface TimedEvent extends JobEventRecord {
  /** The change this event is part of. */
  readonly changeId: number;
  /** When the change committed, epoch ms. */
  readonly time: number;
}

export interface TimedGroup extends JobEventGroupRecord {
  /** The change this group is part of. */
  readonly changeId: number;
  /** When the change committed, epoch ms. */
  readonly time: number;
}

export interface WatchOptions {
  /** Resume after this cursor; null starts with a snapshot. */
  readonly cursor: number | null;
  /** Only counts, no job-level events. */
  readonly countsOnly: boolean;
  readonly signal: AbortSignal;
}

export interface WatchHubOptions {
  /** A watcher with more job events than this waiting is ended (RESOURCE_EXHAUSTED). */
  readonly maxQueuedEvents?: number;
  /** Changes read back per catch-up query (each holds up to 1,000 events, or 10,000 for Ignore). */
  readonly catchUpBatch?: number;
}

type Counts = Record<CountName, number>;

/** Longest wait for the feed to reach a new snapshot (it polls every 50 ms). */
const CATCH_UP_WAIT_MS = 5000;

/** Shortest interval between two messages of a counts-only stream (ms). */
export const COUNTS_ONLY_INTERVAL_MS = 250;

/**
 * Counts messages a replica sends per second to all its counts-only streams,
 * at most: past COUNTS_ONLY_INTERVAL_MS × this many streams, each one's
 * interval grows with their number. A message costs the replica about
 * 110 µs of CPU (and its reader about 50 µs), so 500 dashboards at 4 a
 * second took a fifth of a 2-core machine during a drain (bench scenario 5).
 * At 500 a second in all, 490 dashboards each get the newest counts about
 * once a second, and in alternated runs of scenario 5 the watchers' cost fell
 * from about 23% to 18%; up to 125 dashboards still get 4 a second.
 */
export const COUNTS_ONLY_MESSAGES_PER_S = 500;

class Watcher {
  private readonly queue: WatchMessage[] = [];
  private queuedEvents = 0;
  /** Ends next()'s wait for a message: a push, a failure or the abort. */
  private wake: (() => void) | null = null;
  /** Ends next()'s pause between two counts-only messages: the abort only. */
  private endPause: (() => void) | null = null;
  private lastSentAt = 0;
  failure: Error | null = null;
  /**
   * One abort listener for the stream's life, not one per wait: adding and removing a listener on
   * the call's signal for every message took about a tenth of the server's extra CPU with 500
   * watchers in a CPU profile of bench scenario 5.
   */
  private readonly onAbort = () => {
    this.wake?.();
    this.endPause?.();
  };

  /** `countsInterval` answers the current interval between two counts-only messages, ms; `signal` ends the stream. */
  constructor(
    readonly countsOnly: boolean,
    private readonly maxQueuedEvents: number,
    private readonly countsInterval: () => number,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  /** Lets go of the stream's signal once the stream is over. */
  close(): void {
    this.signal.removeEventListener("abort", this.onAbort);
  }

  push(message: WatchMessage): void {
    if (this.failure !== null) return;
    if (this.countsOnly) {
      // Only the newest counts matter to a counts-only watcher.
      this.queue.pop();
      this.queue.push(message.countsOnly());
    } else {
      this.queue.push(message);
      this.queuedEvents += message.eventCount;
      if (this.queuedEvents > this.maxQueuedEvents) {
        this.fail(new LimitExceededError(`this Watch stream fell more than ${this.maxQueuedEvents} events behind; reconnect with the last cursor received`));
      }
    }
    this.wake?.();
  }

  fail(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  /** The next message, or null once the watcher is failed or its signal aborted. */
  async next(): Promise<WatchMessage | null> {
    while (this.queue.length === 0 && this.failure === null && !this.signal.aborted) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
    if (this.countsOnly && this.failure === null && !this.signal.aborted) {
      // Counts-only streams (dashboards, progress bars) get the newest counts at most every
      // countsInterval(): what changes meanwhile folds into one message (push), so hundreds
      // of them cost the replica a bounded number of messages a second, not one per change.
      const wait = this.lastSentAt + this.countsInterval() - Date.now();
      if (wait > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          this.endPause = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.endPause = null;
      }
      this.lastSentAt = Date.now();
    }
    const message = this.queue.shift();
    if (message === undefined) return null;
    if (!this.countsOnly) this.queuedEvents -= message.eventCount;
    return message;
  }
}

/** A watched table: its counts as of `position`, and its watchers. */
class TableState {
  counts: Counts = { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: 0 };
  position = 0;
  /** Changes after the snapshot's position that the snapshot's counts already hold. */
  included = new Set<number>();
  readonly watchers = new Set<Watcher>();
  /** Changes that arrived while the snapshot was being read. */
  early: { rows: ChangeRow[]; position: number }[] | null = [];
  /** Resolves once the snapshot is read and the feed has passed every change it holds. */
  ready!: Promise<void>;
  /** Releases the feed's fast polling this watched table holds (ChangeFeed.want). */
  unwant: () => void = () => undefined;
  /** Called when `included` empties. */
  onCaughtUp: (() => void) | null = null;
}

function sameCounts(c: Counts): ProgressCounts {
  return { ...c };
}

export class WatchHub {
  private readonly tables = new Map<string, TableState>();
  private readonly maxQueuedEvents: number;
  private readonly catchUpBatch: number;
  private readonly stopListening: () => void;
  /** Counts-only streams open on this replica, all tables. */
  private countsOnlyWatchers = 0;

  constructor(
    private readonly store: JobStore,
    private readonly feed: ChangeFeed,
    options: WatchHubOptions = {},
  ) {
    this.maxQueuedEvents = options.maxQueuedEvents ?? 10_000;
    this.catchUpBatch = options.catchUpBatch ?? 20;
    this.stopListening = feed.subscribe((rows, position) => this.onChanges(rows, position));
  }

  /** Watchers connected to this replica, all tables. */
  get watcherCount(): number {
    let n = 0;
    for (const s of this.tables.values()) n += s.watchers.size;
    return n;
  }

  close(): void {
    this.stopListening();
    for (const s of this.tables.values())
      for (const w of s.watchers) w.fail(new ConnectError("the server is shutting down; reconnect with the last cursor", Code.Unavailable));
  }

  /** The messages of one Watch stream of a declared table, until the signal aborts. */
  async *watch(table: string, o: WatchOptions): AsyncGenerator<WatchMessage> {
    if (o.cursor !== null) await this.checkCursor(o.cursor);
    const watcher = new Watcher(
      o.countsOnly,
      this.maxQueuedEvents,
      () => Math.max(COUNTS_ONLY_INTERVAL_MS, Math.ceil((this.countsOnlyWatchers * 1000) / COUNTS_ONLY_MESSAGES_PER_S)),
      o.signal,
    );
    // Registered before the log is read back: every change after `from` reaches this watcher once.
    let state: TableState;
    try {
      state = await this.open(table, watcher);
    } catch (err) {
      watcher.close();
      throw err;
    }
    if (o.countsOnly) this.countsOnlyWatchers++;
    const from = state.position;
    const countsThen = sameCounts(state.counts);
    try {
      let cursor = Math.max(o.cursor ?? from, from);
      if (o.cursor !== null && o.cursor < from && !o.countsOnly) {
        // One message per change, as live: a change holds up to 1,000 events (a whole Reserve or
        // Complete batch), and a message of a whole batch of changes held a million of them.
        for (let after = o.cursor; after < from; ) {
          const rows = (await this.store.readChanges(after, this.catchUpBatch, table)).filter((r) => r.id <= from);
          if (rows.length === 0) break;
          for (const row of rows) {
            yield new WatchMessage(row.id, null, [row]);
            after = row.id;
          }
        }
      }
      yield new WatchMessage(cursor, countsThen, []);
      for (;;) {
        const message = await watcher.next();
        if (message === null) break;
        // A cursor from a replica whose feed is ahead of this one: skip what the client already has.
        if (message.cursor <= cursor) continue;
        const unseen = message.after(cursor);
        cursor = message.cursor;
        yield unseen;
      }
      if (watcher.failure !== null) throw watcher.failure;
    } finally {
      watcher.close();
      if (o.countsOnly) this.countsOnlyWatchers--;
      state.watchers.delete(watcher);
      if (state.watchers.size === 0) this.drop(table, state);
    }
  }

  /** INVALID_ARGUMENT for a cursor past the log's end, OUT_OF_RANGE for one whose changes were pruned. */
  private async checkCursor(cursor: number): Promise<void> {
    const bounds = await this.store.changeBounds();
    if (cursor > bounds.lastId) {
      throw new InvalidRequestError(`cursor "${cursor}" was not issued by this server (the newest change is ${bounds.lastId})`);
    }
    if (cursor < bounds.prunedThrough) {
      throw new CursorExpiredError(`cursor "${cursor}" is older than the kept changes (pruned through ${bounds.prunedThrough}); start again without a cursor`);
    }
  }

  /**
   * The table's state, ready, with `watcher` registered on it. Registered in
   * the same turn as the check that the state is still the table's: the last
   * watcher of a table leaving drops its state, and a watcher added to a
   * dropped state would get its snapshot and then nothing.
   */
  private async open(table: string, watcher: Watcher): Promise<TableState> {
    for (;;) {
      const state = await this.openState(table);
      if (this.tables.get(table) === state) {
        state.watchers.add(watcher);
        return state;
      }
    }
  }

  private async openState(table: string): Promise<TableState> {
    let state = this.tables.get(table);
    if (state === undefined) {
      const created = new TableState();
      state = created;
      this.tables.set(table, created);
      created.unwant = this.feed.want();
      created.position = this.feed.position;
      created.ready = this.store.progressSnapshot(table, created.position).then(
        async (snapshot) => {
          created.counts = { ...snapshot.counts };
          created.included = new Set(snapshot.includedIds);
          const early = created.early ?? [];
          created.early = null;
          for (const e of early) this.apply(created, e.rows, e.position);
          // The counts are ahead of the feed until it delivers the changes the snapshot already
          // holds; watchers start after that, so that a message's counts match its cursor.
          if (created.included.size > 0) {
            await new Promise<void>((resolve) => {
              created.onCaughtUp = resolve;
              setTimeout(resolve, CATCH_UP_WAIT_MS).unref();
            });
          }
        },
        (err: unknown) => {
          if (this.tables.get(table) === created) this.drop(table, created);
          throw err;
        },
      );
    }
    await state.ready;
    return state;
  }

  private drop(table: string, state: TableState): void {
    if (this.tables.get(table) === state) this.tables.delete(table);
    state.unwant();
  }

  /** A change of `table` committed through this replica: when someone watches it, read the log now. */
  committed(table: string): void {
    if (this.tables.has(table)) this.feed.nudge();
  }

  private onChanges(rows: readonly ChangeRow[], position: number): void {
    const byTable = new Map<string, ChangeRow[]>();
    for (const row of rows) {
      if (!this.tables.has(row.table)) continue;
      const list = byTable.get(row.table) ?? [];
      list.push(row);
      byTable.set(row.table, list);
    }
    for (const [table, state] of this.tables) {
      const changed = byTable.get(table) ?? [];
      if (state.early !== null) state.early.push({ rows: changed, position });
      else this.apply(state, changed, position);
    }
  }

  private apply(state: TableState, rows: readonly ChangeRow[], position: number): void {
    for (const row of rows) {
      if (state.included.delete(row.id)) continue;
      for (const [name, n] of Object.entries(row.deltas)) state.counts[name as CountName] += n;
    }
    state.position = position;
    if (state.included.size > 0) for (const id of state.included) if (id <= position) state.included.delete(id);
    if (state.included.size === 0 && state.onCaughtUp !== null) {
      state.onCaughtUp();
      state.onCaughtUp = null;
    }
    if (rows.length === 0) return;
    // One message object per change for all watchers (and one counts-only view of it), so that
    // the service encodes each once however many watch (job-service.ts).
    const message = new WatchMessage(position, sameCounts(state.counts), rows);
    for (const w of state.watchers) w.push(message);
  }
}
