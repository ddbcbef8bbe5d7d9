/**
 * Refresh claims this server recently read, so that the held-back asks of many workers share one
 * read: the passes of populate loops, and the looks of idle workers' long-polls, most of them at
 * once when a claim comes due or is given back (bench scenario 7). A read answers held-back asks for CLAIM_READ_MS. Any claim this
 * server writes (takes, ends, renews, gives back, or makes due) is written() before and after, so
 * no answer here hides this server's own write (recent-reads.ts). A claim taken or ended through
 * another replica is seen once the read is CLAIM_READ_MS old: a held-back worker learns of it at
 * most that much later. A claim is never granted from here.
 */
import type { ClaimState } from "./operations/refresh-claims.js";
import { RecentReads } from "./recent-reads.js";

/** How long a read of a claim answers held-back asks. */
export const CLAIM_READ_MS = 1000;

/** The claim reads of one server, per table. */
export class ClaimReads extends RecentReads<ClaimState> {
  constructor() {
    super(CLAIM_READ_MS);
  }
}
