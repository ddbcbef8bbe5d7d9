/**
 * The server's configuration: parsed once from CLI flags and POPULUS_* env
 * vars, validated, defaulted and frozen. A bad value ends the program with
 * exit code 2 and one line on stderr, before any port is bound.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { Command, InvalidArgumentError, Option } from "commander";
import type { TokenSource } from "./service/auth.js";
import { DEFAULT_MAX_WATCH_STREAMS, DEFAULT_MAX_WATCH_STREAMS_TOTAL } from "./service/limits.js";

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
      /** A Unix socket to connect through instead of host and port (`?socket=` in the URL). */
      readonly socketPath?: string;
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
  /**
   * Seconds between a waiting (long-polling) Reserve's re-reads of the queue when nothing wakes it:
   * a refresh or a release on any replica wakes it at once, so the re-read only finds delayed jobs
   * whose time came. Each waiting worker costs a query this often. @default 1
   */
  readonly reserveRecheckSeconds: number;
  /** Where the bearer tokens come from; null serves JobService to anyone (loopback, or --insecure). */
  readonly tokens: TokenSource | null;
  /** Serve without tokens on a non-loopback address. @default false */
  readonly insecure: boolean;
  /** PEM files of the server's certificate and key; null serves plaintext. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | null;
  /** Concurrent Watch streams per client (token, or peer address without tokens). @default 64 */
  readonly maxWatchStreams: number;
  /** Concurrent Watch streams on this server, all clients. @default DEFAULT_MAX_WATCH_STREAMS_TOTAL (limits.ts) */
  readonly maxWatchStreamsTotal: number;
  /** MySQL family: connections in the pool. @default 20 */
  readonly dbPoolSize: number;
  /**
   * MySQL family: seconds a call waits for a pooled connection when all are busy, before it is
   * answered UNAVAILABLE (retry advised). @default 5
   */
  readonly dbPoolWaitSeconds: number;
  /** SQLite: the page cache of the store's connection, MiB. @default DEFAULT_SQLITE_CACHE_MIB */
  readonly sqliteCacheMib: number;
}

/** SQLite's page cache, MiB, unless --sqlite-cache says otherwise; why 64 is in sqlite-store.ts. */
export const DEFAULT_SQLITE_CACHE_MIB = 64;

