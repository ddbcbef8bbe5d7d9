/** How the console writes numbers, times and durations. */
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

const integer = new Intl.NumberFormat("en-US");

/** 12,345 */
export function countText(n: number | bigint): string {
  return integer.format(n);
}

/** A Timestamp as ms since epoch; undefined when unset. */
export function timeMs(t: Timestamp | undefined): number | undefined {
  return t === undefined ? undefined : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
}

/** A Duration in seconds; undefined when unset. */
export function durationSeconds(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) + d.nanos / 1e9;
}

/** 3 s, 4 min 10 s, 2 h 5 min, 3 d 4 h */
export function spanText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}

/** "12 s ago" from an epoch-ms time, relative to `now`. */
export function agoText(time: number | undefined, now: number): string {
  return time === undefined ? "" : `${spanText((now - time) / 1000)} ago`;
}

/** 14:03:27 in the browser's time zone. */
export function clockText(time: number | undefined): string {
  return time === undefined ? "" : new Date(time).toLocaleTimeString("en-GB", { hour12: false });
}

/** 2026-12-04 14:03:27, for tooltips. */
export function fullTimeText(time: number | undefined): string {
  if (time === undefined) return "";
  const d = new Date(time);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clockText(time)}`;
}

/** 12.5 jobs/s, 0.31 jobs/s */
export function rateText(perSecond: number | undefined): string {
  if (perSecond === undefined) return "…";
  if (perSecond === 0) return "0 jobs/s";
  return `${perSecond >= 10 ? Math.round(perSecond) : perSecond.toFixed(perSecond >= 1 ? 1 : 2)} jobs/s`;
}
