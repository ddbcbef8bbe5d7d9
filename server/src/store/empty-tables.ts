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

/** Past this many tables remembered or written, the oldest answer is dropped, or the write counts start over. */
const MAX_TABLES = 10_000;

/** Where a table's writes stood when a read began (EmptyTables.mark). */
export interface WriteMark {
  readonly epoch: number;
  readonly writes: number;
}

export class EmptyTables {
  /** Per table, until when (the store clock's ms) its last read's "no job" answers. */
  readonly #until = new Map<string, number>();
  /** Per table, writes of jobs begun or committed so far: a read remembers its answer only if none came meanwhile. */
  readonly #writes = new Map<string, number>();
  /** Bumped whenever #writes is cleared to bound it, so that no read in flight then is remembered. */
  #epoch = 0;

  /** Whether `table` was read to hold no job less than EMPTY_ANSWER_MS before `now`, with no job written here since. */
  known(table: string, now: number): boolean {
    const until = this.#until.get(table);
    return until !== undefined && now < until;
  }

  /** Where `table`'s writes stand: take it before reading, pass it to remember(). */
  mark(table: string): WriteMark {
    return { epoch: this.#epoch, writes: this.#writes.get(table) ?? 0 };
  }

  /** A read of `table` that began at `since` (a mark()) found no job in it at time `now`. */
  remember(table: string, since: WriteMark, now: number): void {
    const current = this.mark(table);
    if (current.epoch !== since.epoch || current.writes !== since.writes) return;
    if (this.#until.size >= MAX_TABLES && !this.#until.has(table)) this.#until.delete(this.#until.keys().next().value as string);
    this.#until.set(table, now + EMPTY_ANSWER_MS);
  }

  /** This server is writing jobs to `table`: called before the write and again after its commit. */
  written(table: string): void {
    this.#until.delete(table);
    if (this.#writes.size >= MAX_TABLES && !this.#writes.has(table)) {
      this.#writes.clear();
      this.#epoch++;
    }
    this.#writes.set(table, (this.#writes.get(table) ?? 0) + 1);
  }
}
