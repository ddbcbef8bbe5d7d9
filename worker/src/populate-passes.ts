/**
 * The worker's passes, as DataJoint's cluster workers loop on populate: a
 * pass runs `populate({ reserveJobs: true })` on each table in turn (each
 * refreshes its key source first, per config.jobs.autoRefresh, so new
 * upstream keys are queued, unless another worker's refresh of it is
 * running or finished less than --refresh-interval ago).
 *
 * When a pass found nothing to do, the worker waits on the server for work
 * (`table.waitForWork()`, a ClaimRefresh long-poll of up to a minute on each
 * table at once): the server answers when a job becomes pending or when a
 * table's refresh comes due and this worker is granted its claim, and the
 * next pass starts then. So an idle fleet makes one call per worker a
 * minute, and still starts on new work at once. The worker sleeps instead,
 * the sleep doubling from 1 s up to --idle-wait, when the server was
 * unreachable, when the last wait said there was work that the pass then
 * could not take (a job delayed, or above --priority), or without
 * autoRefresh (a long-poll may take the refresh claim, which only a
 * refreshing populate uses).
 *
 * The worker's lifecycle:
 *
 *     running ──SIGTERM/SIGINT──▶ stopping ──grace period ends──▶ draining ──▶ stopped
 *        └──────── once: pass done / maxCalls reached / a make failed ─────────▶ stopped
 *
 * - running: passes;
 * - stopping: populate reserves nothing more; running makes may finish and
 *   commit for `grace` seconds;
 * - draining: populate aborts the makes still running and releases every
 *   held lease (no attempt charged);
 * - stopped: the outcome is returned and main exits.
 *
 * An unreachable server (UNAVAILABLE after the SDK's own retries) ends the
 * pass, is logged as a warning and retried after the idle wait, in every
 * mode: a server restart is not the worker's failure.
 */
import { setTimeout as delay } from "node:timers/promises";
import { MakeError, ResourceExhaustedError, UnavailableError } from "@populus/sdk";
import type { Logger } from "pino";
import type { PipelineTable } from "./pipeline-module.js";

/** The worker's states; see the module comment. */
export type WorkerState = "running" | "stopping" | "draining" | "stopped";

/** How the passes ended. */
export interface PassesOutcome {
  /** done: one pass (once) or maxCalls; stopped: by signal; failed: a make failed (not suppressed) or populate could not run. */
  readonly kind: "done" | "stopped" | "failed";
  /** Results committed in all passes. */
  readonly successCount: number;
  /** Failed makes recorded in all passes. */
  readonly errors: number;
}

/** What runPasses needs. */
export interface PassesOptions {
  readonly tables: readonly PipelineTable[];
  readonly once: boolean;
  readonly processes: number;
  readonly maxCalls: number | undefined;
  readonly priority: number | undefined;
  readonly suppressErrors: boolean;
  readonly leaseDurationS: number;
  readonly graceS: number;
  readonly idleWaitS: number;
  /** populate's refreshInterval: a pass reads no key source that any worker refreshed this recently. */
  readonly refreshIntervalS: number;
  /** Whether an idle worker waits on the server (waitForWork): populate refreshes (config.jobs.autoRefresh). */
  readonly waitOnServer: boolean;
  /** Aborted by SIGTERM/SIGINT: the graceful stop. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** Runs passes until once/maxCalls/stop/failure; never rejects. */
export async function runPasses(o: PassesOptions): Promise<PassesOutcome> {
  let successCount = 0;
  let errors = 0;
  let idleMs = 1000;
  /** The last wait on the server said there was work. */
  let toldOfWork = false;
  const outcome = (kind: PassesOutcome["kind"]): PassesOutcome => ({ kind, successCount, errors });
  for (;;) {
    let worked = false;
    let unavailable = false;
    for (const table of o.tables) {
      if (o.signal.aborted) return outcome("stopped");
      const calls = successCount + errors;
      if (o.maxCalls !== undefined && calls >= o.maxCalls) return outcome("done");
      try {
        const r = await table.populate({
          reserveJobs: true,
          processes: o.processes,
          maxCalls: o.maxCalls === undefined ? undefined : o.maxCalls - calls,
          priority: o.priority,
          suppressErrors: o.suppressErrors,
          leaseDuration: o.leaseDurationS,
          grace: o.graceS,
          refreshInterval: o.refreshIntervalS,
          signal: o.signal,
        });
        successCount += r.successCount;
        errors += r.errorList.length;
        worked ||= r.successCount + r.errorList.length > 0;
        o.logger.info({ table: table.name, successCount: r.successCount, errors: r.errorList.length }, "pass");
        for (const e of r.errorList) o.logger.warn({ table: table.name, key: plain(e.key), error: e.message }, "make failed");
      } catch (err) {
        if (err instanceof UnavailableError || err instanceof ResourceExhaustedError) {
          o.logger.warn({ table: table.name, error: (err as Error).message }, "server unavailable; retrying");
          unavailable = true;
          break;
        }
        if (err instanceof MakeError) {
          errors++;
          o.logger.error({ table: table.name, key: plain(err.key), error: err.message }, "make failed; stopping (use --suppress-errors to go on)");
        } else {
          o.logger.error({ table: table.name, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }, "populate failed");
        }
        return outcome("failed");
      }
    }
    if (o.signal.aborted) return outcome("stopped");
    if (o.once && !unavailable) return outcome("done");
    if (worked && !unavailable) {
      idleMs = 1000;
      toldOfWork = false;
      continue;
    }
    if (!unavailable && !toldOfWork && o.waitOnServer && o.tables.every((t) => t.waitForWork !== undefined)) {
      try {
        toldOfWork = await waitForWorkOnAny(o.tables, o.refreshIntervalS, o.signal);
        continue;
      } catch (err) {
        if (!(err instanceof UnavailableError || err instanceof ResourceExhaustedError)) throw err;
        o.logger.warn({ error: (err as Error).message }, "server unavailable; retrying");
      }
    }
    toldOfWork = false;
    await delay(idleMs, undefined, { signal: o.signal }).catch(() => undefined); // a stop ends the wait early
    idleMs = Math.min(idleMs * 2, o.idleWaitS * 1000);
  }
}

/** One wait on the server: a minute, the longest it holds a long-poll. */
const LONG_POLL_S = 60;

/**
 * Waits until any of `tables` has work (true) or `signal` aborts (false), in long-polls of a minute
 * on every table at once; the first to find work ends the others'.
 */
async function waitForWorkOnAny(tables: readonly PipelineTable[], refreshIntervalS: number, signal: AbortSignal): Promise<boolean> {
  while (!signal.aborted) {
    const found = new AbortController();
    const stop = () => found.abort();
    signal.addEventListener("abort", stop, { once: true });
    try {
      const waits = tables.map(async (t) => {
        if (
          await (t.waitForWork as NonNullable<PipelineTable["waitForWork"]>)({ wait: LONG_POLL_S, refreshInterval: refreshIntervalS, signal: found.signal })
        ) {
          found.abort();
          return true;
        }
        return false;
      });
      if ((await Promise.all(waits)).some(Boolean)) return true;
    } finally {
      signal.removeEventListener("abort", stop);
      found.abort();
    }
  }
  return false;
}

/** A key for a log line: bigint values (int64 beyond 2^53) as strings, which JSON cannot hold otherwise. */
function plain(key: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(key).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
}
