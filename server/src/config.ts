/**
 * The server's configuration: parsed once from CLI flags and POPULUS_* env
 * vars, validated, defaulted and frozen. A bad value ends the program with
 * exit code 2 and one line on stderr, before any port is bound.
 */
import { Command, InvalidArgumentError, Option } from "commander";

/** Where the server keeps its jobs and targets. */
export type DatabaseConfig =
  | { readonly dialect: "sqlite"; readonly path: string }
  | {
      readonly dialect: "mysql";
      readonly host: string;
      readonly port: number;
      readonly user: string;
      readonly password: string;
      readonly database: string;
      /** The URL with its password masked, for logs and messages. */
      readonly display: string;
    };

/** Every setting of populus-server, fully defaulted. */
export interface ServerConfig {
  /** Interface to bind. @default "127.0.0.1" */
  readonly host: string;
  /** TCP port; 0 picks a free one, logged at start. @default 50051 */
  readonly port: number;
  /** @default sqlite file "populus.db" in the working directory */
  readonly database: DatabaseConfig;
  /** pino level. @default "info" */
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Seconds SIGTERM waits for in-flight calls before closing them. @default 10 */
  readonly shutdownGraceSeconds: number;
  /** A job whose worker was lost this many times becomes error. @default 3 */
  readonly maxLostAttempts: number;
  /** Seconds the change log keeps changes for Watch resumes; older cursors answer OUT_OF_RANGE. @default 3600 */
  readonly eventRetentionSeconds: number;
}

/** A configuration the program cannot start with; main exits 2 with its message. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Parses a database URL: `sqlite:<path>` (also `sqlite://<path>`) or
 * `mysql://user:pass@host:port/db` (`mariadb://` is accepted as an alias).
 */
export function parseDatabaseUrl(url: string): DatabaseConfig {
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\//, "");
    if (path === "") throw new ConfigError(`database URL "${url}" has no file path; use sqlite:<path>, e.g. sqlite:populus.db`);
    return Object.freeze({ dialect: "sqlite", path });
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError(
      `database URL "${maskPassword(url)}" is not a URL; use sqlite:<path> or mysql://user:pass@host:port/database`,
    );
  }
  if (parsed.protocol !== "mysql:" && parsed.protocol !== "mariadb:") {
    throw new ConfigError(
      `database URL scheme "${parsed.protocol}" is not supported; use sqlite:<path> or mysql://user:pass@host:port/database`,
    );
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  if (database === "" || database.includes("/")) {
    throw new ConfigError(`database URL "${maskPassword(url)}" names no database; add it as the path, e.g. mysql://root@127.0.0.1:3306/populus`);
  }
  if (parsed.hostname === "") throw new ConfigError(`database URL "${maskPassword(url)}" names no host`);
  const port = parsed.port === "" ? 3306 : Number(parsed.port);
  return Object.freeze({
    dialect: "mysql",
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    user: decodeURIComponent(parsed.username) || "root",
    password: decodeURIComponent(parsed.password),
    database,
    display: maskPassword(url),
  });
}

function maskPassword(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@");
}

function intInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** The CLI definition; exported so `--help` text is the single source of option docs. */
function buildCommand(): Command {
  return new Command("populus-server")
    .description("Populus coordinator: JobService over gRPC, gRPC-Web and Connect on one port.")
    .addOption(new Option("--host <address>", "interface to bind").env("POPULUS_HOST").default("127.0.0.1"))
    .addOption(
      new Option("--port <port>", "TCP port (0 picks a free port, logged at start)")
        .env("POPULUS_PORT")
        .default(50051)
        .argParser(intInRange("--port", 0, 65535)),
    )
    .addOption(
      new Option("--database <url>", "sqlite:<path> or mysql://user:pass@host:port/database")
        .env("POPULUS_DATABASE_URL")
        .default("sqlite:populus.db"),
    )
    .addOption(new Option("--log-level <level>", "log level").env("POPULUS_LOG_LEVEL").choices(LOG_LEVELS).default("info"))
    .addOption(
      new Option("--shutdown-grace <seconds>", "on SIGTERM, how long in-flight calls may finish")
        .env("POPULUS_SHUTDOWN_GRACE")
        .default(10)
        .argParser(intInRange("--shutdown-grace", 0, 3600)),
    )
    .addOption(
      new Option("--max-lost-attempts <n>", "a job whose worker was lost this many times becomes error")
        .env("POPULUS_MAX_LOST_ATTEMPTS")
        .default(3)
        .argParser(intInRange("--max-lost-attempts", 1, 1000)),
    )
    .addOption(
      new Option("--event-retention <seconds>", "how long Watch changes are kept for clients that resume with a cursor")
        .env("POPULUS_EVENT_RETENTION")
        .default(3600)
        .argParser(intInRange("--event-retention", 60, 30 * 24 * 3600)),
    )
    .helpOption("-h, --help", "show this help")
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
}

/** What parseServerConfig decided: run with a config, or exit now (help, bad flags). */
export type ParseOutcome =
  | { readonly kind: "run"; readonly config: ServerConfig }
  | { readonly kind: "exit"; readonly code: number };

/**
 * Parses argv and env into a frozen ServerConfig. Help and version print and
 * return an exit outcome; a bad value throws ConfigError with one line.
 */
export function parseServerConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParseOutcome {
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
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version") return { kind: "exit", code: 0 };
    // One line: commander's error, with its "(Did you mean --database?)" hint when it has one.
    const line = errorLine.trim().split("\n").map((l) => l.trim()).filter((l) => l !== "").join(" ");
    throw new ConfigError((line || e.message || "bad arguments").replace(/^error: /, ""));
  } finally {
    process.env = savedEnv;
  }
  const o = command.opts<{
    host: string;
    port: number;
    database: string;
    logLevel: ServerConfig["logLevel"];
    shutdownGrace: number;
    maxLostAttempts: number;
    eventRetention: number;
  }>();
  if (o.host.trim() === "") throw new ConfigError("--host must not be empty");
  return {
    kind: "run",
    config: Object.freeze({
      host: o.host,
      port: o.port,
      database: parseDatabaseUrl(o.database),
      logLevel: o.logLevel,
      shutdownGraceSeconds: o.shutdownGrace,
      maxLostAttempts: o.maxLostAttempts,
      eventRetentionSeconds: o.eventRetention,
    }),
  };
}
