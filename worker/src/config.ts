/**
 * populus-worker's configuration: parsed once from CLI flags and POPULUS_*
 * environment variables, validated, defaulted and frozen. A bad value ends
 * the program with exit code 2 and one line on stderr, before the pipeline
 * module is loaded. This is the only module of the worker that touches
 * `process.env`.
 */
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";

/** Every setting of populus-worker, fully defaulted. */
export interface WorkerConfig {
  /** The pipeline module: a path (relative to the working directory) or a file: URL. Required. */
  readonly pipeline: string;
  /** Tables to populate, in this order. @default every table the module exports, in export-name order */
  readonly tables: readonly string[] | undefined;
  /** OS processes per populate (populate's `processes`). @default 1 */
  readonly processes: number;
  /** Most make calls in all; the worker stops (exit 0) once it made that many. @default no limit */
  readonly maxCalls: number | undefined;
  /** Only jobs at this priority or more urgent. @default any */
  readonly priority: number | undefined;
  /** One pass over the tables, then exit; otherwise keep populating. @default false */
  readonly once: boolean;
  /** Record failures and go on (exit 0); otherwise the first failure stops the worker with exit 1. @default false */
  readonly suppressErrors: boolean;
  /** The server's base URL, or undefined for the SDK's default (POPULUS_URL, else http://127.0.0.1:50051). */
  readonly server: string | undefined;
  /** The bearer token, read from --token-file; undefined leaves the SDK's default (POPULUS_TOKEN). */
  readonly token: string | undefined;
  /** PEM file of the CA that signed an https server's certificate; undefined leaves the SDK's default (POPULUS_CA_FILE). */
  readonly caFile: string | undefined;
  /** Lease length, seconds. @default 60 */
  readonly leaseDurationS: number;
  /** On SIGTERM/SIGINT, how long running makes may finish, seconds. @default 30 */
  readonly graceS: number;
  /** Longest wait between passes that found nothing to do, seconds (the wait starts at 1 s and doubles). @default 10 */
  readonly idleWaitS: number;
  /** pino level. @default "info" */
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

/** A configuration the worker cannot start with; main exits 2 with its message. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function intInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

function secondsInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number of seconds from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** --table may be repeated; POPULUS_TABLES is a comma-separated list. */
function tableList(value: string, previous: string[] | undefined): string[] {
  const names = value
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  for (const n of names) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(n)) throw new InvalidArgumentError(`--table "${n}" is not a table name (letters, digits and underscores)`);
  }
  return [...(previous ?? []), ...names];
}

function serverUrl(value: string): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new InvalidArgumentError(`--server "${value}" is not a URL; use e.g. http://127.0.0.1:50051`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new InvalidArgumentError(`--server "${value}" must start with http:// or https://`);
  return value.replace(/\/+$/, "");
}

function buildCommand(): Command {
  return (
    new Command("populus-worker")
      .description("Loads a pipeline module and keeps populating its tables through a Populus server.")
      .addOption(new Option("--pipeline <module>", "the pipeline module (JS, or TS when run with node --import tsx)").env("POPULUS_PIPELINE"))
      .addOption(
        new Option("--table <name>", "a table to populate; repeat for several (default: every exported table)").env("POPULUS_TABLES").argParser(tableList),
      )
      .addOption(
        new Option("--processes <n>", "OS processes per populate")
          .env("POPULUS_PROCESSES")
          .default(1)
          .argParser(intInRange("--processes", 1, 1024)),
      )
      .addOption(
        new Option("--max-calls <n>", "stop after this many make calls in all")
          .env("POPULUS_MAX_CALLS")
          .argParser(intInRange("--max-calls", 1, Number.MAX_SAFE_INTEGER)),
      )
      .addOption(
        new Option("--priority <p>", "only jobs at this priority or more urgent (0-255)").env("POPULUS_PRIORITY").argParser(intInRange("--priority", 0, 255)),
      )
      .addOption(new Option("--once", "one pass over the tables, then exit (env POPULUS_ONCE)"))
      .addOption(new Option("--suppress-errors", "record failed makes and go on (env POPULUS_SUPPRESS_ERRORS)"))
      .addOption(new Option("--server <url>", "the Populus server").env("POPULUS_URL").argParser(serverUrl))
      // A file, not the token itself: argv is visible to every user in `ps`. POPULUS_TOKEN also works.
      .addOption(new Option("--token-file <path>", "a file holding the bearer token (or the token itself in POPULUS_TOKEN)").env("POPULUS_TOKEN_FILE"))
      .addOption(new Option("--ca-file <path>", "PEM file of the CA of an https:// server's certificate").env("POPULUS_CA_FILE"))
      .addOption(
        new Option("--lease-duration <seconds>", "lease length")
          .env("POPULUS_LEASE_DURATION")
          .default(60)
          .argParser(secondsInRange("--lease-duration", 1, 86_400)),
      )
      .addOption(
        new Option("--grace <seconds>", "on SIGTERM/SIGINT, how long running makes may finish")
          .env("POPULUS_GRACE")
          .default(30)
          .argParser(secondsInRange("--grace", 0, 86_400)),
      )
      .addOption(
        new Option("--idle-wait <seconds>", "longest wait between passes that found nothing to do")
          .env("POPULUS_IDLE_WAIT")
          .default(10)
          .argParser(secondsInRange("--idle-wait", 1, 3600)),
      )
      .addOption(new Option("--log-level <level>", "log level").env("POPULUS_LOG_LEVEL").choices(LOG_LEVELS).default("info"))
      .helpOption("-h, --help", "show this help")
      .showSuggestionAfterError(true)
      .allowExcessArguments(false)
  );
}

