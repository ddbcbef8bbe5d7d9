/**
 * The body of the WAL checkpointer's worker thread (checkpointer.ts): a connection of its own to
 * the store's file, copying the WAL back into the database every `everyMs` with a PASSIVE
 * checkpoint, which neither waits for nor blocks the serving connection's transactions.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";

const { path, everyMs } = workerData as { path: string; everyMs: number };
const db = new Database(path, { timeout: 5000 });
const timer = setInterval(() => db.pragma("wal_checkpoint(PASSIVE)"), everyMs);
parentPort?.on("message", (message) => {
  if (message !== "stop") return;
  clearInterval(timer);
  db.close();
  parentPort?.close();
});
