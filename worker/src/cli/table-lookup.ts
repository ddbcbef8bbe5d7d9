/**
 * Finding a table on the server by the name an operator types: as the
 * pipeline gives it ("ProcessedData") or as stored ("processed_data").
 * One ListTables call, which also brings the key attributes that --key is
 * checked against; an unknown name is one line listing the known ones.
 */
import type { PopulusClient, TableInfo } from "@populus/sdk";
import { ExitCode } from "../exit-codes.js";
import { CliError } from "./failure.js";

/** The table `name`; CliError (exit 2) naming the tables there are when the server knows none of that name. */
export async function findTable(db: PopulusClient, server: string, name: string): Promise<TableInfo> {
  const tables = await db.listTables();
  const found = tables.find((t) => t.displayName === name || t.name === name);
  if (found !== undefined) return found;
  const known =
    tables.length === 0 ? "it has no table yet (a table is declared by its first refresh)" : `it has ${tables.map((t) => t.displayName).join(", ")}`;
  throw new CliError(`no table "${name}" on ${server}; ${known}`, ExitCode.usage);
}
