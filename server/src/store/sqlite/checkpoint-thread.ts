/**
 * The body of the WAL checkpointer's worker thread (checkpointer.ts): a connection of its own to
 * the store's file, copying the WAL back into the database every `everyMs` with a PASSIVE
 * checkpoint, which neither waits for nor blocks the serving connection's transactions. While the
 * WAL does not change, the wait doubles up to `idleEveryMs`; the first checkpoint that finds new
 * frames brings it back to `everyMs`.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";

const { path, everyMs, idleEveryMs } = workerData as { path: string; everyMs: number; idleEveryMs: number };
const db = new Database(path, { timeout: 5000 });
let waitMs = everyMs;
/** The WAL's frames as the last checkpoint found them. */
let lastFrames = -1;
let timer: NodeJS.Timeout | undefined;
const checkpoint = () => {
  const [state] = db.pragma("wal_checkpoint(PASSIVE)") as { log: number; checkpointed: number }[];
  const unchanged = state !== undefined && state.log === lastFrames && state.checkpointed === state.log;
  lastFrames = state?.log ?? -1;
  waitMs = unchanged ? Math.min(waitMs * 2, idleEveryMs) : everyMs;
  timer = setTimeout(checkpoint, waitMs);
};
timer = setTimeout(checkpoint, waitMs);
parentPort?.on("message", (message) => {
  if (message !== "stop") return;
  clearTimeout(timer);
  db.close();
  parentPort?.close();
});
