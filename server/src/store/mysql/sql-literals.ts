/**
 * Values written into MySQL statement text as literals, for the statements of a thousand rows or
 * keys (multi-row INSERTs, `key_hash IN (...)` lists). mysql2's text protocol sends no bound values:
 * its query() escapes each `?`'s value into the text client-side, with sql-escaper's general
 * format, which scans the statement for placeholders and runs each string through a regular
 * expression. For a refresh of 1,000 keys that was a fifth of the server's CPU (a CPU profile of a
 * 1,000,000-key refresh: format, escapeString and its expression). Here the values are written
 * once in place, and a string that needs no escape (a key hash, most keys' JSON) is only quoted. A
 * batch that also holds statements with `?`s is still scanned by format, which skips quoted text.
 *
 * The escape is sql-escaper's own wherever one is needed, with mysql2's defaults (backslash
 * escapes on; the store refuses a server whose sql_mode turns them off: checkSqlMode). A double
 * quote is left as it is between single quotes, where it is an ordinary character.
 */
import { escape as escapeSqlValue } from "sql-escaper";
import type { Param } from "../operations/operation.js";

/** What sql-escaper escapes inside a quoted string, except the double quote (literal between single quotes). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL and Ctrl-Z are among the characters MySQL's literals escape
const NEEDS_ESCAPE = /[\0\b\t\n\r\x1a'\\]/;

/** One value as a MySQL literal. */
export function literal(value: Param): string {
  switch (typeof value) {
    case "string":
      return NEEDS_ESCAPE.test(value) ? escapeSqlValue(value) : `'${value}'`;
    case "number":
      // Every number a statement carries is finite (ids, times, counts): a NaN would be no literal at all.
      if (!Number.isFinite(value)) throw new Error(`sql-literals: ${value} is not a finite number`);
      return String(value);
    case "boolean":
      return value ? "true" : "false";
    default:
      if (value === null || value === undefined) return "NULL";
      // Not a Param: sql-escaper would have written it some way of its own (a Date, a Buffer, an object's columns).
      throw new Error(`sql-literals: a ${typeof value} is not a statement value`);
  }
}

/** `template` with `params` in place of its `?`s, which must be its only question marks (no quoted one). */
export function bindLiterals(template: string, params: readonly Param[]): string {
  return literalRows(template, 1, params);
}

/** The values as a comma-separated list of literals (an IN list). */
export function literalList(values: readonly Param[]): string {
  const text = new TextPieces(values.length * 4);
  for (let i = 0; i < values.length; i++) {
    if (i > 0) text.add(",");
    text.addLiteral(values[i] as Param);
  }
  return text.joined();
}

/**
 * `count` rows of `row` (a tuple whose only `?`s are its placeholders, e.g. "(?, ?, 'pending', ?)"),
 * comma-separated, with `params` (row after row) in place of the placeholders.
 */
export function literalRows(row: string, count: number, params: readonly Param[]): string {
  const parts = row.split("?");
  const perRow = parts.length - 1;
  if (params.length !== count * perRow) throw new Error(`sql-literals: ${params.length} values for ${count} rows of ${perRow}`);
  const opening = parts[0] as string;
  const nextOpening = `,${opening}`;
  const text = new TextPieces(count * (1 + perRow * 4));
  let p = 0;
  for (let r = 0; r < count; r++) {
    text.add(r === 0 ? opening : nextOpening);
    for (let j = 1; j <= perRow; j++) {
      text.addLiteral(params[p++] as Param);
      text.add(parts[j] as string);
    }
  }
  return text.joined();
}

/**
 * A statement's text as pieces, which one join() writes out flat. Built with `+=` instead, a
 * 1,000-key INSERT was a tree of some 12,000 concatenations, each a heap object, with a quoted copy
 * of every hash and key, all garbage once the tree was flattened (twice: into the round trip's
 * text, and again when mysql2 measured it); the server's collections took 29% of its CPU in a
 * 1,000,000-key refresh. The array is allocated once, for the most pieces the text can have: grown
 * push by push, it would be copied some twenty times, three times its final size in all.
 */
class TextPieces {
  readonly #pieces: string[];
  #count = 0;

  constructor(capacity: number) {
    this.#pieces = new Array<string>(capacity);
  }

  add(piece: string): void {
    this.#pieces[this.#count++] = piece;
  }

  /** `value` as literal() writes it; a string that needs no escape (literal's same test) as itself between quotes, with no copy. */
  addLiteral(value: Param): void {
    if (typeof value === "string" && !NEEDS_ESCAPE.test(value)) {
      this.add("'");
      this.add(value);
      this.add("'");
    } else {
      this.add(literal(value));
    }
  }

  joined(): string {
    this.#pieces.length = this.#count;
    return this.#pieces.join("");
  }
}
