/**
 * Whether a refresh must stage its keys for stale removal: only when a job older than its stale
 * cutoff may exist (a pending, error or success job whose key may have left the key source).
 * Shared by both dialects; each passes its own quoted jobs table.
 *
 * The exact question ("any such job created before the cutoff?") has no index to answer it, so
 * asked alone it read the whole jobs table on every refresh call: a bulk enqueue of 20,000 keys in
 * calls of 1,000 spent a fifth of its time there on MariaDB, and more the larger the table. Ids
 * grow with creation time, so the oldest job by id (one primary-key read) settles the common case
 * of a table younger than the stale timeout; only an older table asks the exact question.
 */

/**
 * How much older than the job with the lowest id a job with a higher id can be: a refresh takes
 * its time when the call starts and inserts its rows later (lock waits included), and replicas'
 * clocks differ a little. Generous, since it only decides when the exact scan runs.
 */
export const CREATE_ORDER_SLACK_MS = 5 * 60_000;

/** The creation time of the job with the lowest id, as `create_time`; no row when the table is empty. */
export function oldestJobSql(jobs: string): string {
  return `SELECT create_time FROM ${jobs} ORDER BY id LIMIT 1`;
}

/** The exact question, as one row or none. Params: the stale cutoff. */
export function staleCandidateSql(jobs: string): string {
  return `SELECT 1 AS x FROM ${jobs} WHERE status IN ('pending', 'error', 'success') AND create_time < ? LIMIT 1`;
}

/** False when the oldest job shows that no job can be older than the cutoff; true when the exact question must be asked. */
export function mayHoldStaleJobs(oldestCreateTime: number | undefined, staleCutoff: number): boolean {
  return oldestCreateTime !== undefined && oldestCreateTime < staleCutoff + CREATE_ORDER_SLACK_MS;
}
