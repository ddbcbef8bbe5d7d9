/**
 * The options that say which server to talk to and how, shared by
 * populus-worker and populus: `--server`, `--token-file` and `--ca-file`
 * (with POPULUS_URL, POPULUS_TOKEN_FILE and POPULUS_CA_FILE), and how they
 * reach the SDK's `connect()`.
 */
import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError, Option } from "commander";
import { ConfigError } from "./config-error.js";

/** Where and how to connect; undefined leaves the SDK's default (POPULUS_URL / POPULUS_TOKEN / POPULUS_CA_FILE, else none). */
export interface ConnectionSettings {
  /** The server's base URL, without a trailing slash. @default the SDK's: POPULUS_URL, else http://127.0.0.1:50051 */
  readonly server: string | undefined;
  /** The bearer token, read from --token-file. @default the SDK's: POPULUS_TOKEN, else none */
  readonly token: string | undefined;
  /** PEM file of the CA of an https:// server's certificate. @default the SDK's: POPULUS_CA_FILE, else the system's trust store */
  readonly caFile: string | undefined;
}

/** The raw values commander parsed for these options. */
export interface ConnectionFlags {
  readonly server?: string;
  readonly tokenFile?: string;
  readonly caFile?: string;
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

/** Adds `--server`, `--token-file` and `--ca-file` to `command`. */
export function addConnectionOptions(command: Command): Command {
  return (
    command
      .addOption(new Option("--server <url>", "the Populus server").env("POPULUS_URL").argParser(serverUrl))
      // A file, not the token itself: argv is visible to every user in `ps`. POPULUS_TOKEN also works.
      .addOption(new Option("--token-file <path>", "a file holding the bearer token (or the token itself in POPULUS_TOKEN)").env("POPULUS_TOKEN_FILE"))
      .addOption(new Option("--ca-file <path>", "PEM file of the CA of an https:// server's certificate").env("POPULUS_CA_FILE"))
  );
}

/** The settings of the parsed flags: the token read from its file (a ConfigError if unreadable or empty). */
export function connectionSettings(flags: ConnectionFlags): ConnectionSettings {
  return {
    server: flags.server,
    token: flags.tokenFile === undefined ? undefined : readToken(flags.tokenFile),
    caFile: flags.caFile === undefined || flags.caFile.trim() === "" ? undefined : flags.caFile.trim(),
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
 * Makes the settings those of every `connect()` without options of its own
 * (which reads POPULUS_URL, POPULUS_TOKEN and POPULUS_CA_FILE): a pipeline
 * module's, imported after this, and populate's child processes, which
 * inherit the environment.
 */
export function exportConnectSettings(settings: ConnectionSettings, env: NodeJS.ProcessEnv = process.env): void {
  if (settings.server !== undefined) env.POPULUS_URL = settings.server;
  if (settings.token !== undefined) env.POPULUS_TOKEN = settings.token;
  if (settings.caFile !== undefined) env.POPULUS_CA_FILE = settings.caFile;
}
