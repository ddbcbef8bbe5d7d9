/**
 * `populus status [TABLE] [--watch]`: the counts of one table or of every
 * table. Without --watch, the counts as ListTables answers them, once. With
 * --watch, the server's Watch stream of each table (the SDK's
 * `jobs.watchProgress()`, counts only: no polling loop), redrawn as the counts
 * change, until SIGINT or SIGTERM (exit 0). A cut stream resumes by itself,
 * as the SDK's watch does; WATCH_RETRY lets it outlive a server restart.
 */
import { once } from "node:events";
import type { ProgressCounts, RetryPolicy, TableInfo } from "@populus/sdk";
import type { CliContext } from "./context.js";
import { printJson } from "./context.js";
import { countsJson } from "./records.js";
import { type StatusDisplay, startStatusBars, startStatusLines } from "./status-display.js";
import { findTable } from "./table-lookup.js";

/**
 * How a cut Watch stream is reopened: 60 tries in a row, 100 ms doubling to
 * 5 s, each delay jittered to [d/2, d] (retry.ts): about 2.5 to 4.5 minutes
 * of outage before `status --watch` gives up (the
 * SDK's default, for calls, gives up after 6 to 12 s; a watching operator
 * would rather see the bars resume after a server restart or failover).
 */
const WATCH_RETRY: RetryPolicy = Object.freeze({ maxAttempts: 60, initialDelayMs: 100, maxDelayMs: 5000 });

export interface StatusOptions {
  readonly watch: boolean;
}

export async function statusCommand(ctx: CliContext, tableName: string | undefined, options: StatusOptions): Promise<void> {
  const tables = tableName === undefined ? await ctx.db.listTables() : [await findTable(ctx.db, ctx.server, tableName)];
  if (!options.watch) {
    if (ctx.json)
      return printJson(
        ctx,
        tables.map((t) => ({ table: t.displayName, ...countsJson(t.progress) })),
      );
    const display = startDisplay(ctx, tables);
    for (const t of tables) display.update(t.displayName, t.progress);
    display.stop();
    if (tables.length === 0) ctx.streams.stdout.write(`no tables on ${ctx.server} yet\n`);
    return;
  }
  if (tables.length === 0) {
    if (!ctx.json) ctx.streams.stdout.write(`no tables on ${ctx.server} yet\n`);
    return;
  }
  await watchTables(ctx, tables);
}

function startDisplay(ctx: CliContext, tables: readonly TableInfo[]): StatusDisplay {
  const { stdout } = ctx.streams;
  return stdout.isTTY === true && tables.length > 0
    ? startStatusBars(
        stdout,
        tables.map((t) => t.displayName),
      )
    : startStatusLines(stdout);
}

/** Follows each table's counts until a signal (resolves) or a stream that cannot be resumed (rejects with its typed error). */
async function watchTables(ctx: CliContext, tables: readonly TableInfo[]): Promise<void> {
  const display: StatusDisplay = ctx.json
    ? {
        // One JSON object per line (JSON Lines): a script reads each as it comes.
        update: (table, counts) => ctx.streams.stdout.write(`${JSON.stringify({ table, time: new Date().toISOString(), ...countsJson(counts) })}\n`),
        stop: () => undefined,
      }
    : startDisplay(ctx, tables);
  const stopped = new AbortController();
  let failure: unknown;
  const subscriptions: { unsubscribe(): void }[] = tables.map((t) =>
    ctx.db
      .jobs(t.name)
      .watchProgress({ retry: WATCH_RETRY })
      .subscribe({
        next: (counts: ProgressCounts) => display.update(t.displayName, counts),
        error: (err: unknown) => {
          failure = err;
          stopped.abort();
        },
      }),
  );
  const onSignal = () => stopped.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await once(stopped.signal, "abort");
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const s of subscriptions) s.unsubscribe();
    display.stop();
  }
  if (failure !== undefined) throw failure;
}
