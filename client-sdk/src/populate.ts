/**
 * `table.populate(options)`: DataJoint's populate over Populus.
 *
 * - `reserveJobs: true`: refresh (when `refresh`, default
 *   `config.jobs.autoRefresh`), then reserve loops, in this process or in
 *   `processes` child processes that each open their own connection.
 * - `reserveJobs: false` ("direct", DataJoint's default): always refresh the
 *   key source, then the same reserve loop. There is no RPC that writes a
 *   result without a lease (the server is the only writer of targets, which
 *   is what makes commits exactly-once), so direct mode commits through
 *   leases too; it leaves no job row behind beyond what refresh creates (a
 *   completed job's row is deleted unless keepCompleted, a failed one stays
 *   as error, as it would with reserveJobs).
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { DoneMessage, FailureMessage, FatalMessage, StartMessage, ToChild, ToParent } from "./child-protocol.js";
import { config, type JobsSettings, MAX_REFRESH_INTERVAL_S } from "./config.js";
import { InvalidArgumentError, MakeError, TableNotFoundError, UnavailableError, WorkerProcessError } from "./errors.js";
import { JobStatus } from "./gen/populus/v1/types_pb.js";
import { type KeyRecord, type KeyValue, toRestriction } from "./keys.js";
import { PopulateProgress } from "./populate-progress.js";
import { claimedRefresh } from "./claimed-refresh.js";
import { refreshKeySource } from "./refresh.js";
import type { Make } from "./table-definition.js";
import { GracefulStop } from "./graceful-stop.js";
import { startHeartbeatThread } from "./heartbeat-thread.js";
import { ChildLeaseRelay } from "./populate-heartbeat.js";
import { type KeyError, LEASE_DURATION_S, runReserveLoop } from "./reserve-loop.js";
import type { Table } from "./table.js";
import { childImporting } from "./table-registry.js";
import { workerIdentity } from "./worker-identity.js";

/** Options of `populate()`, with DataJoint's meanings. */
export interface PopulateOptions<K extends object = KeyRecord> {
  /** Coordinate through the server's jobs table (false: compute key source − target directly). @default false */
  readonly reserveJobs?: boolean;
  /**
   * Real OS processes that each open their own connection and reserve on
   * their own; 1 runs in this process. Each child imports the module that
   * defined the table, so define tables at the top level of a module file
   * that has no other side effects. No child starts when no job is pending
   * (at the asked priority and restriction). @default 1
   */
  readonly processes?: number;
  /** Most make calls in all, across processes (each process gets its share). @default no limit */
  readonly maxCalls?: number;
  /** false: the first failure is recorded as an error job and thrown as MakeError; true: go on and collect. @default false */
  readonly suppressErrors?: boolean;
  /** Only jobs at this priority or more urgent (lower numbers). @default any */
  readonly priority?: number;
  /**
   * Refresh the key source first (with config.jobs.defaultPriority and staleTimeout). With
   * reserveJobs the refresh is coordinated across every worker: it is skipped, and populate goes
   * straight to reserving, while another populate's refresh of the table runs anywhere, or when one
   * finished less than `refreshInterval` seconds ago. @default config.jobs.autoRefresh
   */
  readonly refresh?: boolean;
  /** Seconds within which a finished refresh of the table (by any populate) is not repeated; 0 to 86,400. @default config.jobs.refreshInterval */
  readonly refreshInterval?: number;
  /** Only keys with these attribute values (DataJoint's restriction). @default none */
  readonly restriction?: Readonly<Partial<Record<keyof K & string, KeyValue>>>;
  /**
   * Lease length in seconds (1 to 86,400): a crashed worker's jobs come back this long after its
   * last heartbeat; heartbeats every third of it keep long makes leased. @default 60
   */
  readonly leaseDuration?: number;
  /**
   * Stops populate gracefully when aborted: nothing more is reserved, running
   * makes get `grace` seconds to finish (and commit), then their `ctx.signal`
   * is aborted and every held lease is released without charging an
   * attempt; populate then resolves as usual with what was done. populate
   * installs no signal handlers of its own (a library must not take over the
   * process's SIGTERM/SIGINT): wire them to this, e.g.
   * `process.once("SIGTERM", () => ac.abort())`, as populus-worker does.
   * With `processes: N` the children stop the same way, and a SIGTERM/SIGINT
   * that reaches a child directly (Ctrl-C reaches the whole process group)
   * stops it with the same grace. @default none
   */
  readonly signal?: AbortSignal;
  /** Seconds running makes may take to finish after `signal` aborts (0: abort them at once). @default 30 */
  readonly grace?: number;
  /**
   * Draws progress on stderr: a bar redrawn in place on a TTY, else one line
   * every 2 s and a last one at the end, e.g. `ProcessedData: 120/300 done,
   * 3 errors, 4 reserved, 2.1 s, 57 keys/s` ("done" counts computed and
   * failed keys). With reserveJobs the numbers are the server's, for the
   * whole table and every worker: done = target + error, total = done +
   * pending + reserved. Without it they are this populate's own: the pending
   * jobs it is about to compute and its make calls. An object draws to
   * another stream (`isTTY` decides bar or lines) or at another line
   * interval. @default false
   */
  readonly displayProgress?: boolean | DisplayProgressOptions;
}

