/**
 * Tables this server recently read to hold no job, so that the idle passes of many workers on one
 * drained table share one read: an idle populus-worker refreshes with no keys every --idle-wait,
 * and 1,000 of them on one table were 100 reads a second of an empty table (bench scenario 7).
 *
 * This server's own writes of jobs to a table forget its entry before they run and again after
 * they commit, so a read that raced one is not remembered and no answer here misses a job this
 * server added. A job added through another replica is seen once the entry is EMPTY_ANSWER_MS old:
 * an idle worker then learns of it at most that much later than it would have.
 */

/** How long a read that found a table without jobs answers for it. */
export const EMPTY_ANSWER_MS = 1000;

/** Past this many remembered tables, the oldest entry is dropped (its next idle pass reads again). */
const MAX_TABLES = 10_000;

export class EmptyTables {
  /** Per table, until when (the store clock's ms) its last read's "no job" answers. */
  readonly #until = new Map<string, number>();
  /**
   * Writes of jobs begun or committed so far, to any table: a read remembers its answer only if
   * none came meanwhile (one count for all tables: nothing to evict, and writes of jobs are
   * refreshes with keys and ignores, rare beside idle passes).
   */
  #writes = 0;

  /** Whether `table` was read to hold no job less than EMPTY_ANSWER_MS before `now`, with no job written here since. */
  known(table: string, now: number): boolean {
    const until = this.#until.get(table);
    return until !== undefined && now < until;
  }

  /** Where writes stand: take it before reading, pass it to remember(). */
  mark(): number {
    return this.#writes;
  }

  /** A read that began at mark `since` at time `now` found no job in `table`. */
  remember(table: string, since: number, now: number): void {
    if (this.#writes !== since) return;
    if (this.#until.size >= MAX_TABLES && !this.#until.has(table)) this.#until.delete(this.#until.keys().next().value as string);
    this.#until.set(table, now + EMPTY_ANSWER_MS);
  }

  /** This server is writing jobs to `table`: called before the write and again after its commit. */
  written(table: string): void {
    this.#until.delete(table);
    this.#writes++;
  }
}
