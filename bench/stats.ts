/** Summaries of repeated measurements. */

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
}

export function spread(runs: readonly number[]): Spread {
  const sorted = [...runs].sort((a, b) => a - b);
  return { median: percentile(sorted, 50), min: sorted[0] ?? NaN, max: sorted.at(-1) ?? NaN, runs };
}

/** The p-th percentile (nearest rank) of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** The p-th percentile (nearest rank) of values given as [value, how many] pairs in value order. */
export function percentileOfCounts(counted: readonly (readonly [number, number])[], p: number): number {
  const total = counted.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  let seen = 0;
  for (const [value, n] of counted) {
    seen += n;
    if (seen >= rank) return value;
  }
  return counted.at(-1)![0];
}
