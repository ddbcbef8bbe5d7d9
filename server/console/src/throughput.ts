/**
 * Jobs per second and the ETA of a table, from the counts its Watch stream brings: no query of
 * its own. A job is finished when its result commits (target grows) or its make fails (error
 * grows); only growth counts, so deleting errors or computed rows does not read as negative
 * speed. The history starts when the page starts watching.
 */

/** Counts of a table as numbers. */
export interface Counts {
  readonly pending: number;
  readonly reserved: number;
  readonly success: number;
  readonly error: number;
  readonly ignore: number;
  readonly target: number;
}

interface Sample {
  /** ms since epoch */
  readonly time: number;
  /** Jobs finished since watching began. */
  readonly finished: number;
}

/** How much history is kept (ms): the chart shows the last five minutes. */
const KEPT_MS = 10 * 60_000;
/** Rates over less observed time than this are noise (one batch of a hundred in 200 ms is not 500 jobs/s). */
const SHORTEST_WINDOW_MS = 3000;

export class Throughput {
  private readonly samples: Sample[] = [];
  private last: Counts | undefined;
  private finished = 0;

  /** Takes the counts of one Watch message, received at `time`. */
  record(counts: Counts, time = Date.now()): void {
    if (this.last !== undefined) {
      this.finished += Math.max(0, counts.target - this.last.target) + Math.max(0, counts.error - this.last.error);
    }
    this.last = counts;
    this.samples.push({ time, finished: this.finished });
    while (this.samples.length > 2 && (this.samples[1]?.time ?? time) < time - KEPT_MS) this.samples.shift();
  }

  /** Jobs finished up to `time` (the last sample at or before it; 0 before the first). */
  private finishedAt(time: number): number {
    let answer = 0;
    for (const s of this.samples) {
      if (s.time > time) break;
      answer = s.finished;
    }
    return answer;
  }

  /** Jobs per second over the last `windowMs` (or since watching began, if later); undefined while too little was seen. */
  rate(windowMs: number, now = Date.now()): number | undefined {
    const first = this.samples[0];
    if (first === undefined) return undefined;
    const from = Math.max(first.time, now - windowMs);
    const span = now - from;
    if (span < SHORTEST_WINDOW_MS) return undefined;
    return (this.finishedAt(now) - this.finishedAt(from)) / (span / 1000);
  }

  /**
   * Jobs per second in each of `count` buckets of `bucketMs` ending now, oldest first; null for a
   * bucket before watching began.
   */
  buckets(count: number, bucketMs: number, now = Date.now()): (number | null)[] {
    const first = this.samples[0];
    const answer: (number | null)[] = [];
    for (let i = count; i >= 1; i--) {
      const start = now - i * bucketMs;
      const end = start + bucketMs;
      if (first === undefined || end <= first.time) {
        answer.push(null);
        continue;
      }
      const from = Math.max(start, first.time);
      answer.push((this.finishedAt(end) - this.finishedAt(from)) / (bucketMs / 1000));
    }
    return answer;
  }

  /** Seconds until `remaining` jobs are done at the last minute's pace; undefined when unknown (no pace yet, or idle). */
  eta(remaining: number, now = Date.now()): number | undefined {
    const pace = this.rate(60_000, now);
    if (remaining === 0) return 0;
    if (pace === undefined || pace <= 0) return undefined;
    return remaining / pace;
  }
}