/** Where and how often `populate({ displayProgress })` draws. */
export interface DisplayProgressOptions {
  /** The stream to draw to: a bar when its `isTTY` is true, else lines. @default process.stderr */
  readonly stream?: NodeJS.WritableStream & { readonly isTTY?: boolean; readonly columns?: number };
  /** Seconds between two lines when the stream is not a TTY. @default 2 */
  readonly lineInterval?: number;
}

/** What populate did. */
export interface PopulateResult<K extends object = KeyRecord> {
  /** Results committed. */
  readonly successCount: number;
  /** The keys whose make failed, with the message (suppressErrors: true; else at most the one that was thrown). */
  readonly errorList: readonly { readonly key: K; readonly message: string }[];
}

interface Resolved {
  readonly reserveJobs: boolean;
  readonly processes: number;
  readonly maxCalls: number | undefined;
  readonly suppressErrors: boolean;
  readonly priority: number | undefined;
  readonly refresh: boolean;
  readonly refreshInterval: number;
  readonly restriction: Readonly<Record<string, KeyValue>> | undefined;
  readonly leaseDurationS: number;
  readonly graceS: number;
}

/** Default of populate's `grace`, seconds. */
export const GRACE_S = 30;

function resolveOptions(table: string, o: PopulateOptions<KeyRecord>, settings: JobsSettings): Resolved {
  const bad = (what: string) => new InvalidArgumentError(`${table}.populate: ${what}`);
  if (o.processes !== undefined && (!Number.isInteger(o.processes) || o.processes < 1)) throw bad(`processes must be an integer >= 1, got ${o.processes}`);
  if (o.maxCalls !== undefined && (!Number.isInteger(o.maxCalls) || o.maxCalls < 0)) throw bad(`maxCalls must be an integer >= 0, got ${o.maxCalls}`);
  if (o.priority !== undefined && (!Number.isInteger(o.priority) || o.priority < 0 || o.priority > 255)) {
    throw bad(`priority must be an integer from 0 to 255, got ${o.priority}`);
  }
  if (o.leaseDuration !== undefined && !(Number.isFinite(o.leaseDuration) && o.leaseDuration >= 1 && o.leaseDuration <= 86_400)) {
    throw bad(`leaseDuration must be from 1 to 86400 seconds, got ${o.leaseDuration}`);
  }
  if (o.refreshInterval !== undefined && !(Number.isFinite(o.refreshInterval) && o.refreshInterval >= 0 && o.refreshInterval <= MAX_REFRESH_INTERVAL_S)) {
    throw bad(`refreshInterval must be from 0 to ${MAX_REFRESH_INTERVAL_S} seconds, got ${o.refreshInterval}`);
  }
  if (o.grace !== undefined && !(Number.isFinite(o.grace) && o.grace >= 0 && o.grace <= 86_400))
    throw bad(`grace must be from 0 to 86400 seconds, got ${o.grace}`);
  return {
    reserveJobs: o.reserveJobs ?? false,
    processes: o.processes ?? 1,
    maxCalls: o.maxCalls,
    suppressErrors: o.suppressErrors ?? false,
    priority: o.priority,
    refresh: o.refresh ?? settings.autoRefresh,
    refreshInterval: o.refreshInterval ?? settings.refreshInterval,
    restriction: o.restriction as Readonly<Record<string, KeyValue>> | undefined,
    leaseDurationS: o.leaseDuration ?? LEASE_DURATION_S,
    graceS: o.grace ?? GRACE_S,
  };
}

