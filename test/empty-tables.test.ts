/**
 * The idle passes' shared read (server/src/store/empty-tables.ts), at exact times: what it answers,
 * for how long, and that a write of jobs begun or committed during a read keeps that read from
 * answering for anyone. The store's use of it is in the conformance suite ("idle passes ...").
 */
import test from "ava";
import { EMPTY_ANSWER_MS, EmptyTables } from "../server/dist/store/empty-tables.js";

test("a read that found no job answers for its table alone, for EMPTY_ANSWER_MS after it", (t) => {
  const empty = new EmptyTables();
  t.false(empty.known("a", 1_000), "nothing is known before a read");
  empty.remember("a", empty.mark("a"), 1_000);
  t.true(empty.known("a", 1_000));
  t.true(empty.known("a", 1_000 + EMPTY_ANSWER_MS - 1));
  t.false(empty.known("a", 1_000 + EMPTY_ANSWER_MS), "at the end of the window the next pass reads again");
  t.false(empty.known("b", 1_000), "another table is not answered for");
});

test("a write of jobs forgets its table, and a read that a write began or committed during is not remembered", (t) => {
  const empty = new EmptyTables();
  empty.remember("a", empty.mark("a"), 0);
  empty.remember("b", empty.mark("b"), 0);
  empty.written("a");
  t.false(empty.known("a", 1), "the written table is read again");
  t.true(empty.known("b", 1), "another table's answer stands");

  // A read in flight while a write of its table begins (or commits) may have missed its jobs.
  const since = empty.mark("a");
  empty.written("a");
  empty.remember("a", since, 2);
  t.false(empty.known("a", 3));
  empty.remember("a", empty.mark("a"), 4);
  t.true(empty.known("a", 5), "a read after the write is remembered");

  // Writes to other tables do not keep a read from answering.
  const other = empty.mark("b");
  empty.written("c");
  empty.remember("b", other, 6);
  t.true(empty.known("b", 7));
});

test("past 10,000 written tables the counts start over, and no read in flight then is remembered", (t) => {
  const empty = new EmptyTables();
  const since = empty.mark("a");
  for (let i = 0; i < 10_001; i++) empty.written(`t${i}`);
  empty.remember("a", since, 0);
  t.false(empty.known("a", 1), "its table's count may have been dropped: the read is not trusted");
  empty.remember("a", empty.mark("a"), 2);
  t.true(empty.known("a", 3));
});
