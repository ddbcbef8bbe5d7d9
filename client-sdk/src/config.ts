/**
 * The SDK's configuration, parsed in one place: `connect()` options (server
 * address, bearer token) and `config.jobs`, DataJoint's job settings with
 * DataJoint's defaults. This is the only module of the SDK that reads
 * `process.env`; every `POPULUS_*` variable is read here, once per process
 * (at the first use of `config.jobs`, at `connect()` for the address), and
 * validated with a message that names the variable and the fix.
 */
import { readFileSync } from "node:fs";
import { InvalidConfigError } from "./errors.js";

/** The address `connect()` uses when neither the `url` option nor `POPULUS_URL` is set. */
export const DEFAULT_URL = "http://127.0.0.1:50051";

/** Options of `connect()`. */
export interface ConnectOptions {
  /**
   * The server's base URL, e.g. `http://10.0.0.5:50051`.
   * @default process.env.POPULUS_URL, else "http://127.0.0.1:50051"
   */
  readonly url?: string;
  /**
   * A bearer token sent as `authorization: Bearer <token>` with every call.
   * @default process.env.POPULUS_TOKEN, else none
   */
  readonly token?: string;
  /**
   * PEM file of the certificate authority that signed the server's TLS
   * certificate (a private CA, or a self-signed certificate itself), for
   * `https:` URLs; read once, by `connect()`. Without it (and without `ca`)
   * the system's trust store is used.
   * @default process.env.POPULUS_CA_FILE, else none
   */
  readonly caFile?: string;
  /** The same as `caFile`, as PEM text (e.g. from a secret store); takes precedence over `caFile`. */
  readonly ca?: string;
}

/** `connect()` options with every default applied; frozen. */
export interface ResolvedConnectOptions {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  /** The bearer token, or undefined. */
  readonly token: string | undefined;
  /** The CA file, or undefined. */
  readonly caFile: string | undefined;
  /**
   * The CA certificate(s) in PEM, from `ca` or read from `caFile`, or
   * undefined for the system's trust store. Text, not a path, so that child
   * processes and the heartbeat thread trust exactly what the parent read.
   */
  readonly ca: string | undefined;
}

/** Applies defaults and validates `connect()` options; throws InvalidConfigError naming the option. */
export function resolveConnectOptions(options: ConnectOptions = {}): ResolvedConnectOptions {
  const fromEnv = options.url === undefined;
  const raw = options.url ?? nonEmpty(process.env.POPULUS_URL) ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new InvalidConfigError(`${fromEnv ? "POPULUS_URL" : "url"}: "${raw}" is not a URL; use e.g. http://127.0.0.1:50051`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new InvalidConfigError(`${fromEnv ? "POPULUS_URL" : "url"}: "${raw}" must start with http:// or https://`);
  }
  const caFile = options.caFile ?? nonEmpty(process.env.POPULUS_CA_FILE);
  const caOption = options.caFile === undefined ? "POPULUS_CA_FILE" : "caFile";
  return Object.freeze({
    url: raw.replace(/\/+$/, ""),
    token: options.token ?? nonEmpty(process.env.POPULUS_TOKEN),
    caFile,
    ca: options.ca !== undefined ? checkPem(options.ca, "ca") : caFile === undefined ? undefined : readPem(caFile, caOption),
  });
}

function readPem(path: string, option: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new InvalidConfigError(`${option}: cannot read "${path}" (${code === "ENOENT" ? "no such file" : (code ?? "unreadable")})`);
  }
  return checkPem(text, `${option} "${path}"`);
}

function checkPem(text: string, what: string): string {
  if (!text.includes("-----BEGIN CERTIFICATE-----")) throw new InvalidConfigError(`${what}: not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`);
  return text;
}

/** How the code version recorded with each job is found: none, or `git rev-parse --short HEAD` of the cwd. */
export type VersionMethod = null | "git";

/** A plain copy of `config.jobs`, as handed to child processes. */
export interface JobsSettings {
  /** Refresh the key source before populate (`POPULUS_AUTO_REFRESH`). @default true */
  readonly autoRefresh: boolean;
  /**
   * Seconds: populate's refresh is skipped when a refresh of the table by any populate finished less
   * than this long ago (`POPULUS_REFRESH_INTERVAL`). Whatever it is, a populate never refreshes while
   * another one's refresh of the table is running. 0 to 86,400. @default 0
   */
  readonly refreshInterval: number;
  /** Keep job rows with status success after completion (`POPULUS_KEEP_COMPLETED`). @default false */
  readonly keepCompleted: boolean;
  /** Seconds after which a job whose key left the key source is removed by refresh (`POPULUS_STALE_TIMEOUT`). @default 3600 */
  readonly staleTimeout: number;
  /** Priority of jobs added by refresh, 0-255, lower is more urgent (`POPULUS_DEFAULT_PRIORITY`). @default 5 */
  readonly defaultPriority: number;
  /** How the code version is recorded (`POPULUS_VERSION_METHOD`: empty/"none" or "git"). @default null */
  readonly versionMethod: VersionMethod;
}

