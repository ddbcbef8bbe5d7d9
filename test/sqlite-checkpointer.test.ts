/**
 * The SQLite store checkpoints its WAL on a thread of its own (server/src/store/sqlite/checkpointer.ts):
 * a real server's commits reach the database file itself (not only its WAL) without the serving
 * connection checkpointing, which it does only past SERVING_CHECKPOINT_PAGES, and the thread
 * neither keeps a stopping server alive nor takes a SIGKILLed one's commits with it.
 */
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import BetterSqlite3 from "better-sqlite3";
import { connect } from "../client-sdk/dist/index.js";
import { SERVING_CHECKPOINT_PAGES } from "../server/dist/store/sqlite/checkpointer.js";
import { until } from "./helpers/jobs-client.js";
import { startServer } from "./helpers/server-process.js";

const KEYS = 200;

/** Jobs of `table` (its SQL name: snake_case) in the database file alone, as a copy of it without its WAL reads them. */
function jobsInDatabaseFile(file: string, table: string): number {
  const dir = mkdtempSync(path.join(tmpdir(), "populus-ckpt-copy-"));
  try {
    const copy = path.join(dir, "main-file-only.db");
    copyFileSync(file, copy);
    const db = new BetterSqlite3(copy, { readonly: true });
    try {
      const exists = db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = ?").get(`~~${table}`) as { n: number };
      return exists.n === 0 ? 0 : (db.prepare(`SELECT COUNT(*) AS n FROM "~~${table}"`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A server on a new SQLite file that has refreshed KEYS keys into `table`. */
async function serverWithJobs(t: ExecutionContext, table: string) {
  const dir = mkdtempSync(path.join(tmpdir(), "populus-ckpt-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "populus.db");
  const server = await startServer({ database: `sqlite:${file}` });
  const db = connect({ url: server.url });
  const keys = db.table<{ n: number }>(table, { keySource: Array.from({ length: KEYS }, (_, n) => ({ n })), make: () => ({}) });
  t.is((await keys.jobs.refresh()).added, KEYS);
  db.close();
  return { file, server };
}

test("commits reach the database file by the checkpointer thread, and the server stops with exit 0", async (t) => {
  const { file, server } = await serverWithJobs(t, "Checkpointed");
  // A few dozen pages: far below SERVING_CHECKPOINT_PAGES, so only the thread copies them.
  t.true(SERVING_CHECKPOINT_PAGES >= 1000);
  await until("the jobs are in the database file itself", async () => jobsInDatabaseFile(file, "checkpointed") === KEYS, 10_000, 50);
  t.is(await server.stop(), 0);
});

test("a SIGKILLed server loses no commit with the thread: a new server on the file has every job", async (t) => {
  const { file, server: first } = await serverWithJobs(t, "Killed");
  await first.kill();
  const second = await startServer({ database: `sqlite:${file}` });
  const again = connect({ url: second.url });
  t.teardown(() => again.close());
  const progress = await again.jobs("Killed").progress();
  t.is(Number(progress.pending), KEYS);
  const check = new BetterSqlite3(file, { readonly: true });
  t.is(check.pragma("integrity_check", { simple: true }) as string, "ok");
  check.close();
  t.is(await second.stop(), 0);
});
