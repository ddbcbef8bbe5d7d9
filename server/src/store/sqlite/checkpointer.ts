/**
 * SQLite's WAL checkpoints, off the thread that serves requests.
 *
 * In WAL mode a commit appends the pages it changed to the WAL, and a checkpoint copies them back
 * into the database file. By default the committing connection does that itself, inside the
 * commit, whenever the WAL has passed 1,000 pages (4 MiB): on the one thread that serves every
 * request. A refresh call of 10,000 new keys changes thousands of pages of the key index (keys go
 * in by hash, all over it), so nearly every such commit also ran a checkpoint.
 *
 * Here a worker thread with a connection of its own checkpoints every CHECKPOINT_EVERY_MS
 * (backing off to CHECKPOINT_IDLE_EVERY_MS while nothing is written), PASSIVE: it copies what the WAL holds without waiting for the writer or holding it up, on the
 * other core. The serving connection still checkpoints itself once the WAL passes
 * SERVING_CHECKPOINT_PAGES: a WAL starts over only after a checkpoint that copied all of it, which
 * a thread racing a busy writer rarely manages, so that bounds the file; what the thread already
 * copied, that checkpoint need not copy again.
 *
 * Bench scenario 2 on SQLite (1,000,000 keys, full mode, 2026-12-05, three runs each): into an
 * empty table 56-72k keys/s before, 88-102k with this; 10% changed 131-154k before, 170-185k.
 */
import { Worker } from "node:worker_threads";

/** How often the thread checkpoints while the WAL changes, ms. */
export const CHECKPOINT_EVERY_MS = 50;

/**
 * The longest wait between the thread's checkpoints while the WAL does not change, ms: twenty
 * checkpoints a second of an unchanged WAL were a third of an idle server's CPU (0.55% of a core).
 */
export const CHECKPOINT_IDLE_EVERY_MS = 1000;

/** WAL pages past which the serving connection checkpoints itself (SQLite's default is 1,000). */
export const SERVING_CHECKPOINT_PAGES = 20_000;

/** The serving connection's threshold without the thread: SQLite's default, short checkpoints. */
export const ALONE_CHECKPOINT_PAGES = 1000;

/** Longest wait for the thread to stop before it is terminated, ms. */
const STOP_WAIT_MS = 10_000;

/**
 * The checkpointer thread of one SQLite file. `setServingThreshold` sets the serving connection's
 * wal_autocheckpoint: raised while the thread runs, back to SQLite's default once it is gone
 * (it failed to start, threw, or exited unasked), so that connection never copies 20,000 pages
 * in one commit; `onFailure` hears why.
 */
export class BackgroundCheckpointer {
  readonly #worker: Worker | null;
  readonly #exited: Promise<void>;
  #stopped = false;

  constructor(path: string, setServingThreshold: (pages: number) => void, onFailure: (err: Error) => void) {
    // Once: a thread that throws also exits with code 1 right after its "error".
    let failed = false;
    const fail = (err: Error) => {
      if (this.#stopped || failed) return;
      failed = true;
      setServingThreshold(ALONE_CHECKPOINT_PAGES);
      onFailure(err);
    };
    let worker: Worker | null = null;
    try {
      worker = new Worker(new URL("./checkpoint-thread.js", import.meta.url), {
        workerData: { path, everyMs: CHECKPOINT_EVERY_MS, idleEveryMs: CHECKPOINT_IDLE_EVERY_MS },
      });
    } catch (err) {
      fail(err instanceof Error ? err : new Error(String(err)));
    }
    this.#worker = worker;
    if (worker === null) {
      this.#exited = Promise.resolve();
      return;
    }
    setServingThreshold(SERVING_CHECKPOINT_PAGES);
    this.#exited = new Promise((resolve) =>
      worker.once("exit", (code) => {
        if (code !== 0) fail(new Error(`the checkpointer thread exited with code ${code}`));
        resolve();
      }),
    );
    worker.on("error", fail);
    // A server that exits without closing its store must not be kept alive by its checkpointer.
    worker.unref();
  }

  /** Stops the thread and closes its connection (terminated if it does not stop within STOP_WAIT_MS). */
  async stop(): Promise<void> {
    if (this.#stopped || this.#worker === null) return;
    this.#stopped = true;
    // Held again while it stops: a process with nothing else left would exit before it has (and
    // before whatever follows this await, such as the server's "stopped" log line).
    this.#worker.ref();
    this.#worker.postMessage("stop"); // a no-op when the thread already ended
    const timer = setTimeout(() => void this.#worker?.terminate(), STOP_WAIT_MS);
    await this.#exited;
    clearTimeout(timer);
  }
}