/** DataJoint's defaults. */
const JOBS_DEFAULTS: JobsSettings = Object.freeze({
  autoRefresh: true,
  refreshInterval: 0,
  keepCompleted: false,
  staleTimeout: 3600,
  defaultPriority: 5,
  versionMethod: null,
});

function checkBoolean(name: string, v: unknown): boolean {
  if (typeof v !== "boolean") throw new InvalidConfigError(`${name} must be true or false, got ${show(v)}`);
  return v;
}

function checkStaleTimeout(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new InvalidConfigError(`${name} must be a number of seconds >= 0, got ${show(v)}`);
  }
  return v;
}

/** The longest refreshInterval: a day, ClaimRefresh's bound on min_interval. */
export const MAX_REFRESH_INTERVAL_S = 86_400;

function checkRefreshInterval(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > MAX_REFRESH_INTERVAL_S) {
    throw new InvalidConfigError(`${name} must be a number of seconds from 0 to ${MAX_REFRESH_INTERVAL_S}, got ${show(v)}`);
  }
  return v;
}

function checkPriority(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
    throw new InvalidConfigError(`${name} must be an integer from 0 (most urgent) to 255, got ${show(v)}`);
  }
  return v;
}

function checkVersionMethod(name: string, v: unknown): VersionMethod {
  if (v !== null && v !== "git") throw new InvalidConfigError(`${name} must be null or "git", got ${show(v)}`);
  return v;
}

/**
 * DataJoint's job settings. Each property validates on assignment
 * (`config.jobs.keepCompleted = true`; a bad value throws InvalidConfigError
 * and leaves the setting as it was). Initial values come from the
 * environment, else DataJoint's defaults.
 */
export class JobsConfig implements JobsSettings {
  #autoRefresh: boolean;
  #refreshInterval: number;
  #keepCompleted: boolean;
  #staleTimeout: number;
  #defaultPriority: number;
  #versionMethod: VersionMethod;

  /** Settings from `initial` (validated), else the defaults. */
  constructor(initial: Partial<JobsSettings> = {}) {
    const s = { ...JOBS_DEFAULTS, ...initial };
    this.#autoRefresh = checkBoolean("config.jobs.autoRefresh", s.autoRefresh);
    this.#refreshInterval = checkRefreshInterval("config.jobs.refreshInterval", s.refreshInterval);
    this.#keepCompleted = checkBoolean("config.jobs.keepCompleted", s.keepCompleted);
    this.#staleTimeout = checkStaleTimeout("config.jobs.staleTimeout", s.staleTimeout);
    this.#defaultPriority = checkPriority("config.jobs.defaultPriority", s.defaultPriority);
    this.#versionMethod = checkVersionMethod("config.jobs.versionMethod", s.versionMethod);
  }

  /** Refresh the key source before populate. @default true */
  get autoRefresh(): boolean {
    return this.#autoRefresh;
  }
  set autoRefresh(v: boolean) {
    this.#autoRefresh = checkBoolean("config.jobs.autoRefresh", v);
  }

  /** Seconds within which a finished refresh of the table is not repeated by populate. @default 0 */
  get refreshInterval(): number {
    return this.#refreshInterval;
  }
  set refreshInterval(v: number) {
    this.#refreshInterval = checkRefreshInterval("config.jobs.refreshInterval", v);
  }

  /** Keep job rows with status success after completion. @default false */
  get keepCompleted(): boolean {
    return this.#keepCompleted;
  }
  set keepCompleted(v: boolean) {
    this.#keepCompleted = checkBoolean("config.jobs.keepCompleted", v);
  }

  /** Seconds after which a job whose key left the key source is removed by refresh. @default 3600 */
  get staleTimeout(): number {
    return this.#staleTimeout;
  }
  set staleTimeout(v: number) {
    this.#staleTimeout = checkStaleTimeout("config.jobs.staleTimeout", v);
  }

