/**
 * Tables this server recently read to hold no job, so that the idle passes of many workers on one
 * drained table share one read: an idle populus-worker refreshes with no keys every --idle-wait,
 * and 1,000 of them on one table were 100 reads a second of an empty table (bench scenario 7).
 *
 * This server's own writes of jobs to a table forget its entry before they run and again after
 * they commit, so a read that raced one is not remembered and no answer here misses a job this
 * server added (recent-reads.ts). A job added through another replica is seen once the entry is
 * EMPTY_ANSWER_MS old: an idle worker then learns of it at most that much later than it would have.
 */
import { RecentReads, type WriteMark } from "./recent-reads.js";

export type { WriteMark };

/** How long a read that found a table without jobs answers for it. */
export const EMPTY_ANSWER_MS = 1000;

export class EmptyTables extends RecentReads<true> {
  constructor() {
    super(EMPTY_ANSWER_MS);
  }

  /** Whether `table` was read to hold no job less than EMPTY_ANSWER_MS before `now`, with no job written here since. */
  known(table: string, now: number): boolean {
    return this.fresh(table, now) !== undefined;
  }

  /** A read of `table` that began at `since` (a mark()) found no job in it at time `now`. */
  override remember(table: string, since: WriteMark, now: number, value: true = true): void {
    super.remember(table, since, now, value);
  }
}
