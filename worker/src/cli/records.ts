/**
 * The shapes `--json` prints, documented in the README ("The populus CLI")
 * and held stable: every field always present (null when unset), times as
 * ISO 8601 text, int64 key values as numbers, or as decimal strings beyond
 * 2^53 (where a JSON number would be rounded).
 */
import type { JobRecord, KeyRecord, ProgressCounts, RefreshCounts, TableInfo } from "@populus/sdk";

/** A key as JSON: bigint values (int64 beyond 2^53) as decimal strings. */
export function keyJson(key: KeyRecord): Record<string, string | number | boolean> {
  return Object.fromEntries(Object.entries(key).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
}

/** A key as one line of text: `{"subject_id":3}` (int64 beyond 2^53 written as the exact number). */
export function keyText(key: KeyRecord): string {
  return `{${Object.entries(key)
    .map(([k, v]) => `${JSON.stringify(k)}:${typeof v === "bigint" ? v.toString() : JSON.stringify(v)}`)
    .join(",")}}`;
}

const iso = (d: Date | undefined): string | null => (d === undefined ? null : d.toISOString());

/** The counts of `status --json` (and of each table of `tables --json`). */
export interface CountsJson {
  readonly pending: number;
  readonly reserved: number;
  readonly success: number;
  readonly error: number;
  readonly ignore: number;
  readonly target: number;
  readonly remaining: number;
}

export function countsJson(p: ProgressCounts): CountsJson {
  return { pending: p.pending, reserved: p.reserved, success: p.success, error: p.error, ignore: p.ignore, target: p.target, remaining: p.remaining };
}

/** One table of `tables --json`. */
export function tableJson(t: TableInfo) {
  return {
    name: t.name,
    displayName: t.displayName,
    keyAttributes: t.keyAttributes.map((a) => ({ name: a.name, type: a.type })),
    createTime: iso(t.createTime),
    progress: countsJson(t.progress),
  };
}

/** One job of `jobs --json` and `errors --json`. */
export function jobJson(j: JobRecord) {
  return {
    key: keyJson(j.key),
    status: j.status,
    priority: j.priority,
    attempts: j.attempts,
    createTime: iso(j.createTime),
    scheduledTime: iso(j.scheduledTime),
    reserveTime: iso(j.reserveTime),
    completeTime: iso(j.completeTime),
    durationMs: j.durationMs ?? null,
    leaseExpireTime: iso(j.leaseExpireTime),
    host: j.host,
    pid: j.pid,
    user: j.user,
    workerId: j.workerId,
    codeVersion: j.codeVersion,
    errorMessage: j.errorMessage,
    errorStack: j.errorStack,
    progress: j.progress,
    progressMessage: j.progressMessage,
  };
}

/** One table of `refresh --json`. */
export function refreshJson(table: string, c: RefreshCounts) {
  return { table, added: c.added, removed: c.removed, orphaned: c.orphaned, rePended: c.rePended };
}
