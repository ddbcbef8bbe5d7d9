/**
 * Deferred deletes of completed jobs on SQLite, for large tables.
 *
 * A Complete deletes its jobs' rows. Keys are hashed, so each row's entry in the jobs table's
 * key_hash index sits on a page of its own once the table is large, and every page a transaction
 * changes is written whole to the WAL: with 200,000 jobs queued, a Complete of 1,000 jobs wrote
 * about 1,400 pages, half of them for those index entries, and the drain ran at a third of its rate
 * with 20,000 queued. So in a table whose job ids span at least `fromJobs`, a Complete only marks
 * its rows `done` (the row and the ready index change, in id order, where the batch's neighbours
 * are), and the marked rows are deleted later in bulk, sorted by key hash, so that each index page
 * is written once for all the entries it holds. The figures are in ARCHITECTURE.md ("The per-job
 * path"); below the threshold the marking and the later delete cost more than they save.
 *
 * A row marked done is a deleted job to every reader: Progress and ListJobs skip it, refresh inserts
 * its key afresh over it when the key is not computed (onConflictKeepJob), Ignore deletes it first,
 * and every write that changes a job names the status it expects, never `done`. The change log
 * records the Complete as the job leaving, as before. Rows left marked by a server that stopped
 * are deleted by the next one at start.
 */
import type BetterSqlite3 from "better-sqlite3";

/** The status of a completed job whose row waits for its deferred delete (never shown to a client). */
export const DONE_STATUS = "done";

/** Jobs tables whose ids span at least this many get their completed jobs' deletes deferred; --sqlite-defer-deletes-from. */
export const DEFAULT_DEFER_DELETES_FROM = 100_000;

/**
 * Marked rows of one table past which they are deleted at once. Larger purges write each index
 * page for more entries, but hold more rows marked; in the replay, 100,000 and 250,000 were alike.
 */
const PURGE_AT = 100_000;

/** A table's marked rows are deleted this long after its last Complete, ms, however few. */
const PURGE_AFTER_IDLE_MS = 1000;

/** Rows deleted per transaction of a purge: other calls run between them. */
const PURGE_CHUNK = 5000;

export class DeferredDeletes {
  /** Rows marked since the table's last purge began, by quoted jobs table. */
  readonly #marked = new Map<string, number>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  /** Tables being purged, and whether another purge was asked for meanwhile. */
  readonly #purging = new Map<string, boolean>();
  #closed = false;

  constructor(
    readonly fromJobs: number,
    private readonly db: BetterSqlite3.Database,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Whether a Complete on a jobs table whose ids span `span` marks its jobs instead of deleting them. */
  defers(span: number): boolean {
    return span >= this.fromJobs;
  }

  /** `count` jobs of `jobs` were marked done, in a transaction (that may still roll back: a purge then finds fewer). */
  marked(jobs: string, count: number): void {
    const total = (this.#marked.get(jobs) ?? 0) + count;
    this.#marked.set(jobs, total);
    this.#schedule(jobs, total >= PURGE_AT ? 0 : PURGE_AFTER_IDLE_MS);
  }

  /** Deletes every row of `jobs` marked done, in chunks sorted by key hash; a purge asked for meanwhile runs after. */
  async purge(jobs: string): Promise<void> {
    if (this.#purging.has(jobs)) {
      this.#purging.set(jobs, true);
      return;
    }
    this.#purging.set(jobs, false);
    this.#marked.delete(jobs);
    try {
      const { done, chunk } = this.#purgeOf(jobs);
      for (let at = 0; at < done.length && !this.#closed; at += PURGE_CHUNK) {
        await new Promise((resolve) => setImmediate(resolve));
        if (!this.#closed) chunk.immediate(done.slice(at, at + PURGE_CHUNK));
      }
    } catch (err) {
      this.onError(err as Error);
    } finally {
      const again = this.#purging.get(jobs) === true;
      this.#purging.delete(jobs);
      if (again && !this.#closed) void this.purge(jobs);
    }
  }

  /**
   * Stops: no purge starts, one under way stops after its current chunk, and what this server
   * marked is deleted now, in one transaction per table, so that the file holds no row marked done
   * after a clean stop (a server killed leaves some, which the next one deletes at start).
   */
  close(): void {
    this.#closed = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const jobs of new Set([...this.#marked.keys(), ...this.#purging.keys()])) {
      try {
        const { done, chunk } = this.#purgeOf(jobs);
        chunk.immediate(done);
      } catch (err) {
        this.onError(err as Error);
      }
    }
    this.#marked.clear();
  }

  /** The rows of `jobs` marked done, sorted by key hash, and the transaction that deletes some of them. */
  #purgeOf(jobs: string) {
    const done = this.db.prepare(`SELECT id, key_hash FROM ${jobs} WHERE status = '${DONE_STATUS}'`).all() as { id: number; key_hash: string }[];
    done.sort((a, b) => (a.key_hash < b.key_hash ? -1 : a.key_hash > b.key_hash ? 1 : 0));
    // The status again: refresh may have started the job afresh since.
    const remove = this.db.prepare(`DELETE FROM ${jobs} WHERE id = ? AND status = '${DONE_STATUS}'`);
    const chunk = this.db.transaction((rows: readonly { id: number }[]) => {
      for (const r of rows) remove.run(r.id);
    });
    return { done, chunk };
  }

  #schedule(jobs: string, ms: number): void {
    if (this.#closed) return;
    clearTimeout(this.#timers.get(jobs));
    const timer = setTimeout(() => {
      this.#timers.delete(jobs);
      void this.purge(jobs);
    }, ms);
    timer.unref();
    this.#timers.set(jobs, timer);
  }
}
