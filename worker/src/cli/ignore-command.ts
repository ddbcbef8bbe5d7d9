/**
 * `populus ignore TABLE --key JSON [--key JSON ...]`: marks keys to skip
 * (Ignore): their jobs are set to ignore, inserted if need be, and a
 * reserved one loses its lease; refresh never re-adds nor removes them.
 * Each --key is a whole key, checked against the table's key attributes
 * before anything is sent; a confirmation first (confirmation.ts).
 */
import { ExitCode } from "../exit-codes.js";
import { confirm } from "./confirmation.js";
import type { CliContext } from "./context.js";
import { printJson, printLine } from "./context.js";
import { CliError } from "./failure.js";
import { parseKeyArgument } from "./key-argument.js";
import { keyText } from "./records.js";
import { findTable } from "./table-lookup.js";

export interface IgnoreOptions {
  readonly key: readonly string[];
  readonly yes: boolean;
}

export async function ignoreCommand(ctx: CliContext, tableName: string, options: IgnoreOptions): Promise<void> {
  if (options.key.length === 0)
    throw new CliError(`populus ignore needs the keys to ignore: --key '{"attribute":value}', repeated for several`, ExitCode.usage);
  const table = await findTable(ctx.db, ctx.server, tableName);
  const keys = options.key.map((text) => parseKeyArgument("--key", text, table.displayName, table.keyAttributes, "key"));
  const listed = keys.length <= 3 ? `: ${keys.map(keyText).join(", ")}` : "";
  await confirm(ctx, `Ignore ${keys.length === 1 ? "1 key" : `${keys.length} keys`} of ${table.displayName}${listed}? A reserved job loses its lease.`, {
    yes: options.yes,
    command: "ignore",
  });
  const ignored = await ctx.db.jobs(table.name).ignore(keys);
  if (ctx.json) return printJson(ctx, { table: table.displayName, ignored });
  printLine(ctx, `ignored ${ignored === 1 ? "1 job" : `${ignored} jobs`} of ${table.displayName}`);
}
