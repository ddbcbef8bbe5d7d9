/**
 * Draws populate's progress (`displayProgress`): a cli-progress bar redrawn
 * in place on a TTY, and on anything else (a log file, CI, a pipe) one plain
 * line every 2 s and a last one at the end, since carriage-return redraws
 * turn a log into one unreadable line. Both show the same text:
 *
 *     ProcessedData: 120/300 done, 3 errors, 4 reserved, 2.1 s, 57 keys/s
 *
 * This module only draws; what the numbers are is decided by
 * populate-progress.ts.
 */
import { createRequire } from "node:module";
import type CliProgress from "cli-progress";

/**
 * cli-progress, loaded when a bar is first drawn on a TTY: most processes that load the SDK
 * (every populate child, every worker) never draw one, and loading it cost each about 20 ms.
 */
const loadCliProgress = (): typeof CliProgress => createRequire(import.meta.url)("cli-progress") as typeof CliProgress;

/** The numbers drawn. */
export interface DisplayCounts {
  /** Keys finished: computed or failed. */
  readonly done: number;
  /** Keys to finish in all (done included). */
  readonly total: number;
  /** Of `done`, those whose make failed. */
  readonly errors: number;
  /** Keys being computed right now. */
  readonly reserved: number;
}

/** Where and how often to draw. */
export interface ProgressDisplayOptions {
  /** The stream drawn to; a bar when its `isTTY` is true. @default process.stderr */
  readonly stream?: NodeJS.WritableStream & { readonly isTTY?: boolean; readonly columns?: number };
  /** Milliseconds between two lines when the stream is not a TTY. @default 2000 */
  readonly lineIntervalMs?: number;
}

/** A progress display; `stop()` ends it (draws the last state; later calls do nothing). */
export interface ProgressDisplay {
  /** The latest numbers (drawn at the next tick of the bar or line timer). */
  update(counts: DisplayCounts): void;
  /** Draws `last` (else the latest numbers) once more and stops; the bar's line is kept. */
  stop(last?: DisplayCounts): void;
}

/** "2.1 s" below a minute, "3 min 05 s" below an hour, then "2 h 03 min". */
export function formatElapsed(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

/**
 * The text after the label: "120/300 done, 3 errors, 4 reserved, 2.1 s, 57
 * keys/s". The rate is keys finished since the display started per second,
 * so keys finished before this populate do not inflate it.
 */
export function describeProgress(counts: DisplayCounts, finishedAtStart: number, elapsedMs: number): string {
  const finished = Math.max(0, counts.done - finishedAtStart);
  const rate = elapsedMs > 0 ? finished / (elapsedMs / 1000) : 0;
  const errors = counts.errors === 1 ? "1 error" : `${counts.errors} errors`;
  return `${counts.done}/${counts.total} done, ${errors}, ${counts.reserved} reserved, ${formatElapsed(elapsedMs)}, ${rate < 10 ? rate.toFixed(1) : Math.round(rate)} keys/s`;
}

/** Starts drawing the progress of `label` (a table name); the clock starts now. */
export function startProgressDisplay(label: string, options: ProgressDisplayOptions = {}): ProgressDisplay {
  const stream = options.stream ?? process.stderr;
  const startedAt = Date.now();
  let latest: DisplayCounts | undefined;
  // The first numbers seen: what was finished before this populate began.
  let finishedAtStart: number | undefined;
  let stopped = false;
  const text = () => (latest === undefined ? "waiting for counts" : describeProgress(latest, finishedAtStart ?? latest.done, Date.now() - startedAt));

  if (stream.isTTY === true) {
    const cliProgress = loadCliProgress();
    const bar = new cliProgress.SingleBar({
      stream,
      // The bar, its percentage, then the same text as the plain lines.
      format: (opts, params) => `${label} |${cliProgress.Format.BarFormat(params.progress, opts)}| ${Math.floor(params.progress * 100)}% ${text()}`,
      barsize: 30,
      barCompleteChar: "\u2588",
      barIncompleteChar: "\u2591",
      // The elapsed time changes the text at every redraw, so redraw 5 times a second, not cli-progress's 10.
      fps: 5,
      hideCursor: false,
    });
    // A total of 0 would draw an empty bar for a table with nothing to do; 1/1 draws it full.
    const barTotal = (c: DisplayCounts) => Math.max(c.total, c.done, 1);
    const barValue = (c: DisplayCounts) => (c.total === 0 ? 1 : c.done);
    bar.start(1, 0);
    return {
      update(counts) {
        if (stopped) return;
        latest = counts;
        finishedAtStart ??= counts.done;
        bar.setTotal(barTotal(counts));
        bar.update(barValue(counts));
      },
      stop(last) {
        if (stopped) return;
        stopped = true;
        if (last !== undefined) {
          latest = last;
          finishedAtStart ??= last.done;
        }
        if (latest !== undefined) {
          bar.setTotal(barTotal(latest));
          bar.update(barValue(latest));
        }
        bar.stop(); // draws the last state and ends the line
      },
    };
  }

  const writeLine = () => stream.write(`${label}: ${text()}\n`);
  const timer = setInterval(() => {
    if (latest !== undefined) writeLine();
  }, options.lineIntervalMs ?? 2000);
  // The display must never be what keeps a process alive.
  timer.unref();
  return {
    update(counts) {
      if (stopped) return;
      latest = counts;
      finishedAtStart ??= counts.done;
    },
    stop(last) {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      if (last !== undefined) {
        latest = last;
        finishedAtStart ??= last.done;
      }
      writeLine();
    },
  };
}
