/**
 * What `populate({ displayProgress })` shows, and where its numbers come
 * from (progress-display.ts draws them).
 *
 * - `reserveJobs: true`: the server's counts of the whole table, live from
 *   `jobs.watchProgress()`, so the bar moves with every worker of every
 *   process and node, not only this one (DataJoint's `progress()` view of
 *   the table): done = target + error, total = target + error + pending +
 *   reserved (ignored keys are not counted), reserved = jobs leased now.
 * - direct (`reserveJobs: false`): what this populate counts itself, like
 *   DataJoint's bar over `key source − target`: total = the pending jobs it
 *   is about to compute (those of its restriction and priority, at most
 *   maxCalls), done = its make calls that returned or threw, reserved = its
 *   make calls running. In child processes each make reports to the parent.
 *
 * The display never fails populate: a stream or count that fails leaves the
 * last numbers drawn. The last line is drawn from exact numbers: the result
 * (direct) or one GetProgress (reserveJobs).
 */
import type { Subscription } from "rxjs";
import type { ProgressCounts } from "./jobs.js";
import type { KeyValue } from "./keys.js";
import { type DisplayCounts, type ProgressDisplay, type ProgressDisplayOptions, startProgressDisplay } from "./progress-display.js";
import type { Make } from "./table-definition.js";
import type { Table } from "./table.js";
import { progressCountsOf } from "./watch.js";

/** One make call's moment, as counted for the display. */
export type MakeOutcome = "start" | "success" | "failure";

/** What of populate's options the progress depends on. */
export interface PopulateProgressMode {
  readonly reserveJobs: boolean;
  readonly restriction: Readonly<Record<string, KeyValue>> | undefined;
  readonly priority: number | undefined;
  readonly maxCalls: number | undefined;
}

/**
 * `make`, reporting when each call starts and how it ends. The outcome is
 * make's own: a result whose commit then fails counts as done here, which
 * the final line corrects.
 */
export function countingMake<K extends object>(make: Make<K>, report: (outcome: MakeOutcome) => void): Make<K> {
  return async (key, ctx) => {
    report("start");
    try {
      const result = await make(key, ctx);
      report("success");
      return result;
    } catch (err) {
      report("failure");
      throw err;
    }
  };
}

/** The display numbers of the server's counts (see the module comment). */
export function serverDisplayCounts(p: ProgressCounts): DisplayCounts {
  const done = p.target + p.error;
  return { done, total: done + p.pending + p.reserved, errors: p.error, reserved: p.reserved };
}

/** The progress display of one populate call. Made before its refresh, so the clock covers it. */
export class PopulateProgress {
  readonly #table: Table;
  readonly #mode: PopulateProgressMode;
  readonly #display: ProgressDisplay;
  #subscription: Subscription | undefined;
  // Direct mode's own counts.
  #total = 0;
  #done = 0;
  #errors = 0;
  #running = 0;

  /** Starts drawing now (a line saying it waits for counts until `begin`). */
  constructor(table: Table, mode: PopulateProgressMode, options: ProgressDisplayOptions) {
    this.#table = table;
    this.#mode = mode;
    this.#display = startProgressDisplay(table.name, options);
  }

  /** After the refresh: starts following the server's counts, or counts the jobs this direct populate will compute. */
  async begin(): Promise<void> {
    if (this.#mode.reserveJobs) {
      this.#subscription = this.#table.jobs.watchProgress().subscribe({
        next: (p) => this.#display.update(serverDisplayCounts(p)),
        // An unknown table (nothing refreshed yet) or an old server without
        // Watch: the last line, from GetProgress, still shows the outcome.
        error: () => undefined,
      });
      return;
    }
    try {
      const { restriction, priority, maxCalls } = this.#mode;
      const pending =
        restriction === undefined && priority === undefined
          ? await this.#table.jobs.pending.count()
          : (await this.#table.jobs.pending.fetch({ restriction, maxPriority: priority })).length;
      this.#total = maxCalls === undefined ? pending : Math.min(pending, maxCalls);
    } catch {
      // Unknown total: it grows with the keys seen (#draw).
    }
    this.#draw();
  }

  /** Direct mode: `make`, counted (this process). */
  counting<K extends object>(make: Make<K>): Make<K> {
    return this.#mode.reserveJobs ? make : countingMake(make, (outcome) => this.made(outcome));
  }

  /** Direct mode: one make moment, of this process or a child's report. */
  made(outcome: MakeOutcome): void {
    if (outcome === "start") this.#running++;
    else {
      this.#running = Math.max(0, this.#running - 1);
      this.#done++;
      if (outcome === "failure") this.#errors++;
    }
    this.#draw();
  }

  /** True when child processes must report their make calls (direct mode). */
  get wantsMakeReports(): boolean {
    return !this.#mode.reserveJobs;
  }

  /**
   * Ends the display with exact numbers: populate's `result` (direct), or
   * the server's counts now (reserveJobs; at most 2 s, else the last ones
   * seen). `result` is undefined when populate threw.
   */
  async finish(result: { readonly successCount: number; readonly errorList: readonly unknown[] } | undefined): Promise<void> {
    this.#subscription?.unsubscribe();
    let last: DisplayCounts | undefined;
    if (this.#mode.reserveJobs) {
      try {
        const answer = await this.#table.rpc.getProgress({ table: this.#table.name }, { signal: AbortSignal.timeout(2000) });
        last = serverDisplayCounts(progressCountsOf(answer.progress));
      } catch {
        last = undefined;
      }
    } else {
      if (result !== undefined) {
        this.#done = result.successCount + result.errorList.length;
        this.#errors = result.errorList.length;
      }
      this.#running = 0;
      last = this.#counts();
    }
    this.#display.stop(last);
  }

  #counts(): DisplayCounts {
    return { done: this.#done, total: Math.max(this.#total, this.#done + this.#running), errors: this.#errors, reserved: this.#running };
  }

  #draw(): void {
    this.#display.update(this.#counts());
  }
}