/** Runs populate for `table`; see PopulateOptions. */
export async function populate<K extends object>(table: Table<K>, options: PopulateOptions<K>): Promise<PopulateResult<K>> {
  if (childImporting()) {
    throw new WorkerProcessError(
      `${table.name}.populate() ran while a populate child process imported the module that defines the tables; ` +
        "call populate from another module (the module that defines tables must not run populate when imported)",
    );
  }
  const settings = config.jobs.snapshot();
  const o = resolveOptions(table.name, options as PopulateOptions<KeyRecord>, settings);
  const progress = progressDisplayOf(table as unknown as Table, o, options.displayProgress);
  try {
    const result = await populateResolved(table, options, settings, o, progress);
    await progress?.finish(result);
    return result;
  } catch (err) {
    await progress?.finish(undefined);
    throw err;
  }
}

/** The display of `displayProgress`, or undefined when it is off. */
function progressDisplayOf(table: Table, o: Resolved, display: PopulateOptions["displayProgress"]): PopulateProgress | undefined {
  if (display === undefined || display === false) return undefined;
  const { stream, lineInterval } = display === true ? {} : display;
  if (lineInterval !== undefined && !(Number.isFinite(lineInterval) && lineInterval > 0)) {
    throw new InvalidArgumentError(`${table.name}.populate: displayProgress.lineInterval must be a number of seconds > 0, got ${lineInterval}`);
  }
  return new PopulateProgress(table, o, { stream, lineIntervalMs: lineInterval === undefined ? undefined : lineInterval * 1000 });
}

/** populate after its options were resolved. */
async function populateResolved<K extends object>(
  table: Table<K>,
  options: PopulateOptions<K>,
  settings: JobsSettings,
  o: Resolved,
  progress: PopulateProgress | undefined,
): Promise<PopulateResult<K>> {
  // Stopped before it started: nothing reserved, nothing to give back.
  if (options.signal?.aborted === true) return { successCount: 0, errorList: [] };
  /** Whether a job is pending, when the refresh said so: false leaves nothing to reserve. */
  let anyPending: boolean | undefined;
  const params = { priority: settings.defaultPriority, staleTimeout: settings.staleTimeout, orphanTimeout: undefined, delay: 0 };
  if (!o.reserveJobs) {
    // Direct mode computes what its own key source says is missing: always read.
    ({ anyPending } = await refreshKeySource(table.rpc, table.name, table.definition.keySource, params));
  } else if (o.refresh) {
    ({ anyPending } = await claimedRefresh(table.rpc, table.name, table.definition.keySource, params, table.refreshClaim, o.refreshInterval, options.signal));
  }
  await progress?.begin();
  // A table with nothing pending (already done, or an idle worker's pass): no Reserve to find that out.
  if (anyPending === false) return { successCount: 0, errorList: [] };
  const processes = o.maxCalls === undefined ? o.processes : Math.max(1, Math.min(o.processes, o.maxCalls));
  if (processes === 1) {
    const stop = new GracefulStop().follow(options.signal, o.graceS);
    const result = await runReserveLoop({
      rpc: table.rpc,
      heartbeat: (listener) => startHeartbeatThread({ connect: table.connectOptions, table: table.name, leaseDurationS: o.leaseDurationS }, listener),
      table: table.name,
      make: progress?.counting(table.definition.make as unknown as Make<KeyRecord>) ?? (table.definition.make as unknown as Make<KeyRecord>),
      identity: workerIdentity(settings.versionMethod),
      maxCalls: o.maxCalls,
      priority: o.priority,
      restriction: o.restriction,
      suppressErrors: o.suppressErrors,
      keepCompleted: settings.keepCompleted,
      leaseDurationS: o.leaseDurationS,
      signal: stop.stopSignal,
      cancel: stop.cancelSignal,
    }).finally(() => stop.dispose());
    if (result.failure !== undefined) throw new MakeError(result.failure.key, result.failure.message, { cause: result.failure.cause });
    return { successCount: result.successCount, errorList: result.errorList } as unknown as PopulateResult<K>;
  }
  return (await runChildren(table as unknown as Table, o, processes, settings, options.signal, progress)) as PopulateResult<K>;
}

