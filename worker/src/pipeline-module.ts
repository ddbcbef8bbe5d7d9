/**
 * Loading the pipeline module and finding its tables: every export made by
 * the SDK's `db.table()`. A module that cannot be imported, or that exports
 * no table, is a PipelineLoadError (exit 3); a --table it does not export is
 * a ConfigError (exit 2).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { JobsRefreshOptions, PopulateOptions, PopulateResult, RefreshCounts, WaitForWorkOptions, WorkFound } from "@populus/sdk";
import { ConfigError } from "./config-error.js";

/** What the worker needs of a table (the SDK's Table). */
export interface PipelineTable {
  readonly name: string;
  /** The server the table's connection talks to. */
  readonly connectOptions: { readonly url: string };
  populate(options: PopulateOptions): Promise<PopulateResult>;
  /** Its jobs; `populus refresh` calls refresh. */
  readonly jobs: { refresh(options: JobsRefreshOptions): Promise<RefreshCounts> };
  /** The idle worker's long-poll; absent in a table of an SDK older than it. */
  waitForWork?(options: WaitForWorkOptions): Promise<WorkFound>;
}

/** The pipeline module could not be loaded, or defines no table; main exits 3 with its message. */
export class PipelineLoadError extends Error {
  override readonly name = "PipelineLoadError";
}

/**
 * A table of the SDK, recognised by shape rather than `instanceof`: the
 * module may import the SDK by another path (its own node_modules, src
 * through tsx) than the worker does, which makes another Table class.
 */
function isTable(v: unknown): v is PipelineTable {
  const t = v as Partial<Record<"name" | "populate" | "jobs" | "connectOptions", unknown>> | null;
  return (
    typeof v === "object" &&
    t !== null &&
    typeof t.name === "string" &&
    typeof t.populate === "function" &&
    typeof t.jobs === "object" &&
    typeof t.connectOptions === "object"
  );
}

/** Imports the module (`spec`: a path relative to `cwd`, or a file: URL) and answers its tables by name, in export-name order. */
export async function loadPipeline(spec: string, cwd: string): Promise<Map<string, PipelineTable>> {
  const url = spec.startsWith("file:") ? spec : pathToFileURL(resolve(cwd, spec)).href;
  const path = fileURLToPath(url.split("?")[0] ?? url);
  if (!existsSync(path)) throw new PipelineLoadError(`cannot load pipeline module ${spec}: ${path} does not exist`);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    const hint =
      e.code === "ERR_UNKNOWN_FILE_EXTENSION" && /\.[cm]?ts$/.test(path)
        ? "; a TypeScript module needs a loader: run `node --import tsx .../populus-worker` (npm i tsx), or compile it to JavaScript"
        : "";
    throw new PipelineLoadError(`cannot load pipeline module ${spec}: ${(e.message ?? String(err)).split("\n")[0]}${hint}`);
  }
  const tables = new Map<string, PipelineTable>();
  for (const value of Object.values(exports)) if (isTable(value) && !tables.has(value.name)) tables.set(value.name, value);
  if (tables.size === 0) throw new PipelineLoadError(`pipeline module ${spec} exports no table; export each table made with db.table() from it`);
  return tables;
}

/**
 * The tables to populate: those named (in that order), else all; an unknown
 * name is a ConfigError listing the known ones, after `label` (how the name
 * was given: `--table Foo`, or just `Foo`).
 */
export function selectTables(
  all: ReadonlyMap<string, PipelineTable>,
  names: readonly string[] | undefined,
  label: (name: string) => string = (n) => `--table ${n}`,
): PipelineTable[] {
  if (names === undefined) return [...all.values()];
  return names.map((n) => {
    const t = all.get(n);
    if (t === undefined) throw new ConfigError(`${label(n)}: the pipeline module exports no such table; it exports ${[...all.keys()].join(", ")}`);
    return t;
  });
}
