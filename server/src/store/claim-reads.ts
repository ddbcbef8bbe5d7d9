/**
 * Refresh claims this server recently read, so that the held-back asks of many looping workers
 * share one read: 1,000 idle populus-workers ask every 10 s, and all but one a refresh interval are
 * held back (bench scenario 7). A read answers held-back asks for CLAIM_READ_MS. Any claim this
 * server writes (takes, ends, renews, gives back, or makes due) forgets the table's read, before
 * the write and after it, and a read that began before a write is not remembered (as in
 * empty-tables.ts), so no answer here hides this server's own write. A claim taken or ended through
 * another replica is seen once the read is CLAIM_READ_MS old: a held-back worker learns of it at
 * most that much later. A claim is never granted from here.
 */
import type { ClaimState } from "./operations/refresh-claims.js";

/** How long a read of a claim answers held-back asks. */
export const CLAIM_READ_MS = 1000;

/** Past this many tables, the oldest read is dropped, or the write counts start over. */
const MAX_TABLES = 10_000;

/** Where a table's claim writes stood when a read began (ClaimReads.mark). */
export interface ClaimWriteMark {
  readonly epoch: number;
  readonly writes: number;
}

/** The claim reads of one server, per table. */
export class ClaimReads {
  readonly #reads = new Map<string, { state: ClaimState; until: number }>();
  /** Per table, claim writes begun or done so far: a read is remembered only if none came meanwhile. */
  readonly #writes = new Map<string, number>();
  /** Bumped whenever #writes is cleared to bound it, so that no read in flight then is remembered. */
  #epoch = 0;

  /** The table's claim as read less than CLAIM_READ_MS before `now`, if it was. */
  fresh(table: string, now: number): ClaimState | undefined {
    const read = this.#reads.get(table);
    return read !== undefined && now < read.until ? read.state : undefined;
  }

  /** Where the table's claim writes stand: take it before reading, pass it to remember(). */
  mark(table: string): ClaimWriteMark {
    return { epoch: this.#epoch, writes: this.#writes.get(table) ?? 0 };
  }

  /** A read of the table's claim that began at `since` (a mark()), as of `now`. */
  remember(table: string, since: ClaimWriteMark, state: ClaimState, now: number): void {
    const current = this.mark(table);
    if (current.epoch !== since.epoch || current.writes !== since.writes) return;
    if (this.#reads.size >= MAX_TABLES && !this.#reads.has(table)) this.#reads.delete(this.#reads.keys().next().value as string);
    this.#reads.set(table, { state, until: now + CLAIM_READ_MS });
  }

  /** This server is writing the table's claim: called before the write and again after it. */
  written(table: string): void {
    this.#reads.delete(table);
    if (this.#writes.size >= MAX_TABLES && !this.#writes.has(table)) {
      this.#writes.clear();
      this.#epoch++;
    }
    this.#writes.set(table, (this.#writes.get(table) ?? 0) + 1);
  }
}
