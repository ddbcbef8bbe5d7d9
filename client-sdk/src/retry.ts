/**
 * Retries of calls that are safe to repeat. UNAVAILABLE (server or database
 * unreachable), RESOURCE_EXHAUSTED (server overloaded), ABORTED (the
 * connection was reset mid-call, which connect-node reports as ABORTED, or a
 * transaction the server gave up on after its own deadlock retries), a
 * CANCELED the caller did not ask for and a stream the server refused
 * unprocessed are retried: every other code means the
 * request itself is wrong or the lease is gone, and repeating it would fail
 * the same way. Every JobService RPC the
 * SDK sends is safe to repeat: Complete and Fail answer OK for a repeat of a
 * call that committed (promise 2), Refresh is a set operation (promise 4),
 * and a Reserve carries a request id, so a repeat answers the leases the
 * first one granted (reserve-loop.ts).
 * The SDK never sends a batch above the server's limits (reserve-loop.ts
 * sizes Complete calls by their bytes on the wire), so a
 * RESOURCE_EXHAUSTED it sees is load, not size.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { PopulusError } from "./errors.js";

/** How calls are retried. */
export interface RetryPolicy {
  /** Tries in all, the first included. @default 8 */
  readonly maxAttempts: number;
  /** Delay before the first retry, ms. @default 100 */
  readonly initialDelayMs: number;
  /** Longest delay between two tries, ms. @default 5000 */
  readonly maxDelayMs: number;
}

/**
 * The default: 8 tries, 100 ms doubling to at most 5 s, each delay jittered
 * to a random value in [d/2, d]. Worst case about 12 s of waiting
 * (0.1+0.2+0.4+0.8+1.6+3.2+5 s) before the error surfaces, which outlasts a
 * server restart on the embedded SQLite (about 1 s on the dev machine).
 */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ maxAttempts: 8, initialDelayMs: 100, maxDelayMs: 5000 });

/**
 * True for the codes that are retried (of a ConnectError, or of a PopulusError it was mapped to).
 * CANCELED and ABORTED count when `signal` (the caller's) did not abort: a server that dies
 * mid-call resets its HTTP/2 streams and its TCP connection, which connect-node reports as
 * CANCELED or ABORTED ("read ECONNRESET"), not UNAVAILABLE (test/chaos.test.ts, a replica
 * SIGKILLed under three workers).
 */
export function isRetryable(err: unknown, signal?: AbortSignal): boolean {
  const code = err instanceof ConnectError || err instanceof PopulusError ? err.code : undefined;
  if (code === Code.Canceled || code === Code.Aborted) return signal?.aborted !== true;
  return code === Code.Unavailable || code === Code.ResourceExhausted || neverProcessed(err);
}

/**
 * An HTTP/2 stream the server refused (REFUSED_STREAM: it was draining or
 * restarting) or one opened on a connection it had already sent GOAWAY on:
 * the server did not process the call, so repeating it is safe.
 * connect-node reports these as INTERNAL (worker-cli.test.ts, a server
 * stopped while a Reserve was in flight).
 */
function neverProcessed(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (/NGHTTP2_REFUSED_STREAM|ERR_HTTP2_GOAWAY_SESSION/.test(`${e.message} ${(e as { code?: unknown }).code ?? ""}`)) return true;
  }
  return false;
}

/**
 * Runs `call` and retries it on UNAVAILABLE/RESOURCE_EXHAUSTED with jittered
 * exponential backoff. The last error is rethrown as it was; an abort of
 * `signal` ends the waiting with the signal's reason.
 */
export async function withRetry<T>(call: () => Promise<T>, signal?: AbortSignal, policy: RetryPolicy = DEFAULT_RETRY): Promise<T> {
  let delay = policy.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!isRetryable(err, signal) || attempt >= policy.maxAttempts || signal?.aborted === true) throw err;
    }
    await sleep(jittered(delay), signal);
    delay = Math.min(delay * 2, policy.maxDelayMs);
  }
}

/** `delay` jittered to a random value in [delay/2, delay], so that clients cut off together do not come back together. */
export function jittered(delay: number): number {
  return delay / 2 + Math.random() * (delay / 2);
}

/** Waits `ms`; an abort of `signal` rejects with the signal's reason. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
