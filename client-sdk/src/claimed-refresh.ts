/**
 * populate's refresh, coordinated across every worker (promise 4): before it
 * reads the key source, populate asks the server for the table's refresh
 * claim (ClaimRefresh). Granted, it refreshes, its calls carrying the claim,
 * and the final call ends the claim; held back (another refresh is running,
 * or one finished less than `refreshInterval` ago), it reads no key source
 * and goes straight to reserving. So fifty looping workers read an expensive
 * key source once, not fifty times.
 *
 * An explicit `jobs.refresh()` claims nothing and is never held back: its
 * caller asked for that refresh.
 */
import { randomUUID } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { PopulusError } from "./errors.js";
import { type RefreshOutcome, type RefreshParams, refreshKeySource } from "./refresh.js";
import type { JobServiceRpc } from "./rpc.js";
import type { KeySource } from "./table-definition.js";
import { durationOf } from "./wire-values.js";

/** What populate's refresh did: refreshed, or held back by another's (and then what the server said of the table). */
export type ClaimedRefreshOutcome =
  | (RefreshOutcome & { readonly heldBack: false })
  | { readonly heldBack: "running" | "recent"; readonly anyPending: boolean | undefined };

/**
 * A table's refresh claim in this process. Its id is the same on every populate, so that a process
 * whose refresh failed with the server unreachable (the claim still held under its id) gets the
 * claim back on its next pass instead of waiting out the claim's timeout; which is also why this
 * process holds back its own second populate while its first one refreshes.
 */
export class RefreshClaim {
  readonly id = randomUUID();
  refreshing = false;
}

/** Refreshes `table` from `source` unless another refresh of it holds the claim or finished within the interval. */
export async function claimedRefresh<K extends object>(
  rpc: JobServiceRpc,
  table: string,
  source: KeySource<K>,
  params: RefreshParams,
  claim: RefreshClaim,
  refreshInterval: number,
): Promise<ClaimedRefreshOutcome> {
  if (claim.refreshing) return { heldBack: "running", anyPending: undefined };
  // Taken before the claim is asked for: two populates of the table in this process would ask under
  // one id, and the server grants a claim again to its own id.
  claim.refreshing = true;
  try {
    let answer: Awaited<ReturnType<JobServiceRpc["claimRefresh"]>>;
    try {
      answer = await rpc.claimRefresh({ table, claimId: claim.id, minInterval: durationOf(refreshInterval) });
    } catch (err) {
      // A server older than refresh claims: refresh as populate always did.
      if (err instanceof PopulusError && err.code === Code.Unimplemented) return { heldBack: false, ...(await refreshKeySource(rpc, table, source, params)) };
      throw err;
    }
    if (!answer.granted) return { heldBack: answer.running ? "running" : "recent", anyPending: answer.anyPending };
    try {
      return { heldBack: false, ...(await refreshKeySource(rpc, table, source, params, claim.id)) };
    } catch (err) {
      // Given back so that the next populate (this one's retry, or another worker's) may refresh at
      // once; if the server cannot be reached either, this process gets the claim back by its id.
      await rpc.abandonRefresh({ table, claimId: claim.id }).catch(() => undefined);
      throw err;
    }
  } finally {
    claim.refreshing = false;
  }
}
