/**
 * Follows one table's Watch stream for as long as the page wants it, the way the SDK's
 * `jobs.watch()` does (client-sdk/src/watch.ts): a stream cut by the network or by the server
 * going away is reopened after a backoff with the last cursor seen, so no event is missed or
 * shown twice across a lost connection or a server restart (the change log lives in the
 * database). Unlike the SDK it never gives up on an outage: a console left open should come
 * back by itself whenever the server does. What the server refuses for good (a bad token, a
 * table that is gone) ends the stream with that reason.
 */
import { Code } from "@connectrpc/connect";
import type { WatchResponse } from "@populus/sdk/gen/populus/v1/job_service_pb.js";
import { callFailure, type JobClient } from "./rpc.js";

/** Where a followed stream stands, for the page to show. */
export type StreamState =
  | { readonly kind: "connecting" }
  | { readonly kind: "live"; readonly resumed: boolean }
  | { readonly kind: "reconnecting"; readonly reason: string; readonly attempt: number; readonly retryAt: number }
  | { readonly kind: "stopped"; readonly code: Code; readonly reason: string };

export interface FollowOptions {
  readonly countsOnly: boolean;
  /** Each message in order; those replayed after a resume carry events and no progress. */
  onMessage(message: WatchResponse): void;
  onState(state: StreamState): void;
}

/** First and longest wait before reopening a cut stream (ms); doubled per failed try, jittered. */
const FIRST_DELAY_MS = 500;
const LONGEST_DELAY_MS = 8000;

/** Codes that no retry can fix: the page must change something first (a token, the table). */
const FINAL_CODES: ReadonlySet<Code> = new Set([Code.Unauthenticated, Code.PermissionDenied, Code.NotFound, Code.InvalidArgument]);

/** Starts following; the answer stops it (and aborts the open call). */
export function followWatch(client: JobClient, table: string, options: FollowOptions): () => void {
  const abort = new AbortController();
  const { signal } = abort;
  void (async () => {
    let cursor = "";
    let failures = 0;
    let delay = FIRST_DELAY_MS;
    let reason = "";
    options.onState({ kind: "connecting" });
    while (!signal.aborted) {
      try {
        let first = true;
        for await (const message of client.watch({ table, cursor, countsOnly: options.countsOnly }, { signal })) {
          if (first) options.onState({ kind: "live", resumed: cursor !== "" });
          first = false;
          failures = 0;
          delay = FIRST_DELAY_MS;
          if (message.cursor !== "") cursor = message.cursor;
          options.onMessage(message);
        }
        if (signal.aborted) return;
        // The server ends a stream only when it shuts down: resume with the cursor, here or on another replica.
        reason = "the server ended the stream (it is shutting down or restarting)";
      } catch (err) {
        if (signal.aborted) return;
        const failure = callFailure(err);
        if (FINAL_CODES.has(failure.code)) {
          options.onState({ kind: "stopped", code: failure.code, reason: failure.message });
          return;
        }
        // The cursor's events were pruned (the page was away longer than the server keeps them): start from a fresh snapshot.
        if (failure.code === Code.OutOfRange) cursor = "";
        reason = failure.code === Code.Unavailable && /shutting down/.test(failure.message) ? "the server is shutting down or restarting" : failure.message;
      }
      failures++;
      const wait = Math.round(delay * (0.5 + Math.random() / 2));
      options.onState({ kind: "reconnecting", reason, attempt: failures, retryAt: Date.now() + wait });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        signal.addEventListener(
          "abort",
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
      delay = Math.min(delay * 2, LONGEST_DELAY_MS);
    }
  })();
  return () => abort.abort();
}
