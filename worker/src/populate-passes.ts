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
 * next pass starts then. So an idle fleet makes one call per worker and
 * table a minute, and still starts on new work within moments. The worker
 * sleeps instead, the sleep doubling from 1 s up to --idle-wait, when the
 * server was unreachable, and when the last wait said a job was pending that
 * the pass then could not take (a job delayed, or above --priority: the wait
 * would answer the same at once), and with --refresh-interval 0 (a refresh
 * is always due, so a wait would end at once). Without autoRefresh the wait
 * takes no claim (the SDK reads the table's counts every 10 s instead).
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
import { errorLine } from "./error-line.js";
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
  /** Aborted by SIGTERM/SIGINT: the graceful stop. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** Runs passes until once/maxCalls/stop/failure; never rejects. */
export async function runPasses(o: PassesOptions): Promise<PassesOutcome> {
  let successCount = 0;
  let errors = 0;
  let idleMs = 1000;
  /** The last wait on the server said a job was pending. */
  let toldOfJobs = false;
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
          o.logger.error({ table: table.name, error: errorLine(err) }, "populate failed");
        }
        return outcome("failed");
      }
    }
    if (o.signal.aborted) return outcome("stopped");
    if (o.once && !unavailable) return outcome("done");
    if (worked && !unavailable) {
      idleMs = 1000;
      toldOfJobs = false;
      continue;
    }
    // With a refresh interval of 0 a refresh is always due: a wait would end at once, every time.
    const waitingTables = o.refreshIntervalS > 0 ? waitersOf(o.tables) : null;
    if (!unavailable && !toldOfJobs && waitingTables !== null) {
      try {
        toldOfJobs = (await waitForWorkOnAny(waitingTables, o.refreshIntervalS, o.signal)) === "jobs";
        continue;
      } catch (err) {
        if (!(err instanceof UnavailableError || err instanceof ResourceExhaustedError)) {
          o.logger.error({ error: errorLine(err) }, "wait for work failed");
          return outcome("failed");
        }
        o.logger.warn({ error: (err as Error).message }, "server unavailable; retrying");
      }
    }
    toldOfJobs = false;
    await delay(idleMs, undefined, { signal: o.signal }).catch(() => undefined); // a stop ends the wait early
    idleMs = Math.min(idleMs * 2, o.idleWaitS * 1000);
  }
}

/** One wait on the server: a minute, the longest it holds a long-poll. */
const LONG_POLL_S = 60;

type WaitingTable = PipelineTable & Required<Pick<PipelineTable, "waitForWork">>;

/** The tables, if every one can wait on the server (a table of an SDK older than waitForWork cannot). */
function waitersOf(tables: readonly PipelineTable[]): readonly WaitingTable[] | null {
  return tables.every((t): t is WaitingTable => t.waitForWork !== undefined) ? tables : null;
}

/**
 * Waits until any of `tables` has work ("jobs" before "refresh" when both are found at once) or
 * `signal` aborts (null), in long-polls of a minute on every table at once; the first to find work
 * ends the others'.
 */
async function waitForWorkOnAny(tables: readonly WaitingTable[], refreshIntervalS: number, signal: AbortSignal): Promise<"jobs" | "refresh" | null> {
  while (!signal.aborted) {
    const found = new AbortController();
    const stop = () => found.abort();
    signal.addEventListener("abort", stop, { once: true });
    try {
      const waits = tables.map(async (t) => {
        const work = await t.waitForWork({ wait: LONG_POLL_S, refreshInterval: refreshIntervalS, signal: found.signal });
        if (work !== null) found.abort();
        return work;
      });
      const kinds = await Promise.all(waits);
      if (kinds.includes("jobs")) return "jobs";
      if (kinds.includes("refresh")) return "refresh";
    } finally {
      signal.removeEventListener("abort", stop);
      found.abort();
    }
  }
  return null;
}

/** A key for a log line: bigint values (int64 beyond 2^53) as strings, which JSON cannot hold otherwise. */
function plain(key: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(key).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
}
