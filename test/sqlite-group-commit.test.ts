/**
 * GroupCommit (server/src/store/sqlite/group-commit.ts) on a real SQLite file: the write
 * transactions asked for in one turn of the event loop commit as one, each member keeps its own
 * outcome, and when SQLite ends the whole transaction every member fails and nothing is written.
 * A second connection on the same file (as a reader in another process would) sees what is
 * committed and nothing before.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";
import BetterSqlite3 from "better-sqlite3";
import { GroupCommit } from "../server/dist/store/sqlite/group-commit.js";

interface Files {
  /** The connection GroupCommit runs on. */
  readonly db: BetterSqlite3.Database;
  /** Another connection on the same file. */
  readonly other: BetterSqlite3.Database;
  readonly groups: GroupCommit;
  /** The rows of `a`, as the other connection reads them. */
  readonly committed: () => number[];
  readonly insert: (x: number | string) => void;
}

function open(t: { teardown: (fn: () => void) => void }, busyTimeoutMs = 5000): Files {
  const dir = mkdtempSync(path.join(tmpdir(), "populus-group-commit-"));
  const file = path.join(dir, "test.db");
  const db = new BetterSqlite3(file, { timeout: busyTimeoutMs });
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE a (x)");
  const other = new BetterSqlite3(file);
  t.teardown(() => {
    db.close();
    other.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const insert = db.prepare("INSERT INTO a VALUES (?)");
  const read = other.prepare("SELECT x FROM a ORDER BY rowid");
  return {
    db,
    other,
    groups: new GroupCommit(db),
    committed: () => read.all().map((r) => (r as { x: number }).x),
    insert: (x) => insert.run(x),
  };
}

test("transactions asked for in one turn commit as one; one asked later is a group of its own", async (t) => {
  const f = open(t);
  let seenByOtherDuringB: number[] | undefined;
  const a = f.groups.run(() => {
    f.insert(1);
    return "a";
  });
  const b = f.groups.run(() => {
    // A's row is written but not committed: B runs in the same transaction.
    seenByOtherDuringB = f.committed();
    t.true(f.db.inTransaction);
    f.insert(2);
    return "b";
  });
  t.deepEqual(f.committed(), [], "nothing runs before the turn ends");
  t.deepEqual(await Promise.all([a, b]), ["a", "b"]);
  t.deepEqual(seenByOtherDuringB, [], "the other connection did not see A's row while B ran");
  t.deepEqual(f.committed(), [1, 2], "both committed once answered");
  t.false(f.db.inTransaction);

  let seenDuringC: number[] | undefined;
  await f.groups.run(() => {
    seenDuringC = f.committed();
    f.insert(3);
  });
  t.deepEqual(seenDuringC, [1, 2], "a later turn's transaction starts after the first group committed");
  t.deepEqual(f.committed(), [1, 2, 3]);
});

test("a member that throws is rolled back alone; the others commit", async (t) => {
  const f = open(t);
  const failure = new Error("B gave up");
  const outcomes = await Promise.allSettled([
    f.groups.run(() => f.insert(1)),
    f.groups.run(() => {
      f.insert(2);
      throw failure;
    }),
    f.groups.run(() => {
      f.insert(3);
      return 3;
    }),
  ]);
  t.deepEqual(
    outcomes.map((o) => o.status),
    ["fulfilled", "rejected", "fulfilled"],
  );
  t.is((outcomes[1] as PromiseRejectedResult).reason, failure, "B gets its own error");
  t.is((outcomes[2] as PromiseFulfilledResult<number>).value, 3);
  t.deepEqual(f.committed(), [1, 3], "B's row is rolled back, A's and C's are committed");
});

test("when SQLite ends the whole transaction (a full database), every member fails and nothing is written", async (t) => {
  const f = open(t);
  const pages = Number(f.db.pragma("page_count", { simple: true }));
  f.db.pragma(`max_page_count = ${pages + 3}`);
  const outcomes = await Promise.allSettled([
    f.groups.run(() => f.insert(1)),
    f.groups.run(() => f.insert("x".repeat(100_000))),
    f.groups.run(() => f.insert(3)),
  ]);
  t.deepEqual(
    outcomes.map((o) => o.status),
    ["rejected", "rejected", "rejected"],
  );
  for (const o of outcomes) t.is(((o as PromiseRejectedResult).reason as { code?: string }).code, "SQLITE_FULL");
  t.deepEqual(f.committed(), [], "not even the member before the full one");
  t.false(f.db.inTransaction);

  // The connection serves the next group.
  f.db.pragma(`max_page_count = ${pages + 1000}`);
  await f.groups.run(() => f.insert(4));
  t.deepEqual(f.committed(), [4]);
});

test("a group that cannot take the write lock fails every member and writes nothing; the next one commits", async (t) => {
  const f = open(t, 20);
  f.other.exec("BEGIN IMMEDIATE");
  const outcomes = await Promise.allSettled([f.groups.run(() => f.insert(1)), f.groups.run(() => f.insert(2))]);
  t.deepEqual(
    outcomes.map((o) => ((o as PromiseRejectedResult).reason as { code?: string } | undefined)?.code),
    ["SQLITE_BUSY", "SQLITE_BUSY"],
  );
  f.other.exec("COMMIT");
  t.deepEqual(f.committed(), []);
  await f.groups.run(() => f.insert(3));
  t.deepEqual(f.committed(), [3]);
});
