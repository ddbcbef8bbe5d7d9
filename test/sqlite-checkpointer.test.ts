/**
 * The SQLite store checkpoints its WAL on a thread of its own (server/src/store/sqlite/checkpointer.ts):
 * a real server's commits reach the database file itself (not only its WAL) without the serving
 * connection checkpointing, which it does only past SERVING_CHECKPOINT_PAGES; a server stops
 * cleanly with it, one SIGKILLed while it copies keeps every acknowledged commit, and a thread
 * that fails hands checkpoints back to the serving connection at SQLite's own threshold.
 */
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import BetterSqlite3 from "better-sqlite3";
import { connect } from "../client-sdk/dist/index.js";
import { ALONE_CHECKPOINT_PAGES, BackgroundCheckpointer, SERVING_CHECKPOINT_PAGES } from "../server/dist/store/sqlite/checkpointer.js";
import { until } from "./helpers/jobs-client.js";
import { startServer } from "./helpers/server-process.js";

const KEYS = 200;

/**
 * Jobs of `table` (its SQL name: snake_case) in the database file alone, as a copy of it without
 * its WAL reads them; -1 when the copy caught a checkpoint half-way (pages copied in page order).
 */
function jobsInDatabaseFile(file: string, table: string): number {
  const dir = mkdtempSync(path.join(tmpdir(), "populus-ckpt-copy-"));
  try {
    const copy = path.join(dir, "main-file-only.db");
    copyFileSync(file, copy);
    const db = new BetterSqlite3(copy, { readonly: true });
    try {
      const exists = db.prepare("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = ?").get(`~~${table}`) as { n: number };
      return exists.n === 0 ? 0 : (db.prepare(`SELECT COUNT(*) AS n FROM "~~${table}"`).get() as { n: number }).n;
    } catch {
      return -1;
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
  // The thread stopped, then the store closed, then the server said so: it did not just run out of work.
  t.is(JSON.parse(server.logs.at(-1) ?? "{}").msg, "stopped");
});

test("a server SIGKILLed mid-refresh, its checkpointer copying, keeps every acknowledged commit and an intact file", async (t) => {
  const { file, server: first } = await serverWithJobs(t, "Acknowledged");
  // 30,000 more keys in three calls of 10,000 (each its own transaction), killed while they go in:
  // each commit changes pages all over the key index, which the thread is busy copying.
  const db = connect({ url: first.url });
  const big = db.table<{ n: number }>("InFlight", { keySource: Array.from({ length: 30_000 }, (_, n) => ({ n })), make: () => ({}) });
  const inFlight = big.jobs.refresh().catch(() => undefined);
  await new Promise((r) => setTimeout(r, 150));
  await first.kill();
  db.close(); // the refresh cut short fails on its own, retrying a server that is gone
  void inFlight;
  const second = await startServer({ database: `sqlite:${file}` });
  const again = connect({ url: second.url });
  t.teardown(() => again.close());
  t.is(Number((await again.jobs("Acknowledged").progress()).pending), KEYS, "every acknowledged job is there");
  const inFlightJobs = Number(
    (
      await again
        .jobs("InFlight")
        .progress()
        .catch(() => ({ pending: 0n }))
    ).pending,
  );
  t.log(`${inFlightJobs} of the 30,000 keys cut short had committed`);
  t.true(inFlightJobs % 10_000 === 0, `whole calls only: ${inFlightJobs} jobs of the refresh cut short`);
  const check = new BetterSqlite3(file, { readonly: true });
  t.is(check.pragma("integrity_check", { simple: true }) as string, "ok");
  check.close();
  t.is(await second.stop(), 0);
});

test("a checkpointer thread that fails puts the serving connection back on SQLite's own checkpoints, and says why", async (t) => {
  const thresholds: number[] = [];
  let checkpointer: BackgroundCheckpointer | undefined;
  const failure = new Promise<Error>((resolve) => {
    checkpointer = new BackgroundCheckpointer(path.join(tmpdir(), "no-such-dir-populus", "populus.db"), (pages) => thresholds.push(pages), resolve);
  });
  t.teardown(() => checkpointer?.stop());
  const err = await failure;
  t.regex(err.message, /directory does not exist|unable to open/i);
  t.deepEqual(thresholds, [SERVING_CHECKPOINT_PAGES, ALONE_CHECKPOINT_PAGES]);
});
