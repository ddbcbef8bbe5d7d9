/**
 * What a server says about the tables it knows (ListTables), for operators
 * and tools that have no pipeline module at hand: `db.listTables()`.
 */
import { AttributeType, type TableInfo as TableInfoMessage } from "./gen/populus/v1/types_pb.js";
import type { ProgressCounts } from "./jobs.js";
import type { JobServiceRpc } from "./rpc.js";
import { dateOf } from "./wire-values.js";
import { progressCountsOf } from "./watch.js";

/** The type of a key attribute, as fixed by the table's first refresh. */
export type KeyAttributeType = "int64" | "string" | "double" | "bool";

/** One attribute of a table's key. */
export interface KeyAttributeInfo {
  readonly name: string;
  readonly type: KeyAttributeType;
}

/** A table the server knows. */
export interface TableInfo {
  /** The stored snake_case name, e.g. "processed_data". */
  readonly name: string;
  /** The name as a pipeline first gave it, e.g. "ProcessedData". */
  readonly displayName: string;
  /** The key attributes, sorted by name. */
  readonly keyAttributes: readonly KeyAttributeInfo[];
  /** When the table was declared (its first refresh). */
  readonly createTime: Date | undefined;
  /** Its counts when listed. */
  readonly progress: ProgressCounts;
}

const ATTRIBUTE_TYPES: Partial<Record<AttributeType, KeyAttributeType>> = {
  [AttributeType.INT64]: "int64",
  [AttributeType.STRING]: "string",
  [AttributeType.DOUBLE]: "double",
  [AttributeType.BOOL]: "bool",
};

function tableInfoOf(t: TableInfoMessage): TableInfo {
  return {
    name: t.name,
    displayName: t.displayName,
    keyAttributes: t.keyAttributes.map((a) => ({
      name: a.name,
      // The server declares only these four; an unknown one (a newer server) reads as a string, the most general.
      type: ATTRIBUTE_TYPES[a.type] ?? "string",
    })),
    createTime: dateOf(t.createTime),
    progress: progressCountsOf(t.progress),
  };
}

/** ListTables as TableInfo records, in the server's order (by name). */
export async function listTables(rpc: JobServiceRpc): Promise<TableInfo[]> {
  return (await rpc.listTables({})).tables.map(tableInfoOf);
}
