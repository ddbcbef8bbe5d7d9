/**
 * Conversions between the wire's well-known types and JS values, in one
 * place: uint64 counts (bigint on the wire) become numbers here and nowhere
 * else; Timestamps become Dates; Durations go to and from seconds/ms.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Duration, type DurationSchema, type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";

/**
 * A uint64 count as a number. Counts of jobs and keys stay far below 2^53
 * (a table of a billion jobs is 2^30), so the conversion is exact.
 */
export function count(v: bigint | undefined): number {
  return v === undefined ? 0 : Number(v);
}

/** A Timestamp as a Date; undefined when unset. */
export function dateOf(t: Timestamp | undefined): Date | undefined {
  return t === undefined ? undefined : timestampDate(t);
}

/** A Duration in milliseconds; undefined when unset. */
export function millisecondsOf(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : Number(d.seconds) * 1000 + d.nanos / 1e6;
}

/** A Duration of `s` seconds (fractions kept to the nanosecond). */
export function durationOf(s: number): MessageInitShape<typeof DurationSchema> {
  const whole = Math.trunc(s);
  const nanos = Math.round((s - whole) * 1e9);
  // A fraction within half a nanosecond of 1 rounds up to the next whole second (nanos stays below 1e9).
  return nanos === 1e9 ? { seconds: BigInt(whole + 1), nanos: 0 } : { seconds: BigInt(whole), nanos };
}
