/**
 * The operation driver (server/src/store/operations/operation.ts): one generator of statements
 * runs on the synchronous driver (SQLite) and the asynchronous one (MySQL) alike. The operations
 * themselves are held to the store conformance suite on both dialects; this pins the driver.
 */
import test from "ava";
import {
  type AsyncExecutor,
  type Operation,
  rows,
  run,
  runAsync,
  runSync,
  type Statement,
  type SyncExecutor,
} from "../server/dist/store/operations/operation.js";

/** Reads, then writes depending on what it read, then answers both results. */
function* readThenWrite(): Operation<{ read: unknown[]; changed: number }> {
  const read = yield* rows<{ id: number }>({ sql: "SELECT id FROM t", params: [] });
  const changed = read.length === 0 ? 0 : yield* run({ sql: "UPDATE t SET x = ? WHERE id = ?", params: [1, 10, 2, 20], perRow: 2 });
  return { read, changed };
}

const describe = (kind: string, s: Statement) => `${kind} ${s.sql} [${s.params.join(",")}]${s.perRow === undefined ? "" : ` per ${s.perRow}`}`;

test("runSync and runAsync run each statement once, in order, and hand its result back to the operation", async (t) => {
  const syncLog: string[] = [];
  const sync: SyncExecutor = {
    rows: (s) => {
      syncLog.push(describe("rows", s));
      return [{ id: 1 }];
    },
    run: (s) => {
      syncLog.push(describe("run", s));
      return 2;
    },
  };
  const asyncLog: string[] = [];
  const async: AsyncExecutor = {
    rows: async (s) => {
      asyncLog.push(describe("rows", s));
      return [{ id: 1 }];
    },
    run: async (s) => {
      asyncLog.push(describe("run", s));
      return 2;
    },
  };
  const expected = { read: [{ id: 1 }], changed: 2 };
  t.deepEqual(runSync(readThenWrite(), sync), expected);
  t.deepEqual(await runAsync(readThenWrite(), async), expected);
  t.deepEqual(syncLog, ["rows SELECT id FROM t []", "run UPDATE t SET x = ? WHERE id = ? [1,10,2,20] per 2"]);
  t.deepEqual(asyncLog, syncLog);
});

test("a statement's error leaves the operation at that statement: nothing after it runs", async (t) => {
  const ran: string[] = [];
  const failing: AsyncExecutor = {
    rows: async () => {
      throw new Error("lost connection");
    },
    run: async (s) => {
      ran.push(s.sql);
      return 1;
    },
  };
  await t.throwsAsync(runAsync(readThenWrite(), failing), { message: "lost connection" });
  t.deepEqual(ran, []);
});
