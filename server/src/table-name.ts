/**
 * Table names: validated against a strict pattern and stored snake_case
 * ("ProcessedData" → "processed_data"), whose jobs table is "~~processed_data".
 * Only names that pass here ever reach SQL, and the store quotes them too.
 */
import { InvalidRequestError } from "./errors.js";

/** Letters, digits and underscores, starting with a letter, at most 64 characters. */
const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** MySQL identifiers are at most 64 characters and the jobs table adds "~~". */
const STORED_NAME_MAX = 62;

/** A validated table name in both its forms. */
export interface TableName {
  /** As the pipeline wrote it, e.g. "ProcessedData". */
  readonly display: string;
  /** Stored snake_case, e.g. "processed_data". */
  readonly stored: string;
}

/** "ProcessedData" → "processed_data", "HTTPLog2" → "http_log2"; snake_case input is unchanged. */
export function toSnakeCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .toLowerCase();
}

/** Validates a table name; throws InvalidRequestError saying what is allowed. */
export function parseTableName(name: string): TableName {
  if (name === "") throw new InvalidRequestError('table is required (e.g. "ProcessedData")');
  if (!TABLE_NAME.test(name)) {
    throw new InvalidRequestError(
      `table "${name.slice(0, 80)}" is not a valid name; use letters, digits and underscores, starting with a letter, at most 64 characters`,
    );
  }
  const stored = toSnakeCase(name);
  if (stored.length > STORED_NAME_MAX) {
    throw new InvalidRequestError(
      `table "${name}" is stored as "${stored}" (${stored.length} characters); stored names are at most ${STORED_NAME_MAX} characters so that "~~${stored}" fits MySQL's identifier limit`,
    );
  }
  return { display: name, stored };
}
