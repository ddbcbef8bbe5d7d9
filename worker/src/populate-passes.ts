/**
 * The worker's passes, as DataJoint's cluster workers loop on populate: a
 * pass runs `populate({ reserveJobs: true })` on each table in turn (each
 * refreshes its key source first, per config.jobs.autoRefresh, so new
 * upstream keys are queued, unless another worker's refresh of it is
 * running or finished less than --refresh-interval ago); when a pass found
 * nothing to do, wait and try again, the wait doubling from 1 s up to
 * idleWait.
 *
 * Why poll instead of Reserve's long-poll `wait`: a long-poll wakes only for
 * jobs already queued, and here the key source is refreshed by the worker
 * itself at the start of each pass; blocking in Reserve on one table would
 * also leave the other tables unserved meanwhile.
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
  /** Aborted by SIGTERM/SIGINT: the graceful stop. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
}

/** Runs passes until once/maxCalls/stop/failure; never rejects. */
export async function runPasses(o: PassesOptions): Promise<PassesOutcome> {
  let successCount = 0;
  let errors = 0;
  let idleMs = 1000;
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
      continue;
    }
    await delay(idleMs, undefined, { signal: o.signal }).catch(() => undefined); // a stop ends the wait early
    idleMs = Math.min(idleMs * 2, o.idleWaitS * 1000);
  }
}

/** A key for a log line: bigint values (int64 beyond 2^53) as strings, which JSON cannot hold otherwise. */
function plain(key: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(key).map(([k, v]) => [k, typeof v === "bigint" ? v.toString() : v]));
}
