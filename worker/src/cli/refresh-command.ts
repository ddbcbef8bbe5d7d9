/**
 * `populus refresh [TABLE...] --pipeline MODULE`: syncs tables' jobs with
 * their key sources (promise 4), as `jobs.refresh()` does: queues new keys,
 * removes stale jobs, re-pends kept successes whose row left the target and,
 * with --orphan-timeout, resets stuck reservations. The key source is code,
 * so it needs the pipeline module, loaded as populus-worker loads it
 * (pipeline-module.ts), and a worker token, as populus-worker does.
 */
import type { JobsRefreshOptions, RefreshCounts } from "@populus/sdk";
import { loadPipeline, selectTables } from "../pipeline-module.js";
import type { CliContext } from "./context.js";
import { printJson, printLine } from "./context.js";
import { refreshJson } from "./records.js";

export interface RefreshOptions extends JobsRefreshOptions {
  readonly pipeline: string;
}

export async function refreshCommand(ctx: CliContext, tableNames: readonly string[], options: RefreshOptions): Promise<void> {
  const { pipeline, ...refreshOptions } = options;
  const tables = selectTables(await loadPipeline(pipeline, process.cwd()), tableNames.length === 0 ? undefined : tableNames, (n) => `table ${n}`);
  const results: { table: string; counts: RefreshCounts }[] = [];
  for (const table of tables) {
    const counts = await table.jobs.refresh(refreshOptions);
    results.push({ table: table.name, counts });
    if (!ctx.json) {
      printLine(ctx, `${table.name}: ${counts.added} added, ${counts.removed} removed, ${counts.orphaned} orphaned reset, ${counts.rePended} re-pended`);
    }
  }
  if (ctx.json)
    printJson(
      ctx,
      results.map((r) => refreshJson(r.table, r.counts)),
    );
}
