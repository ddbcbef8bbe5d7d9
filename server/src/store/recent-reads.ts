/**
 * Reads this server made recently, per table, that answer the same question again for a short
 * while: the mechanism of empty-tables.ts (idle passes) and claim-reads.ts (held-back refresh
 * claims). This server's own writes to a table forget its read, before they run and again after
 * they commit, and a read that began before such a write is not remembered: no answer here hides
 * a write this server made. Writes through another replica are seen once the read is `answerMs` old.
 */

/** Past this many tables remembered or written, the oldest read is dropped, or the write counts start over. */
const MAX_TABLES = 10_000;

/** Where a table's writes stood when a read began (RecentReads.mark). */
export interface WriteMark {
  readonly epoch: number;
  readonly writes: number;
}

export class RecentReads<T> {
  /** Per table, what its last read found, until when (the store clock's ms). */
  readonly #reads = new Map<string, { value: T; until: number }>();
  /** Per table, writes begun or committed so far: a read remembers its answer only if none came meanwhile. */
  readonly #writes = new Map<string, number>();
  /** Bumped whenever #writes is cleared to bound it, so that no read in flight then is remembered. */
  #epoch = 0;

  /** `answerMs`: how long a read answers for its table. */
  constructor(private readonly answerMs: number) {}

  /** What `table`'s read found, if it was less than answerMs before `now`, with no write here since. */
  fresh(table: string, now: number): T | undefined {
    const read = this.#reads.get(table);
    return read !== undefined && now < read.until ? read.value : undefined;
  }

  /** Where `table`'s writes stand: take it before reading, pass it to remember(). */
  mark(table: string): WriteMark {
    return { epoch: this.#epoch, writes: this.#writes.get(table) ?? 0 };
  }

  /** A read of `table` that began at `since` (a mark()) found `value` at time `now`. */
  remember(table: string, since: WriteMark, now: number, value: T): void {
    const current = this.mark(table);
    if (current.epoch !== since.epoch || current.writes !== since.writes) return;
    if (this.#reads.size >= MAX_TABLES && !this.#reads.has(table)) this.#reads.delete(this.#reads.keys().next().value as string);
    this.#reads.set(table, { value, until: now + this.answerMs });
  }

  /** This server is writing to `table`: called before the write and again after its commit. */
  written(table: string): void {
    this.#reads.delete(table);
    if (this.#writes.size >= MAX_TABLES && !this.#writes.has(table)) {
      this.#writes.clear();
      this.#epoch++;
    }
    this.#writes.set(table, (this.#writes.get(table) ?? 0) + 1);
  }
}
