/**
 * How far V8 lets the heap grow past what survived the last full GC before
 * it collects again. Its default grows it up to four times: during a drain
 * with 500 Watch streams (bench scenario 5) the server held about 60 MB of
 * live objects and peaked at 300-310 MB of RSS, most of it garbage that
 * nothing had collected yet. At 30% it peaked at about 175 MB, with the same
 * drain rate within the run-to-run spread. Unlike --max-old-space-size it
 * sets no ceiling, so a larger live set (1,500 Watch streams) grows the heap
 * instead of crashing the server.
 */
import v8 from "node:v8";

export const HEAP_GROWING_PERCENT = 30;

/** Sets the server's heap growth, unless node was started with its own (`node --heap-growing-percent=N`). */
export function limitHeapGrowth(execArgv: readonly string[] = process.execArgv): void {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent\b/.test(arg))) return;
  // V8 reads the flag at each full GC, so setting it after start-up takes effect.
  v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
