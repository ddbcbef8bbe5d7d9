/**
 * `populus errors TABLE [--key JSON] [--limit N]`: a table's error jobs,
 * each with its message and full stack; `--delete` deletes them (all, or
 * those matching --key), so that the next refresh queues their keys again,
 * after a confirmation (confirmation.ts).
 */
import type { KeyRecord } from "@populus/sdk";
import { ExitCode } from "../exit-codes.js";
import { confirm } from "./confirmation.js";
import type { CliContext } from "./context.js";
import { note, printJson, printLine } from "./context.js";
import { CliError } from "./failure.js";
import { parseKeyArgument } from "./key-argument.js";
import { jobJson, keyText } from "./records.js";
import { findTable } from "./table-lookup.js";

export interface ErrorsOptions {
  readonly key?: string;
  /** undefined: the default of listing (100); with --delete it must not be given. */
  readonly limit?: number;
  readonly delete: boolean;
  readonly yes: boolean;
}

/** How many errors are listed when --limit is not given. */
const DEFAULT_LIMIT = 100;

export async function errorsCommand(ctx: CliContext, tableName: string, options: ErrorsOptions): Promise<void> {
  if (options.delete && options.limit !== undefined) {
    throw new CliError("--limit chooses what is listed; --delete deletes every error job that matches (narrow it with --key)", ExitCode.usage);
  }
  const table = await findTable(ctx.db, ctx.server, tableName);
  const restriction: KeyRecord | undefined =
    options.key === undefined ? undefined : parseKeyArgument("--key", options.key, table.displayName, table.keyAttributes, "restriction");
  const errors = ctx.db.jobs(table.name).errors;
  if (options.delete) {
    // Without --key: one DeleteJobs of the status. With it: the matching jobs' keys, deleted only while still errors.
    const keys = restriction === undefined ? undefined : (await errors.fetch({ restriction })).map((j) => j.key);
    const count = keys?.length ?? (await errors.count());
    if (count === 0) {
      if (ctx.json) return printJson(ctx, { table: table.displayName, deleted: 0 });
      return printLine(ctx, `no error jobs of ${table.displayName}${restriction === undefined ? "" : ` match ${keyText(restriction)}`}; nothing deleted`);
    }
    const what = `${count === 1 ? "1 error job" : `${count} error jobs`} of ${table.displayName}`;
    await confirm(ctx, `Delete ${what}? The next refresh queues their keys again.`, { yes: options.yes, command: "errors --delete" });
    const deleted = keys === undefined ? await errors.delete() : await errors.delete(keys);
    if (ctx.json) return printJson(ctx, { table: table.displayName, deleted });
    return printLine(ctx, `deleted ${deleted === 1 ? "1 error job" : `${deleted} error jobs`} of ${table.displayName}`);
  }
  const limit = options.limit ?? DEFAULT_LIMIT;
  const jobs = await errors.fetch({ restriction, limit: limit + 1 });
  const shown = jobs.slice(0, limit);
  if (ctx.json) return printJson(ctx, shown.map(jobJson));
  if (shown.length === 0) return printLine(ctx, `no error jobs of ${table.displayName}${restriction === undefined ? "" : ` match ${keyText(restriction)}`}`);
  for (const [i, j] of shown.entries()) {
    const where = j.host === "" ? "" : ` on ${j.host}:${j.pid}`;
    if (i > 0) printLine(ctx, "");
    printLine(ctx, `${keyText(j.key)}  attempt ${j.attempts}${where}  ${j.completeTime?.toISOString() ?? ""}`.trimEnd());
    printLine(ctx, `  ${j.errorMessage}`);
    // The stack usually starts with the message again ("Error: ..."); it is printed whole, as recorded.
    if (j.errorStack !== "") printLine(ctx, j.errorStack.replace(/^/gm, "    "));
  }
  if (jobs.length > limit) note(ctx, `there are more error jobs than the ${limit} shown; --limit shows more`);
}
