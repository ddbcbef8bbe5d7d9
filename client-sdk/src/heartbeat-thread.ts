/**
 * The heartbeat of a reserve loop, on a `worker_threads` thread of its own
 * with its own connection to the server (DESIGN promise 3): a make that
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
 * This one module is both sides: the thread runs this same file, and the
 * code at the bottom starts the thread's role when it finds the thread's
 * workerData marker.
 *
 * @internal Not part of the public API.
 */
import { isMainThread, type MessagePort, parentPort, Worker, workerData } from "node:worker_threads";
import type { ResolvedConnectOptions } from "./config.js";
import { openConnection } from "./rpc.js";
import { durationOf } from "./wire-values.js";

/** What the thread is started with. */
interface ThreadInit {
  /** Marks a heartbeat thread (a pipeline's own worker threads may import the SDK too). */
  readonly role: typeof ROLE;
  /** The loop's connection options; the thread opens its own connection with them. */
  readonly connect: ResolvedConnectOptions;
  readonly table: string;
  /** Lease length asked for at each renewal, seconds. */
  readonly leaseDurationS: number;
}

/** Main → thread. */
type ToThread =
  | { readonly type: "hold"; readonly tokens: readonly string[] }
  | { readonly type: "drop"; readonly tokens: readonly string[] }
  | { readonly type: "progress"; readonly token: string; readonly fraction: number; readonly message: string };

/** Thread → main: leases the server no longer holds for us; or, once, that the thread is running. */
type FromThread = { readonly type: "lost"; readonly tokens: readonly string[] } | { readonly type: "ready" };

const ROLE = "@populus/sdk/heartbeat-thread";

/** Heartbeat has at most 1000 lease tokens per call (the server's limit). */
const HEARTBEAT_BATCH = 1000;

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

  #post(message: ToThread): void {
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
  const init: ThreadInit = { role: ROLE, connect: options.connect, table: options.table, leaseDurationS: options.leaseDurationS };
  // This very file: dist/heartbeat-thread.js, or the .ts source under tsx
  // (the thread inherits the process's execArgv, so `--import tsx` too).
  const worker = new Worker(new URL(import.meta.url), { workerData: init });
  let started: () => void = () => undefined;
  let failed: (err: Error) => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    started = resolve;
    failed = reject;
  });
  ready.catch(() => undefined); // also reported through onError
  worker.on("message", (m: FromThread) => {
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

/** The thread's side: renews the held leases every third of the lease length until terminated. */
function runThread(init: ThreadInit, port: MessagePort): void {
  const { rpc } = openConnection(init.connect);
  /** Held leases, with progress not yet sent. */
  const held = new Map<string, { fraction: number; message: string } | undefined>();

  port.on("message", (m: ToThread) => {
    if (m.type === "hold") for (const t of m.tokens) held.set(t, undefined);
    else if (m.type === "drop") for (const t of m.tokens) held.delete(t);
    else if (held.has(m.token)) held.set(m.token, { fraction: m.fraction, message: m.message });
  });

  const beat = async () => {
    const tokens = [...held.keys()];
    for (let i = 0; i < tokens.length; i += HEARTBEAT_BATCH) {
      const batch = tokens.slice(i, i + HEARTBEAT_BATCH);
      const sent = batch.flatMap((leaseToken) => {
        const p = held.get(leaseToken);
        return p === undefined ? [] : [{ leaseToken, p }];
      });
      const progress = sent.map(({ leaseToken, p }) => ({ leaseToken, progress: p.fraction, message: p.message }));
      try {
        const answer = await rpc.heartbeat({ table: init.table, leaseTokens: batch, leaseDuration: durationOf(init.leaseDurationS), progress });
        // Progress is sent once; a newer report that arrived meanwhile goes with the next beat.
        for (const { leaseToken, p } of sent) if (held.get(leaseToken) === p) held.set(leaseToken, undefined);
        // A lease the loop dropped while the call was in flight is no news to it.
        const lost = answer.lostLeaseTokens.filter((t) => held.delete(t));
        if (lost.length > 0) port.postMessage({ type: "lost", tokens: lost } satisfies FromThread);
      } catch {
        // rpc retries UNAVAILABLE with backoff; past that the next beat tries
        // again, and a lease that expires meanwhile is answered as lost then
        // (or as LeaseLostError at Complete).
      }
    }
  };
  let beating = false;
  setInterval(() => {
    if (beating || held.size === 0) return;
    beating = true;
    void beat().finally(() => (beating = false));
  }, (init.leaseDurationS * 1000) / 3);
  port.postMessage({ type: "ready" } satisfies FromThread);
}

const data = workerData as Partial<ThreadInit> | null;
if (!isMainThread && parentPort !== null && data?.role === ROLE) runThread(data as ThreadInit, parentPort);
