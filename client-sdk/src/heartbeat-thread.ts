/**
 * The heartbeat of reserve loops, on a `worker_threads` thread with its own
 * connection to the server (promise 3, ARCHITECTURE.md): a make that blocks
 * its event loop with synchronous CPU work for minutes cannot starve the
 * timer that renews its leases. test/sdk-heartbeat.test.ts pins this: a make
 * that busy-loops for three lease lengths keeps its lease and commits once.
 *
 * One thread serves every loop of the process (RenewerThread). Each loop
 * (main side, `ThreadLeaseKeeper`) posts the lease tokens it holds, the ones
 * it let go and per-job progress; the thread renews the held ones every
 * third of the lease length and posts back the ones the server answered as
 * lost, which go to the loop that holds them. A lost lease reaches the loop
 * only when its event loop gets control back, which is soon enough: Complete
 * would answer LeaseLostError for it anyway, and the lease was kept for as
 * long as the server could be reached.
 *
 * The thread runs lease-renewer.ts, which loads nothing but node:http2.
 *
 * @internal Not part of the public API.
 */
import { Worker } from "node:worker_threads";
import type { ResolvedConnectOptions } from "./config.js";
import type { FromRenewer, RenewerScope, ToRenewer } from "./lease-renewer.js";

/** What the loop hears from whatever keeps its leases. */
export interface HeartbeatListener {
  /** Leases the server answered as lost (expired and reassigned, or released). */
  onLost(tokens: readonly string[]): void;
  /** The heartbeat died (its thread could not start, or a bug): its leases are no longer renewed. */
  onError(err: Error): void;
}

/**
 * What a reserve loop hands its leases to: a heartbeat off the loop's own
 * event loop. In one process that is a HeartbeatThread; in a populate child
 * process it is the parent's thread, reached over IPC (populate-heartbeat.ts).
 */
export interface LeaseKeeper {
  /** Resolves once held leases are renewed; rejects when that can never happen. A lease held before then is first renewed a third of a lease after. */
  readonly ready: Promise<void>;
  /** Starts renewing these leases. */
  hold(tokens: readonly string[]): void;
  /** Stops renewing these leases (committed, failed, released or lost). */
  drop(tokens: readonly string[]): void;
  /** Progress of one job, sent with its next renewal. */
  progress(token: string, fraction: number, message: string): void;
  /** Renews nothing more; resolves once that is so. */
  stop(): Promise<void>;
}

/** Starts the lease keeper of one reserve loop, telling `listener` what happens to its leases. */
export type StartLeaseKeeper = (listener: HeartbeatListener) => LeaseKeeper;

/**
 * Which progress reports are worth sending: only when the message changes
 * or the fraction moves by at least 0.001 (or reaches 1), so a make that
 * reports from a tight loop sends at most about a thousand per job instead
 * of one per call.
 */
export class ProgressFilter {
  readonly #sent = new Map<string, { fraction: number; message: string }>();

  /** True when this report should be sent (and it is then remembered as sent). */
  worthSending(token: string, fraction: number, message: string): boolean {
    const last = this.#sent.get(token);
    if (last !== undefined && last.message === message && Math.abs(last.fraction - fraction) < 0.001 && !(fraction === 1 && last.fraction !== 1)) return false;
    this.#sent.set(token, { fraction, message });
    return true;
  }

  forget(tokens: readonly string[]): void {
    for (const t of tokens) this.#sent.delete(t);
  }
}

/**
 * The process's heartbeat thread: started once (by prewarmHeartbeat when a
 * table is defined, or by the first reserve loop that needs it) and kept for
 * the life of the process, unref'd, so that it never keeps the process alive.
 * Booting a thread cost about 90 ms of CPU (a V8 isolate, Node's bootstrap,
 * the renewer's code): one per populate call was a sixth of the CPU of a
 * 5,000-job drain, and a populus-worker paid it again on every pass that
 * found work. A thread that died (it could not load, or a bug) fails the
 * loops it served, and the next loop starts a new one.
 */
class RenewerThread {
  readonly ready: Promise<void>;
  /** Set once the thread is gone; the next loop starts another. */
  dead = false;
  readonly #worker: Worker;
  readonly #keepers = new Map<number, ThreadLeaseKeeper>();
  #lastScope = 0;
  /** Loops waiting for `ready`: the thread keeps the process alive until it runs, for them only. */
  #waiting = 0;
  #running = false;