/** The child entry next to this module (populate-child.js in dist, .ts when the SDK runs from source). */
function childEntry(): string {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  return fileURLToPath(new URL(`./populate-child${ext}`, import.meta.url));
}

interface ChildOutcome {
  readonly pid: number | undefined;
  done?: DoneMessage;
  fatal?: FatalMessage;
  code?: number | null;
  signal?: NodeJS.Signals | null;
}

/** Runs the reserve loop in `processes` child processes and sums their results. */
async function runChildren(
  table: Table,
  o: Resolved,
  processes: number,
  settings: JobsSettings,
  signal: AbortSignal | undefined,
  progress?: PopulateProgress,
): Promise<PopulateResult> {
  if (table.site.moduleUrl === undefined) throw unloadable(table.name, table.site.where);
  // No child process starts for an empty queue, as DataJoint's populate starts no pool for no keys:
  // an idle populus-worker --processes N forked N processes (about 0.2 s of CPU each) every pass
  // only for them to find nothing.
  if (!(await anyPending(table, o))) return { successCount: 0, errorList: [] };
  const entry = childEntry();
  const children: ChildProcess[] = [];
  let firstFailure: FailureMessage | undefined;
  // A child may be exiting while we write to it (EPIPE): a child that is
  // gone needs no message, and its exit is what we wait for anyway.
  const sendTo = (child: ChildProcess, message: ToChild) => {
    if (child.connected) child.send(message, () => undefined);
  };
  // After a failure the others stop at once (grace 0), as DataJoint's populate raises at the first error.
  const stopAll = (graceS = 0) => {
    for (const child of children) sendTo(child, { type: "stop", graceS });
  };
  const onAbort = () => stopAll(o.graceS);
  signal?.addEventListener("abort", onAbort, { once: true });
  // One heartbeat thread here renews the leases of every child (populate-heartbeat.ts).
  let heartbeatFailure: Error | undefined;
  const heartbeat = startHeartbeatThread(
    { connect: table.connectOptions, table: table.name, leaseDurationS: o.leaseDurationS },
    {
      onLost: (tokens) => relay.lost(tokens),
      onError: (err) => {
        heartbeatFailure ??= err;
        stopAll();
      },
    },
  );
  const relay = new ChildLeaseRelay(heartbeat);
  const outcomes = Array.from({ length: processes }, async (_, i): Promise<ChildOutcome> => {
    // Each child's share of maxCalls: the remainder goes to the first ones.
    const share = o.maxCalls === undefined ? undefined : Math.floor(o.maxCalls / processes) + (i < o.maxCalls % processes ? 1 : 0);
    const child = fork(entry, [], { serialization: "advanced", stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    // An IPC error is followed by "exit"; a child that could not be spawned has no exit to wait for.
    let spawnFailed = () => undefined as void;
    child.on("error", () => {
      if (child.pid === undefined) spawnFailed();
    });
    const outcome: ChildOutcome = { pid: child.pid };
    child.on("message", (m: ToParent) => {
      if (m.type === "hold" || m.type === "drop" || m.type === "progress") relay.receive(child, m);
      else if (m.type === "done") outcome.done = m;
      else if (m.type === "make") progress?.made(m.outcome);
      else if (m.type === "fatal") {
        outcome.fatal = m;
        stopAll();
      } else if (m.type === "failure" && firstFailure === undefined) {
        firstFailure = m;
        stopAll();
      }
    });
    // "close", not "exit": the IPC channel is closed by then, so every message the child sent
    // (its "done" report) has been received; after "exit" one may still be on its way (under
    // load a child that reported and exited 0 was taken for one that never reported).
    // Not events.once: it rejects on an "error" event, which would end populate while the other children still run.
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      child.once("close", (code, signal) => {
        relay.gone(child);
        resolve([code, signal]);
      });
      spawnFailed = () => resolve([null, null]);
    });
    const start: StartMessage = {
      type: "start",
      moduleUrl: table.site.moduleUrl ?? "",
      where: table.site.where,
      table: table.name,
      connect: table.connectOptions,
      jobs: settings,
      maxCalls: share,
      priority: o.priority,
      restriction: o.restriction,
      suppressErrors: o.suppressErrors,
      leaseDurationS: o.leaseDurationS,
      graceS: o.graceS,
      reportMakes: progress?.wantsMakeReports ?? false,
    };
    // The child boots meanwhile; it may reserve only once its leases are renewed.
    await heartbeat.ready.catch(() => undefined);
    if (heartbeatFailure === undefined) sendTo(child, start);
    else if (child.connected) child.disconnect(); // the child stops when its parent goes away; it has nothing to report
    [outcome.code, outcome.signal] = await exited;
    return outcome;
  });
  const results = await Promise.all(outcomes).finally(() => {
    signal?.removeEventListener("abort", onAbort);
    return heartbeat.stop();
  });
  if (heartbeatFailure !== undefined) {
    throw new WorkerProcessError(`the heartbeat thread of ${table.name} failed, so the children's leases were no longer renewed: ${heartbeatFailure.message}`, {
      cause: heartbeatFailure,
    });
  }

  const fatal = results.find((r) => r.fatal !== undefined)?.fatal;
  if (fatal !== undefined) {
    // The same class as in a single process, so callers (populus-worker) can tell a server that is gone from a broken pipeline.
    if (fatal.name === "UnavailableError") throw new UnavailableError(fatal.message);
    throw new WorkerProcessError(fatal.name === "WorkerProcessError" ? fatal.message : `${fatal.name}: ${fatal.message}`);
  }
  if (firstFailure !== undefined && !o.suppressErrors) throw new MakeError(firstFailure.key, firstFailure.message);
  const lost = results.filter((r) => r.done === undefined);
  if (lost.length > 0) {
    throw new WorkerProcessError(
      `${lost.length} of ${processes} populate child processes ended before reporting (${lost
        .map((r) => `pid ${r.pid}: ${r.signal ?? `exit code ${r.code}`}`)
        .join(", ")}); their leased jobs come back when the leases expire or with jobs.refresh({ orphanTimeout })`,
    );
  }
  const errorList: KeyError[] = results.flatMap((r) => r.done?.errorList ?? []);
  return { successCount: results.reduce((n, r) => n + (r.done?.successCount ?? 0), 0), errorList };
}

/** Whether `table` has a pending job populate may reserve (by priority and restriction; a delayed one counts too). */
async function anyPending(table: Table, o: Resolved): Promise<boolean> {
  try {
    const page = await table.rpc.listJobs({
      table: table.name,
      statuses: [JobStatus.PENDING],
      maxPriority: o.priority,
      restriction: toRestriction(o.restriction),
      pageSize: 1,
    });
    return page.jobs.length > 0;
  } catch (err) {
    if (err instanceof TableNotFoundError) return false; // never refreshed: nothing to do, as the reserve loop finds too
    throw err;
  }
}

/** The error for a table that a child process cannot import. */
export function unloadable(table: string, where: string): WorkerProcessError {
  return new WorkerProcessError(`table ${table} was defined in ${where}, which a child process cannot load; define tables in a module file`);
}
