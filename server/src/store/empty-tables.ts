/**
 * Tables this server recently read to hold no job, so that the idle passes of many workers on one
 * drained table share one read: a populate loop's pass refreshes with no keys or asks whether any
 * job is pending, and so does each look of an idle worker's long-poll (1,000 polling workers on one
 * table were 100 reads a second of an empty table: bench scenario 7). The change feed forgets a
 * table whose jobs changed through another replica (jobsChangedElsewhere).
 *
 * This server's own writes of jobs to a table forget its entry before they run and again after
 * they commit, so a read that raced one is not remembered and no answer here misses a job this
 * server added (recent-reads.ts). A job added through another replica is seen once the entry is
 * EMPTY_ANSWER_MS old, or sooner when the change feed reports it.
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
