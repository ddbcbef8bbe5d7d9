/**
 * Where tables were defined, so that a child process of
 * `populate({ processes })` can load them: `db.table()` records the file URL
 * of the module that called it (from the call stack) and registers the table
 * by name. A child imports that module, which defines the table again in the
 * child, and looks it up here.
 *
 * The registry lives on `globalThis` under a `Symbol.for` key, so that a
 * pipeline module that imports the SDK by another path (src through tsx,
 * dist through the package) still registers where the child looks.
 */
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Where a table was defined. */
export interface DefinitionSite {
  /** The module's file URL when a child process can import it, else undefined. */
  readonly moduleUrl: string | undefined;
  /** The module URL, or what the stack named instead (a REPL, an -e script). */
  readonly where: string;
}

/** A registered table, as the registry sees it. */
export interface RegisteredTable {
  /** The name given to db.table(). */
  readonly name: string;
  /** Where it was defined. */
  readonly site: DefinitionSite;
}

const REGISTRY = Symbol.for("@populus/sdk/table-registry");
type Registry = Map<string, RegisteredTable[]>;

function registry(): Registry {
  const g = globalThis as { [REGISTRY]?: Registry };
  g[REGISTRY] ??= new Map();
  return g[REGISTRY];
}

/** Registers a table under its name (several tables may share a name when defined by different modules). */
export function registerTable(table: RegisteredTable): void {
  const list = registry().get(table.name) ?? [];
  list.push(table);
  registry().set(table.name, list);
}

/** The table named `name` defined by `moduleUrl` (or the last of that name when none matches the module). */
export function findTable<T extends RegisteredTable>(name: string, moduleUrl: string): T | undefined {
  const list = registry().get(name) ?? [];
  return (list.find((t) => t.site.moduleUrl === moduleUrl) ?? list.at(-1)) as T | undefined;
}

// The package root (client-sdk/), not this file's folder: under source maps
// (tsx, --enable-source-maps) the SDK's frames name src/*.ts, not dist/*.js.
const SDK_DIR = fileURLToPath(new URL("../", import.meta.url));

/**
 * The definition site of the caller of the SDK: the first stack frame outside
 * the SDK's own directory. A frame that names no existing file (a REPL line,
 * `node -e`, an `eval`) gives a site without moduleUrl.
 */
export function callerSite(): DefinitionSite {
  const frames = (new Error().stack ?? "").split("\n").slice(1);
  for (const frame of frames) {
    const m = /\(?([^()\s]+?):\d+:\d+\)?\s*$/.exec(frame.trim());
    const location = m?.[1];
    if (location === undefined || location.startsWith("node:")) continue;
    let path: string | undefined;
    if (location.startsWith("file://")) path = fileURLToPath(location.split("?")[0] ?? location);
    else if (location.startsWith("/") || /^[A-Za-z]:[\\/]/.test(location)) path = location;
    if (path?.startsWith(SDK_DIR)) continue;
    if (path === undefined || !existsSync(path)) return { moduleUrl: undefined, where: describeLocation(location) };
    const url = pathToFileURL(path).href;
    return { moduleUrl: url, where: url };
  }
  return { moduleUrl: undefined, where: "an unknown place (no stack frame outside the SDK)" };
}

/** A stack location that is not a file, for messages: "the REPL (REPL1)", "an inline script ([eval1])". */
function describeLocation(location: string): string {
  if (/^REPL\d*$/.test(location)) return `the REPL (${location})`;
  const evalName = /\[eval\d*\]/.exec(location)?.[0];
  if (evalName !== undefined) return `an inline script (${evalName}, e.g. node -e)`;
  return `${location} (not a file)`;
}

const IMPORTING = Symbol.for("@populus/sdk/child-importing");

/** Marks that a populate child process is importing a pipeline module (true) or done (false). */
export function setChildImporting(importing: boolean): void {
  (globalThis as { [IMPORTING]?: boolean })[IMPORTING] = importing;
}

/**
 * True while a populate child process imports the module that defines a
 * table. A populate() started then would fork children of its own, which
 * import the module again, without end; populate() refuses it.
 */
export function childImporting(): boolean {
  return (globalThis as { [IMPORTING]?: boolean })[IMPORTING] === true;
}
