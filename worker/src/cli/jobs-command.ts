/**
 * `populus jobs TABLE [--status S] [--key JSON] [--priority P] [--limit N]`:
 * a table's jobs in reservation order (priority, scheduled time, id), the
 * first N (default 100) of those that match (ListJobs).
 */
import type { JobRecord, JobStatusName, KeyRecord } from "@populus/sdk";
import type { CliContext } from "./context.js";
import { note, printJson, printLine } from "./context.js";
import { parseKeyArgument } from "./key-argument.js";
import { jobJson, keyText } from "./records.js";
import { findTable } from "./table-lookup.js";
import { formatColumns } from "./text-columns.js";

export interface JobsOptions {
  readonly status?: readonly JobStatusName[];
  readonly key?: string;
  readonly priority?: number;
  readonly limit: number;
}

export async function jobsCommand(ctx: CliContext, tableName: string, options: JobsOptions): Promise<void> {
  const table = await findTable(ctx.db, ctx.server, tableName);
  const restriction: KeyRecord | undefined =
    options.key === undefined ? undefined : parseKeyArgument("--key", options.key, table.displayName, table.keyAttributes, "restriction");
  // One more than shown says whether there are more.
  const jobs = await ctx.db.jobs(table.name).fetch({ statuses: options.status, restriction, maxPriority: options.priority, limit: options.limit + 1 });
  const shown = jobs.slice(0, options.limit);
  if (ctx.json) return printJson(ctx, shown.map(jobJson));
  if (shown.length === 0) return printLine(ctx, `no jobs of ${table.displayName} match`);
  printLine(
    ctx,
    formatColumns(
      ["STATUS", "PRIORITY", "ATTEMPTS", "KEY", "WORKER", "SINCE", "MESSAGE"],
      shown.map((j) => [j.status, String(j.priority), String(j.attempts), keyText(j.key), workerOf(j), sinceOf(j), messageOf(j)]),
    ),
  );
  if (jobs.length > options.limit) note(ctx, `more jobs match than the ${options.limit} shown; --limit shows more`);
}

/** host:pid of the worker that holds or last held the job ("" when none did). */
function workerOf(j: JobRecord): string {
  return j.host === "" ? "" : `${j.host}:${j.pid}`;
}

/** When the job entered its status, as near as the record says. */
function sinceOf(j: JobRecord): string {
  const t = j.status === "reserved" ? j.reserveTime : (j.completeTime ?? j.createTime);
  return t?.toISOString() ?? "";
}

/** The error's first line, or the progress message of a running job. */
function messageOf(j: JobRecord): string {
  if (j.errorMessage !== "") return j.errorMessage.split("\n")[0] ?? "";
  if (j.status === "reserved" && (j.progress > 0 || j.progressMessage !== "")) return `${Math.round(j.progress * 100)}% ${j.progressMessage}`.trim();
  return "";
}