  /** Priority of jobs added by refresh, 0-255 (lower is more urgent). @default 5 */
  get defaultPriority(): number {
    return this.#defaultPriority;
  }
  set defaultPriority(v: number) {
    this.#defaultPriority = checkPriority("config.jobs.defaultPriority", v);
  }

  /** null, or "git" to record `git rev-parse --short HEAD` of the cwd with each job. @default null */
  get versionMethod(): VersionMethod {
    return this.#versionMethod;
  }
  set versionMethod(v: VersionMethod) {
    this.#versionMethod = checkVersionMethod("config.jobs.versionMethod", v);
  }

  /** Sets several settings at once, all validated before any is changed. */
  set(settings: Partial<JobsSettings>): void {
    const next = new JobsConfig({ ...this.snapshot(), ...settings });
    this.#autoRefresh = next.autoRefresh;
    this.#refreshInterval = next.refreshInterval;
    this.#keepCompleted = next.keepCompleted;
    this.#staleTimeout = next.staleTimeout;
    this.#defaultPriority = next.defaultPriority;
    this.#versionMethod = next.versionMethod;
  }

  /** A frozen plain copy of the current settings. */
  snapshot(): JobsSettings {
    return Object.freeze({
      autoRefresh: this.#autoRefresh,
      refreshInterval: this.#refreshInterval,
      keepCompleted: this.#keepCompleted,
      staleTimeout: this.#staleTimeout,
      defaultPriority: this.#defaultPriority,
      versionMethod: this.#versionMethod,
    });
  }
}

/** Parses the `POPULUS_*` job variables; throws InvalidConfigError naming the variable. */
export function jobsSettingsFromEnv(env: NodeJS.ProcessEnv): Partial<JobsSettings> {
  const out: { -readonly [K in keyof JobsSettings]?: JobsSettings[K] } = {};
  const bool = (name: string): boolean | undefined => {
    const raw = nonEmpty(env[name]);
    if (raw === undefined) return undefined;
    const v = raw.toLowerCase();
    if (["1", "true", "yes", "on"].includes(v)) return true;
    if (["0", "false", "no", "off"].includes(v)) return false;
    throw new InvalidConfigError(`${name} must be true or false (or 1/0, yes/no, on/off), got "${raw}"`);
  };
  const num = (name: string): number | undefined => {
    const raw = nonEmpty(env[name]);
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (Number.isNaN(v)) throw new InvalidConfigError(`${name} must be a number, got "${raw}"`);
    return v;
  };
  const autoRefresh = bool("POPULUS_AUTO_REFRESH");
  if (autoRefresh !== undefined) out.autoRefresh = autoRefresh;
  const interval = num("POPULUS_REFRESH_INTERVAL");
  if (interval !== undefined) out.refreshInterval = checkRefreshInterval("POPULUS_REFRESH_INTERVAL", interval);
  const keepCompleted = bool("POPULUS_KEEP_COMPLETED");
  if (keepCompleted !== undefined) out.keepCompleted = keepCompleted;
  const stale = num("POPULUS_STALE_TIMEOUT");
  if (stale !== undefined) out.staleTimeout = checkStaleTimeout("POPULUS_STALE_TIMEOUT", stale);
  const priority = num("POPULUS_DEFAULT_PRIORITY");
  if (priority !== undefined) out.defaultPriority = checkPriority("POPULUS_DEFAULT_PRIORITY", priority);
  const version = nonEmpty(env.POPULUS_VERSION_METHOD);
  if (version !== undefined) {
    if (version === "none" || version === "null") out.versionMethod = null;
    else out.versionMethod = checkVersionMethod("POPULUS_VERSION_METHOD", version);
  }
  return out;
}

/** The SDK's process-wide configuration. */
export interface PopulusConfig {
  /** DataJoint's job settings; assign to change them (validated). */
  readonly jobs: JobsConfig;
}

let jobsConfig: JobsConfig | undefined;

/**
 * The process-wide configuration. `config.jobs` starts from the `POPULUS_*`
 * environment variables, read when it is first used, else DataJoint's
 * defaults. A bad variable throws InvalidConfigError naming it from that first
 * use (and from each one after, until it is fixed), not at import: importing
 * the SDK cannot fail, so a CLI that imports it refuses the variable as it
 * refuses its other bad options, and a program that never populates is not
 * stopped by one.
 */
export const config: PopulusConfig = Object.freeze({
  get jobs(): JobsConfig {
    jobsConfig ??= new JobsConfig(jobsSettingsFromEnv(process.env));
    return jobsConfig;
  },
});

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function show(v: unknown): string {
  return typeof v === "string" ? `"${v}"` : String(v);
}
