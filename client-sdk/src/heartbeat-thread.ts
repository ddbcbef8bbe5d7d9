/**
 * The heartbeat of a reserve loop, on a `worker_threads` thread of its own
 * with its own connection to the server (promise 3, ARCHITECTURE.md): a make that
 * blocks its event loop with synchronous CPU work for minutes cannot starve
 * the timer that renews its leases. test/sdk-heartbeat.test.ts pins this: a
 * make that busy-loops for three lease lengths keeps its lease and commits
 * once.
 *
 * The loop (main side, `HeartbeatThread`) posts the lease tokens it holds,
 * the ones it let go and per-job progress; the thread renews the held ones
 * every third of the lease length and posts back the ones the server
 * answered as lost. A lost lease reaches the loop only when its event loop
 * gets control back, which is soon enough: Complete would answer
 * LeaseLostError for it anyway, and the lease was kept for as long as the
 * server could be reached.
 *
 * The thread runs lease-renewer.ts, which loads nothing but node:http2.
 *
 * @internal Not part of the public API.
 */
import { Worker } from "node:worker_threads";
import type { ResolvedConnectOptions } from "./config.js";
import type { FromRenewer, RenewerInit, ToRenewer } from "./lease-renewer.js";

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

/** The main side: a running heartbeat thread. Create with startHeartbeatThread(). */
export class HeartbeatThread implements LeaseKeeper {
  /**
   * Resolves once the thread runs and renews what it is given; rejects when
   * it could not start. A lease handed out before then is renewed only from
   * then on (the reserve loop waits for it when leases are short).
   */
  readonly ready: Promise<void>;
  readonly #worker: Worker;
  readonly #sentProgress = new ProgressFilter();
  #stopped = false;

  /** @internal Use startHeartbeatThread(). */
  constructor(worker: Worker, ready: Promise<void>) {
    this.#worker = worker;
    this.ready = ready;
  }

  /** Starts renewing these leases. */
  hold(tokens: readonly string[]): void {
    if (tokens.length > 0) this.#post({ type: "hold", tokens });
  }

  /** Stops renewing these leases (committed, failed, released or lost). */
  drop(tokens: readonly string[]): void {
    if (tokens.length === 0) return;
    this.#sentProgress.forget(tokens);
    this.#post({ type: "drop", tokens });
  }

  /** Progress of one job, sent with its next renewal (see ProgressFilter for which reports are posted). */
  progress(token: string, fraction: number, message: string): void {
    if (this.#sentProgress.worthSending(token, fraction, message)) this.#post({ type: "progress", token, fraction, message });
  }

  /** Ends the thread (and its connection); resolves once it is gone. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#worker.terminate();
  }

  #post(message: ToRenewer): void {
    if (!this.#stopped) this.#worker.postMessage(message);
  }
}

/**
 * Starts a heartbeat thread for leases of `table`. Once ready, the thread is
 * unref'd: it never keeps the process alive; the loop stops it on every
 * path anyway.
 */
export function startHeartbeatThread(
  options: { readonly connect: ResolvedConnectOptions; readonly table: string; readonly leaseDurationS: number },
  listener: HeartbeatListener,
): HeartbeatThread {
  const init: RenewerInit = {
    url: options.connect.url,
    token: options.connect.token,
    ca: options.connect.ca,
    table: options.table,
    leaseDurationS: options.leaseDurationS,
  };
  // lease-renewer.js beside this file, or the .ts source under tsx (the thread inherits the
  // process's execArgv, so `--import tsx` too).
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const worker = new Worker(new URL(`./lease-renewer${ext}`, import.meta.url), { workerData: init });
  let started: () => void = () => undefined;
  let failed: (err: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    started = resolve;
    failed = reject;
  });
  ready.catch(() => undefined); // also reported through onError
  worker.on("message", (m: FromRenewer) => {
    if (m.type === "lost") listener.onLost(m.tokens);
    else {
      // Ref'd until now: a loop awaiting `ready` may have nothing else keeping the process alive.
      worker.unref();
      started();
    }
  });
  // An uncaught exception in the thread (it could not load, or a bug); it exits after this.
  worker.on("error", (err) => {
    failed(err);
    listener.onError(err);
  });
  return new HeartbeatThread(worker, ready);
}
