/**
 * populus-worker's configuration: parsed once from CLI flags and POPULUS_*
 * environment variables, validated, defaulted and frozen. A bad value ends
 * the program with exit code 2 and one line on stderr, before the pipeline
 * module is loaded. The connection options are connection-config.ts's,
 * shared with the populus CLI.
 */
import { Command, InvalidArgumentError, Option } from "commander";
import { ConfigError } from "./config-error.js";
import { addConnectionOptions, type ConnectionFlags, type ConnectionSettings, connectionSettings } from "./connection-config.js";
import { intInRange, secondsInRange } from "./option-values.js";
import { parseCommandLine } from "./parse-config.js";

/** Every setting of populus-worker, fully defaulted. */
export interface WorkerConfig extends ConnectionSettings {
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
  /** Lease length, seconds. @default 60 */
  readonly leaseDurationS: number;
  /** On SIGTERM/SIGINT, how long running makes may finish, seconds. @default 30 */
  readonly graceS: number;
  /** Longest sleep between passes when the worker does not wait on the server (populate-passes.ts), seconds (the sleep starts at 1 s and doubles). @default 10 */
  readonly idleWaitS: number;
  /** A pass skips its refresh of a table when any worker's refresh of it finished less than this long ago, seconds. @default 30 */
  readonly refreshIntervalS: number;
  /** pino level. @default "info" */
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

/**
 * The worker's refreshInterval. The SDK's is 0 (a script's populate reads its key source every
 * time, as DataJoint's does); a worker loops, and every node's passes would otherwise read the key
 * source back to back (one at a time, but without rest). 30 s: new upstream keys are queued within
 * half a minute, and an idle fleet reads an expensive key source twice a minute at most.
 */
const WORKER_REFRESH_INTERVAL_S = 30;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

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

function buildCommand(): Command {
  const command = new Command("populus-worker")
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
    .addOption(new Option("--suppress-errors", "record failed makes and go on (env POPULUS_SUPPRESS_ERRORS)"));
  // --server, --token-file, --ca-file: the same as populus's.
  addConnectionOptions(command);
  return command
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
      new Option("--idle-wait <seconds>", "longest sleep between passes when not waiting on the server (unreachable, or work it could not take)")
        .env("POPULUS_IDLE_WAIT")
        .default(10)
        .argParser(secondsInRange("--idle-wait", 1, 3600)),
    )
    .addOption(
      new Option("--refresh-interval <seconds>", "a pass reads no key source refreshed by any worker less than this long ago")
        .env("POPULUS_REFRESH_INTERVAL")
        .default(WORKER_REFRESH_INTERVAL_S)
        .argParser(secondsInRange("--refresh-interval", 0, 86_400)),
    )
    .addOption(new Option("--log-level <level>", "log level").env("POPULUS_LOG_LEVEL").choices(LOG_LEVELS).default("info"))
    .helpOption("-h, --help", "show this help")
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
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
export type ParseOutcome = { readonly kind: "run"; readonly config: WorkerConfig } | { readonly kind: "exit"; readonly code: number; readonly stderr: string };

/**
 * Parses argv and env into a frozen WorkerConfig. Help prints and returns
 * an exit outcome; a bad value throws ConfigError with one line.
 */
export function parseWorkerConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParseOutcome {
  const command = buildCommand();
  const outcome = parseCommandLine(command, argv, env);
  if (outcome.kind === "exit") return outcome;
  const o = command.opts<
    ConnectionFlags & {
      pipeline?: string;
      table?: string[];
      processes: number;
      maxCalls?: number;
      priority?: number;
      once?: boolean;
      suppressErrors?: boolean;
      leaseDuration: number;
      grace: number;
      idleWait: number;
      refreshInterval: number;
      logLevel: WorkerConfig["logLevel"];
    }
  >();
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
      ...connectionSettings(o),
      leaseDurationS: o.leaseDuration,
      graceS: o.grace,
      idleWaitS: o.idleWait,
      refreshIntervalS: o.refreshInterval,
      logLevel: o.logLevel,
    }),
  };
}
