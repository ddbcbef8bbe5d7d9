/** Jobs per second over the last minutes, as small bars (drawn from what the Watch stream brought since the page opened). */
import { rateText } from "../format.js";
import type { Throughput } from "../throughput.js";

export interface RateChartProps {
  readonly throughput: Throughput;
  readonly now: number;
  /** Bars shown; each covers `bucketSeconds`. */
  readonly bars?: number;
  readonly bucketSeconds?: number;
  readonly width?: number;
  readonly height?: number;
  /** Writes "5 min ago" and "now" under the bars. */
  readonly axis?: boolean;
}

export function RateChart({ throughput, now, bars = 30, bucketSeconds = 10, width = 150, height = 28, axis = false }: RateChartProps) {
  const rates = throughput.buckets(bars, bucketSeconds * 1000, now);
  const peak = Math.max(0, ...rates.map((r) => r ?? 0));
  const step = width / bars;
  const minutes = (bars * bucketSeconds) / 60;
  const chart = (
    <svg
      class="chart"
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label={`jobs per second over the last ${minutes} minutes, peak ${rateText(peak)}`}
    >
      <title>{`jobs/s, last ${minutes} min (${bucketSeconds} s bars); peak ${rateText(peak)}`}</title>
      <line class="chart-base" x1={0} y1={height - 0.5} x2={width} y2={height - 0.5} />
      {rates.map((r, i) => {
        if (r === null || r <= 0 || peak === 0) return null;
        const h = Math.max(1, (r / peak) * (height - 2));
        return <rect key={i} class="chart-bar" x={i * step + 0.5} y={height - 1 - h} width={Math.max(1, step - 1)} height={h} />;
      })}
    </svg>
  );
  if (!axis) return chart;
  return (
    <div class="chart-with-axis" style={{ width: `${width}px` }}>
      {chart}
      <div class="chart-axis muted small">
        <span>{minutes} min ago</span>
        <span>peak {rateText(peak)}</span>
        <span>now</span>
      </div>
    </div>
  );
}
