/**
 * How `populus status` draws a table's counts: a cli-progress bar per table
 * redrawn in place on a terminal, and plain lines anywhere else (a pipe, a
 * log, CI), where carriage-return redraws would make one unreadable line.
 * Both show the same text:
 *
 *     Mean |█████░░░░░|  50% 10/20 done, 1 error, 2 reserved, 8 pending, 0 ignored
 *     Mean: 10/20 done, 1 error, 2 reserved, 8 pending, 0 ignored
 *
 * "done" counts keys whose make finished, committed (the target) or failed
 * (error jobs), of all the keys queued or finished; ignored jobs are left
 * out of both, as populate's own progress display counts.
 */
import type { ProgressCounts } from "@populus/sdk";
import cliProgress from "cli-progress";

/** Finished and all keys of a table, as the bar fills. */
function doneOf(c: ProgressCounts): { readonly done: number; readonly total: number } {
  const done = c.target + c.error;
  return { done, total: done + c.pending + c.reserved };
}

/** "10/20 done, 1 error, 2 reserved, 8 pending, 0 ignored". */
export function describeStatus(c: ProgressCounts): string {
  const { done, total } = doneOf(c);
  return `${done}/${total} done, ${c.error === 1 ? "1 error" : `${c.error} errors`}, ${c.reserved} reserved, ${c.pending} pending, ${c.ignore} ignored`;
}

/** Draws the counts of some tables; `stop()` draws the last state and ends. */
export interface StatusDisplay {
  update(table: string, counts: ProgressCounts): void;
  stop(): void;
}

/** About the longest describeStatus() of a busy table: "12345/67890 done, 123 errors, 64 reserved, 55545 pending, 0 ignored". */
const TEXT_WIDTH = 60;

/**
 * Bars on `stream` (a terminal), one per table of `tables`, in that order;
 * drawn as the counts come. The bar shrinks (to 10) so that the label, bar,
 * percentage and text fit the terminal's width: cli-progress cuts a longer
 * line at the edge.
 */
export function startStatusBars(stream: NodeJS.WriteStream, tables: readonly string[]): StatusDisplay {
  const width = Math.max(...tables.map((t) => t.length));
  const barsize = Math.max(10, Math.min(30, (stream.columns ?? 80) - width - " || 100% ".length - TEXT_WIDTH));
  const multi = new cliProgress.MultiBar({
    stream,
    format: (options, params, payload: { label: string; text: string }) =>
      `${payload.label.padEnd(width)} |${cliProgress.Format.BarFormat(params.progress, options)}| ${String(Math.floor(params.progress * 100)).padStart(3)}% ${payload.text}`,
    barsize,
    barCompleteChar: "\u2588",
    barIncompleteChar: "\u2591",
    fps: 5,
    hideCursor: false,
    clearOnComplete: false,
    // Our own SIGINT handler stops the display; cli-progress's would race it.
    gracefulExit: false,
  });
  const bars = new Map(tables.map((t) => [t, multi.create(1, 0, { label: t, text: "waiting for counts" })]));
  return {
    update(table, counts) {
      const bar = bars.get(table);
      if (bar === undefined) return;
      const { done, total } = doneOf(counts);
      // A total of 0 would draw an empty bar for a table with nothing to do; 1/1 draws it full.
      bar.setTotal(Math.max(total, 1));
      bar.update(total === 0 ? 1 : done, { label: table, text: describeStatus(counts) });
    },
    stop() {
      multi.stop();
    },
  };
}

/** One plain line per update on `stream`: `Mean: 10/20 done (...)`. */
export function startStatusLines(stream: NodeJS.WritableStream): StatusDisplay {
  return {
    update(table, counts) {
      stream.write(`${table}: ${describeStatus(counts)}\n`);
    },
    stop() {},
  };
}
