/** `populus tables`: every table the server knows, with its key attributes and counts (ListTables). */
import type { CliContext } from "./context.js";
import { printJson, printLine } from "./context.js";
import { tableJson } from "./records.js";
import { formatColumns } from "./text-columns.js";

export async function tablesCommand(ctx: CliContext): Promise<void> {
  const tables = await ctx.db.listTables();
  if (ctx.json) return printJson(ctx, tables.map(tableJson));
  if (tables.length === 0) return printLine(ctx, `no tables on ${ctx.server} yet (a table is declared by its first refresh)`);
  printLine(
    ctx,
    formatColumns(
      ["TABLE", "STORED AS", "KEY", "PENDING", "RESERVED", "ERROR", "IGNORE", "TARGET", "CREATED"],
      tables.map((t) => [
        t.displayName,
        t.name,
        t.keyAttributes.map((a) => `${a.name} ${a.type}`).join(", "),
        String(t.progress.pending),
        String(t.progress.reserved),
        String(t.progress.error),
        String(t.progress.ignore),
        String(t.progress.target),
        t.createTime?.toISOString() ?? "",
      ]),
    ),
  );
}