/** A configuration the program cannot start with; main exits 2 with its message. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Reads a file an option names (tokens, certificate, key); one that cannot be read is a ConfigError naming the option. */
export function readOptionFile(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ConfigError(`${option} ${path}: ${code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : "cannot be read"}`);
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * Parses a database URL: `sqlite:<path>` (also `sqlite://<path>`) or
 * `mysql://user:pass@host:port/db` (`mariadb://` is accepted as an alias), with
 * `?socket=/run/mysqld/mysqld.sock` to connect through a Unix socket.
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
    throw new ConfigError(`database URL "${maskPassword(url)}" is not a URL; use sqlite:<path> or mysql://user:pass@host:port/database`);
  }
  if (parsed.protocol !== "mysql:" && parsed.protocol !== "mariadb:") {
    throw new ConfigError(`database URL scheme "${parsed.protocol}" is not supported; use sqlite:<path> or mysql://user:pass@host:port/database`);
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, ""));
  if (database === "" || database.includes("/")) {
    throw new ConfigError(`database URL "${maskPassword(url)}" names no database; add it as the path, e.g. mysql://root@127.0.0.1:3306/populus`);
  }
  if (parsed.hostname === "") throw new ConfigError(`database URL "${maskPassword(url)}" names no host`);
  const port = parsed.port === "" ? 3306 : Number(parsed.port);
  const unknown = [...parsed.searchParams.keys()].filter((name) => name !== "socket");
  if (unknown.length > 0) {
    throw new ConfigError(
      `database URL "${maskPassword(url)}" has unknown parameter ${unknown.map((n) => `"${n}"`).join(", ")}; the one it takes is socket=<path>`,
    );
  }
  const socketPath = parsed.searchParams.get("socket");
  if (socketPath !== null && !socketPath.startsWith("/")) {
    throw new ConfigError(`database URL "${maskPassword(url)}": socket must be an absolute path, e.g. socket=/run/mysqld/mysqld.sock`);
  }
  return Object.freeze({
    dialect: "mysql",
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    user: decodeURIComponent(parsed.username) || "root",
    password: decodeURIComponent(parsed.password),
    database,
    ...(socketPath === null ? {} : { socketPath }),
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
      new Option("--database <url>", "sqlite:<path> or mysql://user:pass@host:port/database[?socket=<path>]")
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
    .addOption(
      new Option("--reserve-recheck <seconds>", "how often a waiting Reserve re-reads the queue when nothing wakes it (delayed jobs whose time came)")
        .env("POPULUS_RESERVE_RECHECK")
        .default(1)
        .argParser(intInRange("--reserve-recheck", 1, 60)),
    )
    .addOption(
      new Option(
        "--tokens-file <path>",
        'bearer tokens, one "<role> <token>" per line (roles: reader, worker, admin); or POPULUS_TOKENS="<role>:<token>,..."',
      ).env("POPULUS_TOKENS_FILE"),
    )
    .addOption(new Option("--insecure", "serve without tokens on a non-loopback address (env: POPULUS_INSECURE=true)"))
    .addOption(new Option("--tls-cert <path>", "serve TLS with this PEM certificate (chain) and the key of --tls-key").env("POPULUS_TLS_CERT"))
    .addOption(new Option("--tls-key <path>", "PEM private key of --tls-cert").env("POPULUS_TLS_KEY"))
    .addOption(
      new Option("--max-watch-streams <n>", "concurrent Watch streams per client (per token, or per peer address without tokens)")
        .env("POPULUS_MAX_WATCH_STREAMS")
        .default(DEFAULT_MAX_WATCH_STREAMS)
        .argParser(intInRange("--max-watch-streams", 1, 100_000)),
    )
    .addOption(
      new Option("--max-watch-streams-total <n>", "concurrent Watch streams on this server, all clients together (each costs it about 60 KB)")
        .env("POPULUS_MAX_WATCH_STREAMS_TOTAL")
        .default(DEFAULT_MAX_WATCH_STREAMS_TOTAL)
        .argParser(intInRange("--max-watch-streams-total", 1, 1_000_000)),
    )
    .addOption(
      new Option("--db-pool-size <n>", "MySQL family: connections in the pool")
        .env("POPULUS_DB_POOL_SIZE")
        .default(20)
        .argParser(intInRange("--db-pool-size", 1, 1000)),
    )
    .addOption(
      new Option("--db-pool-wait <seconds>", "MySQL family: how long a call waits for a pooled connection when all are busy before it is answered UNAVAILABLE")
        .env("POPULUS_DB_POOL_WAIT")
        .default(5)
        .argParser(intInRange("--db-pool-wait", 1, 60)),
    )
    .addOption(
      new Option("--sqlite-cache <MiB>", "SQLite: the page cache of the server's connection; it grows to this as pages are used")
        .env("POPULUS_SQLITE_CACHE")
        .default(DEFAULT_SQLITE_CACHE_MIB)
        .argParser(intInRange("--sqlite-cache", 2, 65_536)),
    )
    .helpOption("-h, --help", "show this help")
    .showSuggestionAfterError(true)
    .allowExcessArguments(false);
}

/** What parseServerConfig decided: run with a config, or exit now (help, bad flags). */
export type ParseOutcome = { readonly kind: "run"; readonly config: ServerConfig } | { readonly kind: "exit"; readonly code: number };

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
    host: string;
    port: number;
    database: string;
    logLevel: ServerConfig["logLevel"];
    shutdownGrace: number;
    maxLostAttempts: number;
    eventRetention: number;
    reserveRecheck: number;
    tokensFile?: string;
    insecure?: boolean;
    tlsCert?: string;
    tlsKey?: string;
    maxWatchStreams: number;
    maxWatchStreamsTotal: number;
    dbPoolSize: number;
    dbPoolWait: number;
    sqliteCache: number;
  }>();
  if (o.host.trim() === "") throw new ConfigError("--host must not be empty");
  const tokens = tokenSource(o.tokensFile, env.POPULUS_TOKENS);
  const insecure = o.insecure === true || envFlag(env, "POPULUS_INSECURE");
  if (tokens === null && !insecure && !isLoopback(o.host)) {
    throw new ConfigError(
      `--host ${o.host} is not a loopback address and no tokens are configured, so anyone who reaches it could delete jobs; ` +
        "give --tokens-file (or POPULUS_TOKENS), or --insecure to serve it unauthenticated anyway",
    );
  }
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    throw new ConfigError(o.tlsCert === undefined ? "--tls-key needs --tls-cert (POPULUS_TLS_CERT) too" : "--tls-cert needs --tls-key (POPULUS_TLS_KEY) too");
  }
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
      reserveRecheckSeconds: o.reserveRecheck,
      tokens,
      insecure,
      tls: o.tlsCert === undefined || o.tlsKey === undefined ? null : Object.freeze({ certFile: o.tlsCert, keyFile: o.tlsKey }),
      maxWatchStreams: o.maxWatchStreams,
      maxWatchStreamsTotal: o.maxWatchStreamsTotal,
      dbPoolSize: o.dbPoolSize,
      dbPoolWaitSeconds: o.dbPoolWait,
      sqliteCacheMib: o.sqliteCache,
    }),
  };
}

/**
 * The token source: --tokens-file / POPULUS_TOKENS_FILE, or the tokens
 * themselves in POPULUS_TOKENS. Not both: which one wins would be a guess.
 * There is no flag for the tokens themselves: argv is visible to every user in `ps`.
 */
function tokenSource(file: string | undefined, inline: string | undefined): TokenSource | null {
  const text = inline?.trim() === "" ? undefined : inline;
  if (file !== undefined && text !== undefined) {
    throw new ConfigError("both a tokens file (--tokens-file/POPULUS_TOKENS_FILE) and POPULUS_TOKENS are set; give one");
  }
  if (file !== undefined) return Object.freeze({ kind: "file", path: file });
  if (text !== undefined) return Object.freeze({ kind: "env", text });
  return null;
}

/**
 * A boolean variable read by hand: commander treats any set variable as true
 * for a flag, so POPULUS_INSECURE=false would switch authentication off.
 */
function envFlag(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return false;
  if (["1", "true", "yes", "on"].includes(raw)) return true;
  if (["0", "false", "no", "off"].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false (or 1/0, yes/no, on/off), got "${env[name]}"`);
}

/** Loopback only: 127.0.0.0/8, ::1 and localhost (the only names that cannot reach another machine). */
export function isLoopback(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(h);
  return false;
}