/**
 * A boolean flag: set on the command line, else from its variable. Parsed
 * here because commander sets a flag whenever its variable exists, so
 * POPULUS_ONCE=false would mean --once.
 */
function flag(cli: boolean | undefined, env: NodeJS.ProcessEnv, name: string): boolean {
  if (cli === true) return true;
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return false;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false (or 1/0, yes/no, on/off), got "${env[name]}"`);
}

/** What parseWorkerConfig decided: run with a config, or exit now (help). */
export type ParseOutcome = { readonly kind: "run"; readonly config: WorkerConfig } | { readonly kind: "exit"; readonly code: number };

/**
 * Parses argv and env into a frozen WorkerConfig. Help prints and returns
 * an exit outcome; a bad value throws ConfigError with one line.
 */
export function parseWorkerConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParseOutcome {
  const command = buildCommand();
  let errorLine = "";
  command.exitOverride().configureOutput({
    writeErr: (text) => {
      errorLine += text;
    },
  });
  const savedEnv = process.env;
  try {
    // commander reads option env vars from process.env; let callers pass their own.
    process.env = env;
    command.parse([...argv], { from: "user" });
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return { kind: "exit", code: 0 };
    const line = errorLine
      .trim()
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "")
      .join(" ");
    throw new ConfigError((line || e.message || "bad arguments").replace(/^error: /, ""));
  } finally {
    process.env = savedEnv;
  }
  const o = command.opts<{
    pipeline?: string;
    table?: string[];
    processes: number;
    maxCalls?: number;
    priority?: number;
    once?: boolean;
    suppressErrors?: boolean;
    server?: string;
    tokenFile?: string;
    caFile?: string;
    leaseDuration: number;
    grace: number;
    idleWait: number;
    logLevel: WorkerConfig["logLevel"];
  }>();
  if (o.pipeline === undefined || o.pipeline.trim() === "") throw new ConfigError("--pipeline <module> is required (or set POPULUS_PIPELINE)");
  return {
    kind: "run",
    config: Object.freeze({
      pipeline: o.pipeline.trim(),
      tables: o.table === undefined || o.table.length === 0 ? undefined : Object.freeze([...new Set(o.table)]),
      processes: o.processes,
      maxCalls: o.maxCalls,
      priority: o.priority,
      once: flag(o.once, env, "POPULUS_ONCE"),
      suppressErrors: flag(o.suppressErrors, env, "POPULUS_SUPPRESS_ERRORS"),
      server: o.server,
      token: o.tokenFile === undefined ? undefined : readToken(o.tokenFile),
      caFile: o.caFile === undefined || o.caFile.trim() === "" ? undefined : o.caFile.trim(),
      leaseDurationS: o.leaseDuration,
      graceS: o.grace,
      idleWaitS: o.idleWait,
      logLevel: o.logLevel,
    }),
  };
}

/** The token in a --token-file: its one line, trimmed; unreadable or empty is a ConfigError. */
function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ConfigError(`--token-file ${path}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : "cannot be read"}`);
  }
  const token = text.trim();
  if (token === "" || /\s/.test(token)) throw new ConfigError(`--token-file ${path} must hold one token on one line`);
  return token;
}

/**
 * Makes `--server`, `--token-file` and `--ca-file` the settings of the
 * pipeline module's `connect()`, which reads POPULUS_URL, POPULUS_TOKEN and
 * POPULUS_CA_FILE (a module that passes its own keeps them). Call before the
 * module is imported; populate's child processes inherit them.
 */
export function exportConnectSettings(config: WorkerConfig, env: NodeJS.ProcessEnv = process.env): void {
  if (config.server !== undefined) env.POPULUS_URL = config.server;
  if (config.token !== undefined) env.POPULUS_TOKEN = config.token;
  if (config.caFile !== undefined) env.POPULUS_CA_FILE = config.caFile;
}