  constructor() {
    // lease-renewer.js beside this file, or the .ts source under tsx (the thread inherits the
    // process's execArgv, so `--import tsx` too).
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    this.#worker = new Worker(new URL(`./lease-renewer${ext}`, import.meta.url));
    this.#worker.unref();
    let started: () => void = () => undefined;
    let failed: (err: Error) => void = () => undefined;
    this.ready = new Promise<void>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    this.ready.catch(() => undefined); // also reported to every keeper through onError
    this.#worker.on("message", (m: FromRenewer) => {
      if (m.type === "ready") {
        this.#running = true;
        this.#worker.unref();
        started();
        return;
      }
      this.#keepers.get(m.scope)?.lost(m.tokens);
    });
    const die = (err: Error) => {
      if (this.dead) return;
      this.dead = true;
      failed(err);
      for (const keeper of this.#keepers.values()) keeper.failed(err);
      this.#keepers.clear();
    };
    // An uncaught exception in the thread (it could not load, or a bug); it exits after this.
    this.#worker.on("error", die);
    this.#worker.on("exit", (code) => die(new Error(`the heartbeat thread exited (code ${code})`)));
  }

  /** A keeper for the leases of one loop, told of their loss and of the thread's death: a scope of its own in the thread. */
  keeper(scope: RenewerScope, listener: HeartbeatListener): ThreadLeaseKeeper {
    const id = ++this.#lastScope;
    this.post({ type: "scope", scope: id, init: scope });
    const keeper = new ThreadLeaseKeeper(this, id, listener);
    this.#keepers.set(id, keeper);
    if (!this.#running) this.#holdProcessUntilReady();
    return keeper;
  }

  /** The keeper's loop is done: the thread forgets its scope, with anything still held in it. */
  end(keeper: ThreadLeaseKeeper): void {
    this.#keepers.delete(keeper.scope);
    this.post({ type: "end", scope: keeper.scope });
  }

  post(message: ToRenewer): void {
    if (!this.dead) this.#worker.postMessage(message);
  }

  /** A loop may await `ready` with nothing else keeping the process alive. */
  #holdProcessUntilReady(): void {
    if (this.#waiting++ === 0) this.#worker.ref();
    const done = () => {
      if (--this.#waiting === 0) this.#worker.unref();
    };
    this.ready.then(done, done);
  }
}

let thread: RenewerThread | undefined;

/** The process's heartbeat thread, started now if there is none (or the last one died). */
function renewerThread(): RenewerThread {
  if (thread === undefined || thread.dead) thread = new RenewerThread();
  return thread;
}

/**
 * Starts the process's heartbeat thread ahead of its first populate (db.table()
 * calls it), so that the first batch of jobs does not wait for, or compete
 * with, the thread's boot. A thread that cannot start is reported to the
 * first loop that needs it, which starts another.
 */
export function prewarmHeartbeat(): void {
  renewerThread();
}

/**
 * One reserve loop's leases on the process's heartbeat thread. Tokens go to
 * the thread as one text per call (joined by newlines; tokens hold no
 * whitespace): cloning one string across threads costs a fraction of
 * cloning an array of a thousand. Each keeper is a scope of its own in the
 * thread, so stop() ends the renewal of whatever its loop still held.
 */
export class ThreadLeaseKeeper implements LeaseKeeper {
  readonly ready: Promise<void>;
  readonly #thread: RenewerThread;
  readonly #listener: HeartbeatListener;
  readonly #sentProgress = new ProgressFilter();
  #stopped = false;

  /** @internal Use startHeartbeatThread(). */
  constructor(
    thread: RenewerThread,
    readonly scope: number,
    listener: HeartbeatListener,
  ) {
    this.#thread = thread;
    this.#listener = listener;
    this.ready = thread.ready;
  }

  /** Starts renewing these leases. */
  hold(tokens: readonly string[]): void {
    if (tokens.length > 0 && !this.#stopped) this.#thread.post({ type: "hold", scope: this.scope, tokens: tokens.join("\n") });
  }

  /** Stops renewing these leases (committed, failed, released or lost). */
  drop(tokens: readonly string[]): void {
    if (tokens.length === 0 || this.#stopped) return;
    this.#sentProgress.forget(tokens);
    this.#thread.post({ type: "drop", scope: this.scope, tokens: tokens.join("\n") });
  }

  /** Progress of one job, sent with its next renewal (see ProgressFilter for which reports are posted). */
  progress(token: string, fraction: number, message: string): void {
    if (!this.#stopped && this.#sentProgress.worthSending(token, fraction, message)) {
      this.#thread.post({ type: "progress", scope: this.scope, token, fraction, message });
    }
  }

  /** Renews nothing more for this loop; the thread stays for the next one. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#thread.end(this);
  }

  /** @internal Leases of this keeper that the server answered as lost. */
  lost(tokens: readonly string[]): void {
    if (!this.#stopped) this.#listener.onLost(tokens);
  }

  /** @internal The thread died: these leases are no longer renewed. */
  failed(err: Error): void {
    if (!this.#stopped) this.#listener.onError(err);
  }
}

/** Starts keeping the leases of one reserve loop on `table` on the process's heartbeat thread. */
export function startHeartbeatThread(
  options: { readonly connect: ResolvedConnectOptions; readonly table: string; readonly leaseDurationS: number },
  listener: HeartbeatListener,
): ThreadLeaseKeeper {
  const { url, token, ca } = options.connect;
  return renewerThread().keeper({ url, token, ca, table: options.table, leaseDurationS: options.leaseDurationS }, listener);
}
