/**
 * A table's counts by status (Progress), alone or in one snapshot with the change log (Watch).
 */
import { toProgressCounts } from "../row-mapping.js";
import type { ProgressCounts } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, sql } from "./operation.js";

/** Counts by status and of the target, read as two statements (not one snapshot). */
export function* progressCounts(d: SqlDialect, table: string): Operation<ProgressCounts> {
  const byStatus = yield* rows<{ status: string; n: string | number }>(sql(`SELECT status, COUNT(*) AS n FROM ${d.jobsTable(table)} GROUP BY status`));
  const [t] = yield* rows<{ n: string | number }>(sql(`SELECT COUNT(*) AS n FROM ${d.targetTable(table)}`));
  return toProgressCounts(byStatus, t?.n ?? 0);
}

/** Run in one read snapshot (the store's): the change ids after afterId that the counts already include. */
export function* progressSnapshot(d: SqlDialect, table: string, afterId: number): Operation<{ counts: ProgressCounts; includedIds: number[] }> {
  const ids = yield* rows<{ id: string | number }>(sql(`SELECT id FROM ${d.names.events} WHERE id > ? AND table_name = ?`, [afterId, table]));
  const counts = yield* progressCounts(d, table);
  return { counts, includedIds: ids.map((r) => Number(r.id)) };
}
