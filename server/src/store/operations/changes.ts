/**
 * The change log's statements (store/change-log.ts says what a change holds).
 */
import { type Change, type ChangeRow, type CountName, parseChangeRow } from "../change-log.js";
import type { ChangeBounds } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, run, type Statement, sql, write } from "./operation.js";

/**
 * Appends a transaction's change to the log, as the transaction's last statement: the
 * auto-increment id is taken as late as possible, so ids commit nearly in order and tailers rarely
 * meet a gap. An empty change writes nothing.
 */
export function* logChange(d: SqlDialect, table: string, change: Change, now: number, countedByPrevious?: CountName): Operation<void> {
  if (change.empty) return;
  const c = change.columns();
  // `countedByPrevious`: that count's delta is the rows the statement just before this one changed,
  // read in SQL, so that this row can go in the same round trip as that statement. The count is
  // then this statement's alone to give: a delta for it in `change` as well would be overwritten.
  // MySQL logs ROW_COUNT() as unsafe for STATEMENT binlogs (a warning per Complete); ROW and MIXED,
  // the default since 5.7, replicate the value written.
  if (countedByPrevious !== undefined && c.deltas.includes(`"${countedByPrevious}"`)) {
    throw new Error(`logChange: the ${countedByPrevious} delta is counted by the previous statement and must not be in the change as well`);
  }
  const deltas = countedByPrevious === undefined ? "?" : `JSON_SET(?, '$.${countedByPrevious}', ${d.previousRowCount})`;
  const statement = d.bind(`INSERT INTO ${d.names.events} (table_name, time, deltas, events) VALUES (?, ?, ${deltas}, ?)`, [table, now, c.deltas, c.events]);
  yield* write(countedByPrevious === undefined ? statement : { ...statement, readsPreviousCount: true });
}

/**
 * The change of a statement that inserted pending jobs and did nothing else, counted in SQL: a row
 * whose `pending` delta is the rows the previous statement changed, written only when it changed
 * any. It goes in the same round trip as that statement, whose count the operation has not read.
 */
export function logInsertedByPrevious(d: SqlDialect, table: string, now: number): Statement {
  const count = d.previousRowCount;
  const statement = d.bind(
    `INSERT INTO ${d.names.events} (table_name, time, deltas, events) SELECT ?, ?, JSON_OBJECT('pending', ${count}), '[]'${d.fromNoTable} WHERE ${count} > 0`,
    [table, now],
  );
  return { ...statement, readsPreviousCount: true };
}

interface ChangeLogRow {
  id: number | string;
  table_name: string;
  time: number | string;
  deltas: string;
  events: string;
}

/** Change rows after `afterId` in id order, at most `limit`, of one table or (null) all. */
export function* readChanges(d: SqlDialect, afterId: number, limit: number, table: string | null): Operation<ChangeRow[]> {
  const found = yield* rows<ChangeLogRow>(
    sql(`SELECT id, table_name, time, deltas, events FROM ${d.names.events} WHERE id > ?${table === null ? "" : " AND table_name = ?"} ORDER BY id LIMIT ?`, [
      afterId,
      ...(table === null ? [] : [table]),
      limit,
    ]),
  );
  return found.map(parseChangeRow);
}

/** The highest change id written (or pruned) and the highest pruned. */
export function* changeBounds(d: SqlDialect): Operation<ChangeBounds> {
  const [row] = yield* rows<{ last_id: string | number | null; pruned: string | number | null }>(
    sql(`SELECT (SELECT MAX(id) FROM ${d.names.events}) AS last_id, (SELECT value FROM ${d.names.meta} WHERE name = 'events_pruned_through') AS pruned`),
  );
  const prunedThrough = Number(row?.pruned ?? 0);
  return { lastId: Math.max(Number(row?.last_id ?? 0), prunedThrough), prunedThrough };
}

/**
 * Deletes change rows written before `before`, statement by statement (not one transaction): the
 * bound is recorded first, so a cursor below it is answered OUT_OF_RANGE even while the deletes
 * run, and the deletes go in chunks so that none holds its locks for long.
 */
export function* pruneChanges(d: SqlDialect, before: number): Operation<number> {
  const [row] = yield* rows<{ through: string | number | null }>(sql(`SELECT MAX(id) AS through FROM ${d.names.events} WHERE time < ?`, [before]));
  if (row?.through == null) return 0;
  const through = Number(row.through);
  yield* run(
    sql(
      `INSERT INTO ${d.names.meta} (name, value) VALUES ('events_pruned_through', ?) ${d.onConflictUpdate("name", `value = ${d.greatest("value", d.inserted("value"))}`)}`,
      [through],
    ),
  );
  let pruned = 0;
  for (let n = -1; n !== 0; pruned += n) n = yield* run(sql(`DELETE FROM ${d.names.events} WHERE id <= ? LIMIT 10000`, [through]));
  return pruned;
}
