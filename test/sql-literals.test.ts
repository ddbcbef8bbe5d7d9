/**
 * server/src/store/mysql/sql-literals.ts: the text MySQL's batch statements carry their values in.
 * The text is pinned character for character here, so that how it is assembled can change (it is
 * on the refresh's per-key path) and what MySQL reads cannot. store-conformance's literal-values
 * test sends awkward values through a real MariaDB.
 */
import test from "ava";
import { escape as escapeSqlValue } from "sql-escaper";
import { bindLiterals, literal, literalList, literalRows } from "../server/dist/store/mysql/sql-literals.js";

test("literalRows writes each row with its values in place of the ?s, rows comma-separated", (t) => {
  // A string that needs an escape is sql-escaper's, which escapes its double quotes too; one that needs none is only quoted.
  const row = "(?, ?, 'pending', ?, ?, 0)";
  const text = literalRows(row, 3, ["h1", '{"id":"1"}', 5, 1733616000123, "h2", '{"id":"it\'s"}', -1, 0.5, "h3", "a\\b", 0, 7]);
  t.is(
    text,
    `('h1', '{"id":"1"}', 'pending', 5, 1733616000123, 0),('h2', '{\\"id\\":\\"it\\'s\\"}', 'pending', -1, 0.5, 0),('h3', 'a\\\\b', 'pending', 0, 7, 0)`,
  );
});

test("literalRows of one row is bindLiterals, and a row count the values do not fill is refused", (t) => {
  t.is(bindLiterals("SET a = ?, b = ? WHERE c = ?", ["x", 2, null]), "SET a = 'x', b = 2 WHERE c = NULL");
  t.throws(() => literalRows("(?, ?)", 2, ["a", "b", "c"]), { message: "sql-literals: 3 values for 2 rows of 2" });
  t.is(literalRows("(?)", 0, []), "");
});

test("literalList writes an IN list: strings quoted, escaped only where needed, numbers, booleans and NULL as such", (t) => {
  t.is(literalList(["a", "b'c", 3, true, false, null, 'say "hi"']), `'a','b\\'c',3,true,false,NULL,'say "hi"'`);
  t.is(literalList([]), "");
  t.is(literalList(["only"]), "'only'");
});

test("every character sql-escaper escapes is escaped as it escapes it, and nothing else is touched", (t) => {
  // Every ASCII character and a few beyond, alone between two letters: a character sql-escaper
  // escapes that sql-literals' own test missed would be written unescaped. Its escape of a double
  // quote is the one difference allowed (sql-literals leaves it: it is literal between single quotes).
  const characters = [...Array.from({ length: 0x80 }, (_, c) => String.fromCharCode(c)), "é", "\u2028", "😀", "\uffff"];
  for (const c of characters) {
    const value = `x${c}y`;
    t.is(literal(value), escapeSqlValue(value).replaceAll('\\"', '"'), JSON.stringify(c));
    t.is(literalList([value, "z"]), `${literal(value)},'z'`);
  }
  t.is(literal('plain ? text " é 😀'), "'plain ? text \" é 😀'");
});

test("a value that is no statement value is refused, not written some way of its own", (t) => {
  t.throws(() => literal(Number.NaN), { message: /NaN is not a finite number/ });
  t.throws(() => literalList([1, Number.POSITIVE_INFINITY]), { message: /Infinity is not a finite number/ });
  t.throws(() => literalRows("(?)", 1, [{} as unknown as string]), { message: /a object is not a statement value/ });
});
