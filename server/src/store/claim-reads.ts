/**
 * Refresh claims this server recently read, so that the held-back asks of many looping workers
 * share one read: 1,000 idle populus-workers ask every 10 s, and all but one a refresh interval are
 * held back (bench scenario 7). A read answers held-back asks for CLAIM_READ_MS; any claim this
 * server writes (takes, ends, renews, gives back, or makes due) forgets the table's read first. A
 * claim taken or ended through another replica is seen once the read is CLAIM_READ_MS old: a
 * held-back worker learns of it at most that much later, and a claim is never granted from here.
 */
import type { ClaimState } from "./operations/refresh-claims.js";

/** How long a read of a claim answers held-back asks. */
export const CLAIM_READ_MS = 1000;

/** Past this many tables, the oldest read is dropped. */
const MAX_TABLES = 10_000;

export class ClaimReads {
  readonly #reads = new Map<string, { state: ClaimState; until: number }>();

  /** The table's claim as read less than CLAIM_READ_MS before `now`, if it was. */
  fresh(table: string, now: number): ClaimState | undefined {
    const read = this.#reads.get(table);
    return read !== undefined && now < read.until ? read.state : undefined;
  }

  /** A read of the table's claim at `now`. */
  remember(table: string, state: ClaimState, now: number): void {
    if (this.#reads.size >= MAX_TABLES && !this.#reads.has(table)) this.#reads.delete(this.#reads.keys().next().value as string);
    this.#reads.set(table, { state, until: now + CLAIM_READ_MS });
  }

  /** This server is writing the table's claim. */
  forget(table: string): void {
    this.#reads.delete(table);
  }
}
