/** A table's jobs as one bar: computed, failed, ignored, running and waiting, in proportion. */
import type { Counts } from "../throughput.js";

export function ProgressBar({ counts, large = false }: { counts: Counts | undefined; large?: boolean }) {
  if (counts === undefined) return <div class={`bar ${large ? "bar-large" : ""} bar-unknown`} />;
  const total = counts.target + counts.pending + counts.reserved + counts.error + counts.ignore;
  const share = (n: number) => (total === 0 ? 0 : (100 * n) / total);
  const done = total === 0 ? 0 : Math.floor((1000 * counts.target) / total) / 10;
  return (
    <div
      class={`bar ${large ? "bar-large" : ""}`}
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={done}
      title={`${done}% computed`}
      data-percent={done}
    >
      <span class="seg seg-target" style={{ width: `${share(counts.target)}%` }} />
      <span class="seg seg-error" style={{ width: `${share(counts.error)}%` }} />
      <span class="seg seg-ignore" style={{ width: `${share(counts.ignore)}%` }} />
      <span class="seg seg-reserved" style={{ width: `${share(counts.reserved)}%` }} />
      <span class="bar-label">{done}%</span>
    </div>
  );
}
