/**
 * The registry of declared tables (`~populus_tables`).
 */
import { type TableRow, toDeclaredTable } from "../row-mapping.js";
import type { DeclaredTable } from "../store.js";
import type { SqlDialect } from "./dialect.js";
import { type Operation, rows, sql } from "./operation.js";

/** A table's definition, or null when it was never declared. */
export function* describeTable(d: SqlDialect, name: string): Operation<DeclaredTable | null> {
  const [row] = yield* rows<TableRow>(sql(`SELECT name, display_name, key_attributes, key_hash, create_time FROM ${d.names.tables} WHERE name = ?`, [name]));
  return row === undefined ? null : toDeclaredTable(row);
}

/** Every declared table, by name. */
export function* listTables(d: SqlDialect): Operation<DeclaredTable[]> {
  const found = yield* rows<TableRow>(sql(`SELECT name, display_name, key_attributes, key_hash, create_time FROM ${d.names.tables} ORDER BY name`));
  return found.map(toDeclaredTable);
}
