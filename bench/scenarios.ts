/**
 * The bench scenarios (README, Benchmark), run against one dialect. Every scenario
 * starts its own server (so that its peak RSS is its own) on the port of
 * BENCH_URL, on a fresh database, and checks what it measured: a drain that
 * does not commit every key exactly once throws, and the bench fails.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { type PerformanceEntry, PerformanceObserver, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { connect, ResourceExhaustedError } from "../client-sdk/dist/index.js";
import { durationOf } from "../client-sdk/dist/wire-values.js";
import mysql from "mysql2/promise";
import { MYSQL_REFRESH_CALLS_AT_ONCE } from "../server/dist/store/mysql/mysql-store.js";
import { createTableStatements, jobsTable, targetTable } from "../server/dist/store/mysql/table-ddl.js";
import { createTestDatabase, type Dialect } from "../test/helpers/databases.js";
import { histogramSample } from "../test/helpers/prometheus.js";
import { type ServerProcess, startServer } from "../test/helpers/server-process.js";
import { cpuSeconds, type DatabaseWork, MariadbCounters, mariadbdPid } from "./mariadb-counters.js";
import { db, makeCalls, tables } from "./pipeline.js";
import { percentile, percentileOfCounts, type Spread, spread } from "./stats.js";

type Rpc = Client<typeof JobService>;

/** Sizes of one bench mode. */
export interface Sizes {
  readonly repetitions: number;
  /** Keys drained per run (scenarios 1 and 5). */
  readonly drainKeys: number;
  /** Keys of the refresh scenario. */
  readonly refreshKeys: number;
  /** Jobs drained per run of the flat-cost scenario, from a small and a large queue. */
  readonly flatDrain: number;
  readonly flatLargeQueue: number;
  /** Reserve→Complete round trips per run of the latency scenario. */
  readonly roundTrips: number;
  readonly watchers: number;
  /** Connected idle workers of scenario 7, and how long their server's CPU is measured (s). */
  readonly idleWorkers: number;
  readonly idleSeconds: number;
  /** Counts-only Watch streams asked for at once in scenario 8. */
  readonly manyWatchers: number;
  /** One-key refresh calls per run of scenario 9. */
  readonly oneKeyCalls: number;
}

export const QUICK: Sizes = {
  repetitions: 3,
  drainKeys: 3000,
  refreshKeys: 30_000,
  flatDrain: 2000,
  flatLargeQueue: 50_000,
  roundTrips: 300,
  oneKeyCalls: 500,
  watchers: 500,
  idleWorkers: 1000,
  idleSeconds: 20,
  manyWatchers: 5000,
};
export const FULL: Sizes = {
  repetitions: 3,
  drainKeys: 20_000,
  refreshKeys: 1_000_000,
  flatDrain: 10_000,
  flatLargeQueue: 1_000_000,
  roundTrips: 2000,
  oneKeyCalls: 2000,
  watchers: 500,
  idleWorkers: 1000,
  idleSeconds: 60,
  manyWatchers: 5000,
};

/** Scenario 5's figures. */
export interface WatchResults {
  /** With the watchers, first to last commit. */
  jobsPerSecond: Spread;
  withoutWatchers: Spread;
  /** The server's CPU per drain, seconds. */
  serverCpu: Spread;
  serverCpuWithout: Spread;
  /** The watchers' own process, per drain, seconds. */
  watchersCpu: Spread;
  delayP50: Spread;
  delayP99: Spread;
}

/** Scenario 1's figures for one number of processes. */
export interface DrainResults {
  endToEnd: Spread;
  commitSpan: Spread;
  /** The server's CPU per drained job, µs, from the start of populate to its end. */
  serverCpuUs: Spread;
  /** MySQL: MariaDB's CPU per drained job, µs (MariadbCounters). */
  databaseCpuUs?: Spread;
  /** MySQL: the redo log InnoDB wrote per drained job, bytes. */
  redoBytes?: Spread;
}

export interface DialectResults {
  drain: Record<string, DrainResults>;
  refresh: Record<string, Spread>;
  flat: Record<string, Spread>;
  latency: Record<string, LatencyResults>;
  watch: WatchResults;
  idle: IdleResults;
  manyWatchers: ManyWatchersResults;
  peakRssMb: Record<string, number>;
}

/** One watcher in this many takes job-level events; the others take counts only. */
const EVENT_WATCHER_EVERY = 50;

const WORKER = { workerId: "bench", host: "bench", pid: process.pid, user: "bench", codeVersion: "" };
let nextTable = 0;

/** A generic Connect client (JSON over HTTP/2), as a tool other than the SDK would call the server. */
function rpcClient(url: string): Rpc {
  return createClient(JobService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
}

/**
 * A connection of its own, as a worker or a watcher has one: the SDK's own RPCs (binary unary
 * calls on its lean transport, retries; Watch streams in binary Connect over HTTP/2 with the SDK's
 * receive windows, as the SDK's watch() and populate's progress open them and as the web console
 * reads them; the SDK's typed errors), so that the figures are what SDK clients cost the server.
 */
function sdkConnection(url: string): { rpc: Rpc; close(): void } {
  const client = connect({ url });
  return { rpc: client.rpc, close: () => client.close() };
}

/** A server on the port of BENCH_URL with a database of its own; stop() also answers its peak RSS. */
async function benchServer(
  dialect: Dialect,
  port: number,
  args: string[] = [],
): Promise<{ server: ServerProcess; rpc: Rpc; databaseUrl: string; finish(): Promise<number> }> {
  const database = await createTestDatabase(dialect);
  const server = await startServer({ database: database.url, args: ["--port", String(port), ...args] });
  db.close(); // the pipeline's connection went to the previous server
  return {
    server,
    databaseUrl: database.url,
    rpc: rpcClient(server.url),
    async finish() {
      const status = readFileSync(`/proc/${server.process.pid}/status`, "utf8");
      const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      await server.stop();
      await database.drop();
      return peakKb / 1024;
    },
  };
}

/** Queues keys `{ id: from … to-1 }` of `table` as pending, 10,000 per call. */
async function queue(rpc: Rpc, table: string, from: number, to: number): Promise<void> {
  for (let start = from; start < to; start += 10_000) {
    const keys = [];
    for (let id = start; id < Math.min(to, start + 10_000); id++) keys.push({ attributes: { id: { kind: { case: "intValue" as const, value: BigInt(id) } } } });
    await rpc.refresh({ table, keys });
  }
}

async function progress(rpc: Rpc, table: string) {
  const p = (await rpc.getProgress({ table })).progress!;
  return { pending: Number(p.pending), reserved: Number(p.reserved), error: Number(p.error), target: Number(p.target) };
}

/** First and last commit time of `table`'s target rows, ms since the epoch. */
async function commitSpan(rpc: Rpc, table: string): Promise<{ first: number; last: number }> {
  let first = Infinity;
  let last = -Infinity;
  let pageToken = "";
  do {
    const page = await rpc.listTargets({ table, pageSize: 1000, pageToken });
    for (const row of page.rows) {
      const t = Number(row.completeTime!.seconds) * 1000 + row.completeTime!.nanos / 1e6;
      first = Math.min(first, t);
      last = Math.max(last, t);
    }
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return { first, last };
}

/** Jobs/s of one drain: end to end (populate's wall time, starting its processes included), and from its first commit to its last. */
export interface DrainRate {
  endToEnd: number;
  commitSpan: number;
  /** The server's CPU during populate, seconds, when its pid was given. */
  serverCpu?: number;
  /** MariaDB's work per drained job, when its counters were given. */
  database?: DatabaseWork;
}

/**
 * Drains `keys` queued jobs with populate; answers its rates after checking every key was
 * committed exactly once, and the CPU the process `serverPid` (if given) used meanwhile.
 */
async function drainOnce(rpc: Rpc, keys: number, processes: number, maxCalls?: number, serverPid?: number, database?: MariadbCounters): Promise<DrainRate> {
  const table = tables[nextTable++];
  if (table === undefined) throw new Error("bench/pipeline.js ran out of tables");
  await queue(rpc, table.name, 0, keys);
  const expected = maxCalls ?? keys;
  const callsBefore = makeCalls.count;
  const databaseBefore = await database?.read();
  const cpuBefore = serverPid === undefined ? 0 : cpuSeconds(serverPid);
  const started = performance.now();
  const result = await table.populate({ reserveJobs: true, refresh: false, processes, suppressErrors: true, ...(maxCalls === undefined ? {} : { maxCalls }) });
  const seconds = (performance.now() - started) / 1000;
  const serverCpu = serverPid === undefined ? undefined : cpuSeconds(serverPid) - cpuBefore;
  // Read once the drain's own purge is done, so that its jobs pay for it.
  const databaseWork = database === undefined || databaseBefore === undefined ? undefined : await database.per(databaseBefore, expected);
  const after = await progress(rpc, table.name);
  const problems = [];
  if (result.successCount !== expected) problems.push(`populate committed ${result.successCount}, expected ${expected}`);
  if (result.errorList.length > 0) problems.push(`${result.errorList.length} errors`);
  if (after.target !== expected) problems.push(`the target holds ${after.target} rows, expected ${expected}`);
  if (after.reserved !== 0 || after.error !== 0 || after.pending !== keys - expected) problems.push(`jobs left: ${JSON.stringify(after)}`);
  if (processes === 1 && makeCalls.count - callsBefore !== expected) problems.push(`make ran ${makeCalls.count - callsBefore} times for ${expected} keys`);
  if (problems.length > 0) throw new Error(`exactly-once check failed on ${table.name}: ${problems.join("; ")}`);
  const span = await commitSpan(rpc, table.name);
  // Commit times are stored to the millisecond: a drain within one ms counts as one ms.
  return {
    endToEnd: expected / seconds,
    commitSpan: expected / (Math.max(1, span.last - span.first) / 1000),
    ...(serverCpu === undefined ? {} : { serverCpu }),
    ...(databaseWork === undefined ? {} : { database: databaseWork }),
  };
}

/** Scenario 1 (and 6): end-to-end drain with 4 worker processes and with 1. */
export async function drain(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void) {
  const results: Record<string, DrainResults> = {};
  const srv = await benchServer(dialect, port);
  // The first drain (4 processes) runs on a fresh server, whose CPU per job is higher (JIT).
  const serverPid = srv.server.process.pid as number;
  let database: MariadbCounters | undefined;
  let peakRssMb: number;
  try {
    database = dialect === "mysql" ? await MariadbCounters.open(srv.databaseUrl) : undefined;
    for (const processes of [4, 1]) {
      const runs: DrainRate[] = [];
      for (let i = 0; i < s.repetitions; i++) runs.push(await drainOnce(srv.rpc, s.drainKeys, processes, undefined, serverPid, database));
      const work = runs.flatMap((r) => (r.database === undefined ? [] : [r.database]));
      const serverUs = (r: DrainRate) => (r.serverCpu! * 1e6) / s.drainKeys;
      results[`${processes} process${processes === 1 ? "" : "es"}`] = {
        endToEnd: spread(runs.map((r) => r.endToEnd)),
        commitSpan: spread(runs.map((r) => r.commitSpan)),
        serverCpuUs: spread(runs.map(serverUs)),
        ...(work.length === 0 ? {} : { databaseCpuUs: spread(work.map((w) => w.cpuUs)), redoBytes: spread(work.map((w) => w.redoBytes)) }),
      };
      const perJob = (r: DrainRate) =>
        `; a job: server ${serverUs(r).toFixed(0)} µs${r.database === undefined ? "" : `, MariaDB ${r.database.cpuUs.toFixed(0)} µs, ${r.database.redoBytes.toFixed(0)} B of redo`}`;
      log(
        `drain ${processes} proc, jobs/s: ${runs.map((r) => `${r.endToEnd.toFixed(0)} (${r.commitSpan.toFixed(0)} first→last commit${perJob(r)})`).join(", ")}`,
      );
    }
  } finally {
    await database?.close();
    peakRssMb = await srv.finish();
  }
  return { results, peakRssMb };
}

/** Scenario 2: a key source into an empty table, the same again, then with 10% of it changed. */
export async function refresh(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void) {
  const srv = await benchServer(dialect, port);
  const serverPid = srv.server.process.pid as number;
  const databasePid = dialect === "mysql" ? mariadbdPid() : undefined;
  const phases: Record<string, number[]> = { "empty table": [], "same again (adds 0)": [], "10% changed": [] };
  const phaseCpu: Record<string, ProcessesCpu[]> = Object.fromEntries(Object.keys(phases).map((phase) => [phase, []]));
  // MySQL: the rows of "empty table" inserted again by mysql2 alone, each run right after the refresh.
  const databaseAlone: number[] = [];
  const databaseAloneCpuUs: number[] = [];
  for (let i = 0; i < s.repetitions; i++) {
    let shift = 0;
    const table = db.table<{ id: number }>(`Refresh${i}`, {
      *keySource() {
        for (let id = shift; id < shift + s.refreshKeys; id++) yield { id };
      },
      make: () => ({}),
    });
    for (const [phase, runs] of Object.entries(phases)) {
      if (phase === "10% changed") shift = Math.round(s.refreshKeys / 10);
      const cpu = processesCpu(serverPid, databasePid);
      const started = performance.now();
      const counts = await table.jobs.refresh();
      runs.push(s.refreshKeys / ((performance.now() - started) / 1000));
      phaseCpu[phase]!.push(cpu.perUnit(s.refreshKeys));
      const expected = phase === "empty table" ? s.refreshKeys : phase === "10% changed" ? shift : 0;
      if (counts.added !== expected) throw new Error(`refresh "${phase}" added ${counts.added}, expected ${expected}`);
    }
    if (dialect === "mysql") {
      const alone = await insertsAlone(srv.databaseUrl, `RefreshAlone${i}`, s.refreshKeys, databasePid);
      databaseAlone.push(alone.rate);
      if (alone.databaseCpuUs !== undefined) databaseAloneCpuUs.push(alone.databaseCpuUs);
    }
    const empty = phaseCpu["empty table"]!.at(-1)!;
    log(
      `refresh run ${i + 1}: ${Object.values(phases)
        .map((r) => r.at(-1)!.toFixed(0))
        .join(" / ")} keys/s; into the empty table, CPU per key: bench ${empty.benchUs.toFixed(1)} µs, server ${empty.serverUs.toFixed(1)} µs${
        empty.databaseUs === undefined
          ? ""
          : `, mariadbd ${empty.databaseUs.toFixed(1)} µs (its INSERTs alone: ${databaseAloneCpuUs.at(-1)?.toFixed(1)} µs a row)`
      }`,
    );
  }
  await srv.finish();
  return {
    phases: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, spread(v)])),
    cpuPerKey: Object.fromEntries(Object.entries(phaseCpu).map(([k, v]) => [k, spreadCpu(v)])),
    databaseAlone: databaseAlone.length === 0 ? undefined : spread(databaseAlone),
    databaseAloneCpuUs: databaseAloneCpuUs.length === 0 ? undefined : spread(databaseAloneCpuUs),
  };
}

/** CPU per unit of work (µs) of the bench process (the SDK client: all its threads), the server and (MariaDB) mariadbd. */
export interface ProcessesCpu {
  readonly benchUs: number;
  readonly serverUs: number;
  readonly databaseUs?: number;
}

/** The same, a spread over runs. */
export interface ProcessesCpuSpread {
  readonly benchUs: Spread;
  readonly serverUs: Spread;
  readonly databaseUs?: Spread;
}

/**
 * The CPU of each process from now on: perUnit(n) answers each one's since then per unit of `n`. On
 * two cores the three share the machine: their sum nearing the wall time per unit times two says
 * the machine is CPU-bound, and the server's nearing the wall time per unit alone says its one
 * thread is the limit.
 */
function processesCpu(serverPid: number, databasePid: number | undefined): { perUnit(units: number): ProcessesCpu } {
  const bench0 = process.cpuUsage();
  const server0 = cpuSeconds(serverPid);
  const database0 = databasePid === undefined ? 0 : cpuSeconds(databasePid);
  return {
    perUnit(units) {
      const bench = process.cpuUsage(bench0);
      return {
        benchUs: (bench.user + bench.system) / units,
        serverUs: ((cpuSeconds(serverPid) - server0) * 1e6) / units,
        ...(databasePid === undefined ? {} : { databaseUs: ((cpuSeconds(databasePid) - database0) * 1e6) / units }),
      };
    },
  };
}

function spreadCpu(runs: readonly ProcessesCpu[]): ProcessesCpuSpread {
  const database = runs.flatMap((r) => (r.databaseUs === undefined ? [] : [r.databaseUs]));
  return {
    benchUs: spread(runs.map((r) => r.benchUs)),
    serverUs: spread(runs.map((r) => r.serverUs)),
    ...(database.length === runs.length && database.length > 0 ? { databaseUs: spread(database) } : {}),
  };
}

/**
 * The rows a refresh of `keys` new keys inserts, inserted by mysql2 alone into a jobs table of
 * the server's own DDL, as the refresh sends them: calls of 10,000 keys (the SDK's) as one
 * transaction each of 1,000-row INSERTs (the server's), as many calls at once as the MySQL store
 * tells the SDK to send (MYSQL_REFRESH_CALLS_AT_ONCE), at READ COMMITTED (the server's): the rate
 * (rows/s) of the INSERTs alone, with no Populus process in the way; a refresh's other statements
 * (its state read, the DELETE of keys computed meanwhile, the change log) are not in it. The table
 * is dropped after, so it weighs on no later run. With `databasePid`, also MariaDB's CPU per row
 * over the same window as the rate (the INSERTs, not the connections, DDL or DROP around them).
 */
async function insertsAlone(
  databaseUrl: string,
  table: string,
  keys: number,
  databasePid: number | undefined,
): Promise<{ rate: number; databaseCpuUs?: number }> {
  const CALL_KEYS = 10_000;
  const STATEMENT_ROWS = 1_000;
  const opened = await Promise.allSettled(Array.from({ length: MYSQL_REFRESH_CALLS_AT_ONCE }, () => mysql.createConnection({ uri: databaseUrl })));
  const connections = opened.flatMap((o) => (o.status === "fulfilled" ? [o.value] : []));
  try {
    const failed = opened.find((o) => o.status === "rejected");
    if (failed !== undefined) throw failed.reason;
    for (const c of connections) await c.query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    for (const statement of createTableStatements(table)) await connections[0]!.query(statement);
    const now = Date.now();
    let next = 0;
    const database0 = databasePid === undefined ? 0 : cpuSeconds(databasePid);
    const started = performance.now();
    await Promise.all(
      connections.map(async (c) => {
        for (let from = next; from < keys; from = next) {
          next += CALL_KEYS;
          await c.query("START TRANSACTION");
          for (let start = from; start < Math.min(keys, from + CALL_KEYS); start += STATEMENT_ROWS) {
            const rows: string[] = [];
            for (let id = start; id < Math.min(keys, from + CALL_KEYS, start + STATEMENT_ROWS); id++) {
              rows.push(`('${id.toString(36).padStart(32, "0")}', '{"id":"${id}"}', 'pending', 5, ${now}, ${now}, 0)`);
            }
            await c.query(
              `INSERT INTO ${jobsTable(table)} (key_hash, key_json, status, priority, create_time, scheduled_time, attempts) VALUES ${rows.join(",")} ON DUPLICATE KEY UPDATE key_hash = key_hash`,
            );
          }
          await c.query("COMMIT");
        }
      }),
    );
    const rate = keys / ((performance.now() - started) / 1000);
    const databaseCpuUs = databasePid === undefined ? undefined : ((cpuSeconds(databasePid) - database0) * 1e6) / keys;
    await connections[0]!.query(`DROP TABLE ${jobsTable(table)}, ${targetTable(table)}`);
    return databaseCpuUs === undefined ? { rate } : { rate, databaseCpuUs };
  } finally {
    await Promise.all(connections.map((c) => c.end()));
  }
}

/** Scenario 3: drain rate with a small queue versus a large one. */
export async function flat(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void) {
  const srv = await benchServer(dialect, port);
  const small: number[] = [];
  const large: number[] = [];
  for (let i = 0; i < s.repetitions; i++) {
    // First to last commit: the queue's cost, without the processes' start-up, which is the same for both.
    // Turns alternate which goes first: this machine speeds up over the first runs of a bench.
    const drainSmall = async () => small.push((await drainOnce(srv.rpc, s.flatDrain, 4)).commitSpan);
    const drainLarge = async () => large.push((await drainOnce(srv.rpc, s.flatLargeQueue, 4, s.flatDrain)).commitSpan);
    for (const drain of i % 2 === 0 ? [drainSmall, drainLarge] : [drainLarge, drainSmall]) await drain();
    log(`flat run ${i + 1}: ${small.at(-1)!.toFixed(0)} vs ${large.at(-1)!.toFixed(0)} jobs/s`);
  }
  await srv.finish();
  return { [`${s.flatDrain} pending`]: spread(small), [`${s.flatLargeQueue} pending`]: spread(large) };
}

/** Scenario 4's figures for one number of workers. */
export interface LatencyResults {
  p50: Spread;
  p99: Spread;
  max: Spread;
  /**
   * % of the Reserve and Complete calls that the server answered within 5 and within 10 ms, timed
   * from each call's decoded request to its answer (its RPC histogram). 5 ms is half a pair's
   * budget: two such calls keep a pair's time in the server under 10 ms.
   */
  serverWithin5ms: Spread;
  serverWithin10ms: Spread;
  /**
   * Garbage-collection pauses during the run, ms in all: the server's (its
   * populus_server_nodejs_gc_duration_seconds) and the bench process's, where the clients run. A
   * pause holds every call in flight in that process, so pauses of a few ms show in the tail. The
   * server's is a lower bound: prom-client records the first of each batch of GC entries Node
   * delivers to its observer, and a busy loop turn can hold several.
   */
  serverGcMs: Spread;
  benchGcMs: Spread;
}

/** The RPC histogram's buckets read here; each must be one of server/src/service/metrics.ts's. */
const WITHIN_5_MS = "0.005";
const WITHIN_10_MS = "0.01";

/**
 * The server's Reserve and Complete calls answered OK so far: how many in all, and how many took at
 * most 5 and 10 ms; and its garbage-collection pauses so far, ms (every kind).
 */
async function reserveCompleteWithin(url: string): Promise<{ count: number; within5: number; within10: number; gcMs: number }> {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`latency: GET /metrics answered ${res.status}`);
  const text = await res.text();
  const both = (series: Parameters<typeof histogramSample>[2]) =>
    ["Reserve", "Complete"].reduce((sum, method) => sum + histogramSample(text, "populus_rpc_duration_seconds", series, { method, code: "OK" }), 0);
  const gcSeconds = text
    .split("\n")
    .filter((line) => line.startsWith(`${SERVER_GC_HISTOGRAM}_sum{`))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
  return { count: both("count"), within5: both({ le: WITHIN_5_MS }), within10: both({ le: WITHIN_10_MS }), gcMs: gcSeconds * 1000 };
}

/** prom-client's default GC histogram under the server's metric prefix (server/src/service/metrics.ts). */
const SERVER_GC_HISTOGRAM = "populus_server_nodejs_gc_duration_seconds";

/** This process's garbage-collection pauses from now on: stop() answers them, ms in all. */
function gcPauses(): { stop(): number } {
  let ms = 0;
  const add = (entries: readonly PerformanceEntry[]) => {
    for (const entry of entries) ms += entry.duration;
  };
  const observer = new PerformanceObserver((list) => add(list.getEntries()));
  observer.observe({ entryTypes: ["gc"] });
  return {
    stop() {
      // Entries reach the callback a tick after their pause: the last ones are taken here.
      add(observer.takeRecords());
      observer.disconnect();
      return ms;
    },
  };
}

/**
 * Scenario 4: Reserve→Complete round trips of single jobs at 1 and 4 concurrent workers, as this
 * process's clients see them; and how long the server took over each call, from its RPC
 * histogram, which tells the server's part (its waits for the database and for a core included)
 * from the clients' event loop and the transport.
 */
export async function latency(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void) {
  const srv = await benchServer(dialect, port);
  const results: Record<string, LatencyResults> = {};
  for (const workers of [1, 4]) {
    const p50: number[] = [];
    const p99: number[] = [];
    const max: number[] = [];
    const serverWithin5ms: number[] = [];
    const serverWithin10ms: number[] = [];
    const serverGcMs: number[] = [];
    const benchGcMs: number[] = [];
    for (let i = 0; i < s.repetitions; i++) {
      const table = `Latency${workers}x${i}`;
      await queue(srv.rpc, table, 0, s.roundTrips);
      const before = await reserveCompleteWithin(srv.server.url);
      const times: number[] = [];
      const benchGc = gcPauses();
      await Promise.all(
        Array.from({ length: workers }, async () => {
          const { rpc, close } = sdkConnection(srv.server.url);
          for (;;) {
            const started = performance.now();
            const { leases } = await rpc.reserve({ table, maxJobs: 1, worker: WORKER });
            if (leases.length === 0) return close();
            await rpc.complete({ table, completions: [{ leaseToken: leases[0]!.leaseToken, result: {} }] });
            times.push(performance.now() - started);
          }
        }),
      );
      benchGcMs.push(benchGc.stop());
      if (times.length !== s.roundTrips) throw new Error(`latency: ${times.length} round trips for ${s.roundTrips} jobs`);
      const after = await reserveCompleteWithin(srv.server.url);
      serverGcMs.push(after.gcMs - before.gcMs);
      // Each job's Reserve and Complete, and each client's last Reserve, which finds nothing. Fewer
      // means the scrape did not find the histogram's lines.
      const calls = after.count - before.count;
      if (calls < 2 * s.roundTrips) throw new Error(`latency: the server's histogram counted ${calls} Reserve and Complete calls for ${s.roundTrips} jobs`);
      serverWithin5ms.push(((after.within5 - before.within5) / calls) * 100);
      serverWithin10ms.push(((after.within10 - before.within10) / calls) * 100);
      times.sort((a, b) => a - b);
      p50.push(percentile(times, 50));
      p99.push(percentile(times, 99));
      max.push(times.at(-1)!);
    }
    results[`${workers} worker${workers === 1 ? "" : "s"}`] = {
      p50: spread(p50),
      p99: spread(p99),
      max: spread(max),
      serverWithin5ms: spread(serverWithin5ms),
      serverWithin10ms: spread(serverWithin10ms),
      serverGcMs: spread(serverGcMs),
      benchGcMs: spread(benchGcMs),
    };
    log(
      `latency ${workers} workers: p50 ${p50.map((v) => v.toFixed(2)).join(", ")} ms; p99 ${p99.map((v) => v.toFixed(2)).join(", ")} ms; the server answered Reserve and Complete within 5 / 10 ms: ${serverWithin5ms.map((v, j) => `${v.toFixed(1)}% / ${serverWithin10ms[j]!.toFixed(1)}%`).join(", ")}; GC pauses, server / bench process: ${serverGcMs.map((v, j) => `${v.toFixed(0)} / ${benchGcMs[j]!.toFixed(0)} ms`).join(", ")}`,
    );
  }
  await srv.finish();
  return results;
}

/**
 * Scenario 5 (and 6): the drain of scenario 1 (4 processes) with watchers attached; commit-to-event delay.
 * The watchers run in a process of their own (bench/watchers.js), as dashboards do, and that
 * process's CPU is measured too: on two cores it is taken from the drain (0.4-0.9 s a drain here,
 * as much as the server's). In this process, which drives the drain and is the parent of its four
 * worker processes, their cost could not be told from the bench's own.
 */
export async function watch(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void) {
  // All the watchers come from one process, which the server counts as one client.
  const srv = await benchServer(dialect, port, ["--max-watch-streams", String(s.watchers + 10)]);
  const rates: number[] = [];
  const baseline: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  // The server's CPU per drain, with and without the watchers: steadier than the rates on 2 cores.
  const serverCpu: number[] = [];
  const baselineServerCpu: number[] = [];
  /** The watchers' own process, from their first messages to their end (the drain and half a second after it). */
  const watchersCpu: number[] = [];
  const pid = srv.server.process.pid;
  for (let i = 0; i < s.repetitions; i++) {
    // First to last commit: what the watchers cost the server, without the processes' start-up.
    // Turns alternate which drain goes first, as in scenario 3: the first drains of a fresh server run colder.
    const drainWithout = async () => {
      const without = await drainOnce(srv.rpc, s.drainKeys, 4, undefined, pid);
      baseline.push(without.commitSpan);
      baselineServerCpu.push(without.serverCpu!);
    };
    const drainWith = async () => {
      const table = tables[nextTable];
      if (table === undefined) throw new Error("bench/pipeline.js ran out of tables");
      // The table must exist before it can be watched: declare it with one key that is drained with the rest.
      await queue(srv.rpc, table.name, 0, 1);
      const watchers = await startWatchers(srv.server.url, table.name, s.watchers);
      const withWatchers = await drainOnce(srv.rpc, s.drainKeys, 4, undefined, pid);
      rates.push(withWatchers.commitSpan);
      serverCpu.push(withWatchers.serverCpu!);
      await new Promise((r) => setTimeout(r, 500)); // the last events reach the watchers
      const { delays, resumed, cpuSeconds: watcherCpu } = await watchers.stop();
      watchersCpu.push(watcherCpu);
      p50.push(percentileOfCounts(delays, 50));
      p99.push(percentileOfCounts(delays, 99));
      return resumed;
    };
    let resumed = 0;
    if (i % 2 === 0) {
      await drainWithout();
      resumed = await drainWith();
    } else {
      resumed = await drainWith();
      await drainWithout();
    }
    log(
      `watch run ${i + 1}: ${rates.at(-1)!.toFixed(0)} jobs/s with ${s.watchers} watchers vs ${baseline.at(-1)!.toFixed(0)} without (${i % 2 === 0 ? "without" : "with"} first); server CPU ${serverCpu.at(-1)!.toFixed(2)} s vs ${baselineServerCpu.at(-1)!.toFixed(2)} s; the watchers' process ${watchersCpu.at(-1)!.toFixed(2)} s; delay p50 ${p50.at(-1)} ms p99 ${p99.at(-1)} ms; ${resumed} streams cut for falling behind and resumed`,
    );
  }
  return {
    results: {
      jobsPerSecond: spread(rates),
      withoutWatchers: spread(baseline),
      serverCpu: spread(serverCpu),
      serverCpuWithout: spread(baselineServerCpu),
      watchersCpu: spread(watchersCpu),
      delayP50: spread(p50),
      delayP99: spread(p99),
    },
    peakRssMb: await srv.finish(),
  };
}

/**
 * `count` watchers of `table` in a process of their own (bench/watchers.js), once every one has had
 * its first message; stop() ends them and answers the job events' delays ([ms, events] pairs in
 * delay order) and the streams that were cut for falling behind and resumed.
 */
async function startWatchers(
  url: string,
  table: string,
  count: number,
): Promise<{ stop(): Promise<{ delays: [number, number][]; resumed: number; cpuSeconds: number }> }> {
  const child = fork(fileURLToPath(new URL("./watchers.js", import.meta.url)), [url, table, String(count), String(EVENT_WATCHER_EVERY)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    // WATCHERS_NODE_FLAGS="--flag ...": node flags for the watchers' process (bench experiments, e.g. --cpu-prof).
    execArgv: [...process.execArgv, ...(process.env.WATCHERS_NODE_FLAGS?.split(/\s+/).filter((f) => f !== "") ?? [])],
  });
  const exited = new Promise<never>((_, reject) => child.once("exit", (code) => reject(new Error(`bench/watchers.js exited (${code}) before it answered`))));
  exited.catch(() => undefined);
  const message = <T>(type: string) =>
    Promise.race([new Promise<T>((resolve) => child.on("message", (m: { type: string }) => m.type === type && resolve(m as T))), exited]);
  await message("ready");
  return {
    async stop() {
      const done = message<{ delays: [number, number][]; resumed: number; cpuSeconds: number }>("done");
      child.send({ type: "stop" });
      return await done;
    },
  };
}

/** How long an idle populus-worker's wait on the server lasts: its long-poll (s, populate-passes.ts). */
const LONG_POLL_S = 60;

/** Over how long the bench's workers connect (s). */
const RAMP_S = 10;

export interface IdleResults {
  readonly workers: number;
  /** The same server with no client connected, before the workers come, % of one core: its own timers (lease sweep, database probe, change feed, metrics). */
  readonly serverAloneCpuPercent: number;
  /**
   * The same long-polls from as many connections to a bare node:http2 server that holds each and
   * then answers it with a few fixed bytes: the part of serverCpuPercent no server code can save
   * on this machine.
   */
  readonly bareHttp2CpuPercent: number;
  /** The server's CPU while they idled, % of one core. */
  readonly serverCpuPercent: number;
  /** Their calls answered a second, all together. */
  readonly callsPerSecond: number;
}

/** An idle populus-worker's --refresh-interval default (s). */
const IDLE_REFRESH_INTERVAL_S = 30;

/** A wait of `s` seconds, or less when `signal` aborts. */
const pause = (s: number, signal: AbortSignal) => sleep(s * 1000, undefined, { signal }).catch(() => undefined);

/**
 * Scenario 7: connected workers with nothing to do. Each has its own connection (the SDK's) and
 * does what an idle populus-worker does (populate-passes.ts): it waits on the server, one
 * ClaimRefresh long-poll of a minute after another (table.waitForWork()). When the table's refresh
 * comes due (--refresh-interval, 30 s), the server grants it to one waiter, which then passes as
 * the worker does: populate claims again under its own id and refreshes its key source (here an
 * empty one: one Refresh call), asks for jobs only when the server said some are pending (here none:
 * no Reserve), and, having found nothing, waits on the server again. A fleet's waits are out of
 * step, so each worker's first wait here lasts a random part of a minute.
 * Before they come, the server's CPU is read alone for RAMP_S (its own timers). The workers connect
 * over RAMP_S; then the server's CPU is read over idleSeconds.
 */
export async function idle(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void): Promise<{ results: IdleResults; peakRssMb: number }> {
  const srv = await benchServer(dialect, port);
  const table = `idle_bench_${nextTable}`;
  await queue(srv.rpc, table, 0, 1);
  const { leases } = await srv.rpc.reserve({ table, maxJobs: 1, worker: WORKER });
  await srv.rpc.complete({ table, completions: leases.map((l) => ({ leaseToken: l.leaseToken, result: {} })) });
  const serverAloneCpuPercent = await cpuPercentOver(srv.server.process.pid as number, RAMP_S);
  const controller = new AbortController();
  const { signal } = controller;
  setMaxListeners(0, signal); // one per worker's wait
  let calls = 0;
  const minInterval = { seconds: BigInt(IDLE_REFRESH_INTERVAL_S) };
  const workers = Array.from({ length: s.idleWorkers }, async (_, w) => {
    const { rpc, close } = sdkConnection(srv.server.url);
    const worker = { ...WORKER, workerId: `idle-${w}` };
    const claimId = `idle-${w}`;
    await pause(Math.random() * RAMP_S, signal);
    // A pass of populate: claim the refresh; refresh only when granted; reserve only when something is pending.
    const pass = async () => {
      const claim = await rpc.claimRefresh({ table, claimId, minInterval });
      calls++;
      let anyPending = claim.anyPending;
      if (claim.granted) {
        anyPending = (await rpc.refresh({ table, final: true, claimId })).anyPending;
        calls++;
      }
      if (anyPending !== false) {
        const found = await rpc.reserve({ table, maxJobs: 100, worker, asColumns: true, requestId: `idle-${w}-${calls}` });
        if ((found.columns?.leaseTokens.length ?? 0) > 0) throw new Error("an idle worker found work");
        calls++;
      }
    };
    try {
      await pass();
      for (let wait = 1 + Math.random() * (LONG_POLL_S - 1); !signal.aborted; wait = LONG_POLL_S) {
        const answer = await rpc.claimRefresh({ table, claimId, minInterval, claimTimeout: { seconds: 60n }, wait: durationOf(wait) }, { signal });
        calls++;
        if (answer.anyPending === true) throw new Error("an idle worker was told of a pending job");
        // Granted: the worker's pass refreshes under the claim, finds nothing, and waits again.
        if (answer.granted) await pass();
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      close();
    }
  });
  await pause(RAMP_S, signal);
  const pid = srv.server.process.pid as number;
  const [cpu0, calls0, t0] = [cpuSeconds(pid), calls, performance.now()];
  await pause(s.idleSeconds, signal);
  const seconds = (performance.now() - t0) / 1000;
  const results = { workers: s.idleWorkers, serverCpuPercent: ((cpuSeconds(pid) - cpu0) / seconds) * 100, callsPerSecond: (calls - calls0) / seconds };
  controller.abort();
  await Promise.race([Promise.allSettled(workers), sleep(15_000)]);
  const peakRssMb = await srv.finish();
  const bareHttp2CpuPercent = await bareHttp2Cpu(port, s);
  log(
    `idle: the server alone ${serverAloneCpuPercent.toFixed(1)}% of a core; ${s.idleWorkers} workers, ${results.callsPerSecond.toFixed(1)} calls/s, server CPU ${results.serverCpuPercent.toFixed(1)}%; a bare node:http2 server ${bareHttp2CpuPercent.toFixed(1)}%`,
  );
  return { results: { ...results, serverAloneCpuPercent, bareHttp2CpuPercent }, peakRssMb };
}

/** A process's CPU over the next `seconds`, % of one core. */
async function cpuPercentOver(pid: number, seconds: number): Promise<number> {
  const [cpu0, t0] = [cpuSeconds(pid), performance.now()];
  await sleep(seconds * 1000);
  return ((cpuSeconds(pid) - cpu0) / ((performance.now() - t0) / 1000)) * 100;
}

/** A node:http2 server that reads each request, holds it for its x-wait-ms header, then answers it with five fixed bytes; and nothing else. */
const BARE_HTTP2_SERVER = `
  const http2 = require("node:http2");
  http2.createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      const timer = setTimeout(() => { res.writeHead(200, { "content-type": "application/proto" }); res.end(Buffer.alloc(5)); }, Number(req.headers["x-wait-ms"]));
      res.on("close", () => clearTimeout(timer));
    });
  }).listen(Number(process.argv[1]), "127.0.0.1", () => process.send("listening"));
`;

/** Runs one of the bare servers' scripts (`node -e`) with `args`, once it says it listens; rejects, naming it, if it exits first. */
async function startBareServer(name: string, script: string, ...args: string[]): Promise<ChildProcess> {
  const server = spawn(process.execPath, ["-e", script, ...args], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  await new Promise((resolve, reject) => {
    server.once("message", resolve);
    server.once("exit", (code) => reject(new Error(`${name} exited (${code})`)));
  });
  return server;
}

/** Scenario 7's long-polls (as many connections, each holding one call at a time) against BARE_HTTP2_SERVER: its CPU, % of a core. */
async function bareHttp2Cpu(port: number, s: Sizes): Promise<number> {
  const server = await startBareServer("the bare HTTP/2 server", BARE_HTTP2_SERVER, String(port));
  const controller = new AbortController();
  const { signal } = controller;
  setMaxListeners(0, signal);
  const sessions = Array.from({ length: s.idleWorkers }, () => http2.connect(`http://127.0.0.1:${port}`));
  const call = (session: http2.ClientHttp2Session, waitMs: number) =>
    new Promise<void>((resolve, reject) => {
      const request = session.request({
        ":method": "POST",
        ":path": "/populus.v1.JobService/ClaimRefresh",
        "content-type": "application/proto",
        "x-wait-ms": String(Math.round(waitMs)),
      });
      request.on("data", () => {});
      request.on("end", resolve);
      request.on("error", reject);
      request.end(Buffer.alloc(40));
    });
  const loops = sessions.map(async (session) => {
    await pause(Math.random() * RAMP_S, signal);
    for (let wait = 1 + Math.random() * (LONG_POLL_S - 1); !signal.aborted; wait = LONG_POLL_S) await call(session, wait * 1000);
  });
  try {
    await pause(RAMP_S, signal);
    return await cpuPercentOver(server.pid as number, s.idleSeconds);
  } finally {
    controller.abort();
    for (const session of sessions) session.destroy();
    await Promise.allSettled(loops);
    server.kill();
  }
}

export interface ManyWatchersResults {
  readonly asked: number;
  readonly served: number;
  /** Refused with RESOURCE_EXHAUSTED (--max-watch-streams-total). */
  readonly refused: number;
  /** The server's RSS with them open, MB. */
  readonly rssMb: number;
}

export interface OneKeyResults {
  readonly callsPerSecond: Spread;
  /** Run 0, not in callsPerSecond: the first calls of a fresh server (as the peers bench measures them). */
  readonly coldCallsPerSecond: number;
  /** The server's CPU per call in run 0, µs. */
  readonly coldServerCpuUs: number;
  /** CPU of each process per call, µs: this client (the bench process, all its threads), the server, and MariaDB's (mysql only). */
  readonly clientCpuUs: Spread;
  readonly serverCpuUs: Spread;
  readonly databaseCpuUs?: Spread;
  /**
   * The same number of calls in a row, warm, to a bare node:http2 server that answers each after
   * one durable INSERT of a row on the same database (BARE_ENQUEUE_SERVER), from a bare HTTP/2
   * client: the floor of an enqueue through an HTTP/2 service written in Node that commits each
   * call on this machine (calls/s, and that server's CPU per call).
   */
  readonly bareFloorCallsPerSecond: Spread;
  readonly bareFloorServerCpuUs: Spread;
}

/**
 * A node:http2 server that answers each request (five fixed bytes) once one row is inserted and
 * committed (autocommit) on the database of argv[1]: one mysql2 connection, or a better-sqlite3
 * file of its own beside the bench's (WAL, synchronous FULL: what the store's small transactions
 * pay). Listens on argv[2]; nothing else.
 */
const BARE_ENQUEUE_SERVER = `
  const http2 = require("node:http2");
  const [url, port] = process.argv.slice(1);
  (async () => {
    let insert;
    if (url.startsWith("sqlite:")) {
      const db = new (require("better-sqlite3"))(url.slice("sqlite:".length) + "-floor.db");
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      db.exec("CREATE TABLE IF NOT EXISTS bench_floor (id INTEGER PRIMARY KEY, k TEXT NOT NULL)");
      const statement = db.prepare("INSERT INTO bench_floor (k) VALUES (?)");
      insert = async (k) => statement.run(k);
    } else {
      const db = await require("mysql2/promise").createConnection({ uri: url });
      await db.query("CREATE TABLE IF NOT EXISTS bench_floor (id BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(64) NOT NULL)");
      insert = (k) => db.query("INSERT INTO bench_floor (k) VALUES (?)", [k]);
    }
    http2.createServer((req, res) => {
      req.on("data", () => {});
      req.on("end", () => insert(String(Date.now())).then(
        () => { res.writeHead(200, { "content-type": "application/proto" }); res.end(Buffer.alloc(5)); },
        (err) => { console.error("bare enqueue server: " + err.message); res.writeHead(500); res.end(); },
      ));
    }).listen(Number(port), "127.0.0.1", () => process.send("listening"));
  })().catch((err) => { console.error("bare enqueue server: " + err.message); process.exit(1); });
`;

/** Runs of `calls` calls in a row to BARE_ENQUEUE_SERVER on `databaseUrl`, after as many untimed: calls/s and its CPU per call (µs), each run. */
async function bareEnqueueFloor(databaseUrl: string, port: number, calls: number, runs: number): Promise<{ callsPerSecond: number[]; serverCpuUs: number[] }> {
  const server = await startBareServer("the bare enqueue server", BARE_ENQUEUE_SERVER, databaseUrl, String(port));
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined); // each call fails with it
  const call = () =>
    new Promise<void>((resolve, reject) => {
      const request = session.request({ ":method": "POST", ":path": "/populus.v1.JobService/Refresh", "content-type": "application/proto" });
      request.on("response", (headers) => {
        if (headers[":status"] !== 200) reject(new Error(`the bare enqueue server answered ${headers[":status"]}`));
      });
      request.on("data", () => {});
      request.on("end", resolve);
      request.on("error", reject);
      request.end(Buffer.alloc(60));
    });
  const result = { callsPerSecond: [] as number[], serverCpuUs: [] as number[] };
  try {
    for (let c = 0; c < calls; c++) await call(); // warm, as the runs it is set beside
    for (let run = 0; run < runs; run++) {
      const [cpu0, t0] = [cpuSeconds(server.pid as number), performance.now()];
      for (let c = 0; c < calls; c++) await call();
      result.callsPerSecond.push(calls / ((performance.now() - t0) / 1000));
      result.serverCpuUs.push(((cpuSeconds(server.pid as number) - cpu0) * 1e6) / calls);
    }
    return result;
  } finally {
    session.destroy();
    server.kill();
  }
}

/**
 * Scenario 9: an enqueue of one key per call, as a web hook sends one: `jobs.refresh()` of a table
 * whose key source is that key, one call after another from one SDK connection (the peers bench's
 * "one call per job"). Besides the rate, each process's CPU per call, so that the call's cost can
 * be told apart: the client (SDK and HTTP/2), the server, and the database.
 */
export async function oneKey(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void): Promise<OneKeyResults> {
  const srv = await benchServer(dialect, port);
  const client = connect({ url: srv.server.url });
  const serverPid = srv.server.process.pid as number;
  const databasePid = dialect === "mysql" ? mariadbdPid() : undefined;
  /** Each run's rate and CPU per call (µs); MariaDB's only on mysql. */
  const runs: { callsPerSecond: number; clientCpuUs: number; serverCpuUs: number; databaseCpuUs?: number }[] = [];
  let next = 0;
  // Run 0 is reported apart, not in the spread: the first thousand or so calls of a fresh server
  // (and of this client, when this scenario runs first) run cold (JIT), at a third to a half of the
  // warm rate here. A web hook's server runs warm; the peers bench measures a fresh one.
  for (let run = 0; run <= s.repetitions; run++) {
    const current: { id: number }[] = [];
    const table = client.table(`OneKey${run}`, { keySource: () => current, make: () => ({}) });
    current.push({ id: next++ });
    await table.jobs.refresh(); // declares the table: not counted
    const cpu = processesCpu(serverPid, databasePid);
    const started = performance.now();
    for (let c = 0; c < s.oneKeyCalls; c++) {
      current[0] = { id: next++ };
      const { added } = await table.jobs.refresh();
      if (added !== 1) throw new Error(`one-key refresh added ${added} jobs, expected 1`);
    }
    const seconds = (performance.now() - started) / 1000;
    const used = cpu.perUnit(s.oneKeyCalls);
    const p = await progress(srv.rpc, `OneKey${run}`);
    if (p.pending !== s.oneKeyCalls + 1) throw new Error(`one-key run ${run}: ${p.pending} jobs pending, expected ${s.oneKeyCalls + 1}`);
    const r = {
      callsPerSecond: s.oneKeyCalls / seconds,
      clientCpuUs: used.benchUs,
      serverCpuUs: used.serverUs,
      ...(used.databaseUs === undefined ? {} : { databaseCpuUs: used.databaseUs }),
    };
    runs.push(r);
    log(
      `one key per call run ${run}${run === 0 ? " (cold: reported apart)" : ""}: ${r.callsPerSecond.toFixed(0)} calls/s; CPU per call: client ${r.clientCpuUs.toFixed(0)} µs, server ${r.serverCpuUs.toFixed(0)} µs${
        r.databaseCpuUs === undefined ? "" : `, mariadbd ${r.databaseCpuUs.toFixed(0)} µs`
      }`,
    );
  }
  client.close();
  let floor: Awaited<ReturnType<typeof bareEnqueueFloor>>;
  try {
    // The floor on the same database, the server idle beside it (on the next port).
    floor = await bareEnqueueFloor(srv.databaseUrl, port + 1, s.oneKeyCalls, s.repetitions);
  } finally {
    await srv.finish();
  }
  log(
    `one key per call, the floor (a bare node:http2 server, one durable INSERT a call): ${floor.callsPerSecond.map((v) => v.toFixed(0)).join(", ")} calls/s; its CPU per call ${floor.serverCpuUs.map((v) => v.toFixed(0)).join(", ")} µs`,
  );
  const [cold, ...warm] = runs as [(typeof runs)[number], ...typeof runs];
  const databaseCpu = warm.flatMap((r) => (r.databaseCpuUs === undefined ? [] : [r.databaseCpuUs]));
  return {
    callsPerSecond: spread(warm.map((r) => r.callsPerSecond)),
    coldCallsPerSecond: cold.callsPerSecond,
    coldServerCpuUs: cold.serverCpuUs,
    clientCpuUs: spread(warm.map((r) => r.clientCpuUs)),
    serverCpuUs: spread(warm.map((r) => r.serverCpuUs)),
    ...(databaseCpu.length > 0 ? { databaseCpuUs: spread(databaseCpu) } : {}),
    bareFloorCallsPerSecond: spread(floor.callsPerSecond),
    bareFloorServerCpuUs: spread(floor.serverCpuUs),
  };
}

/** Scenario 8: a burst of counts-only watchers (dashboards), far past the server's Watch cap: served or refused, and its memory. */
export async function manyWatchers(dialect: Dialect, port: number, s: Sizes, log: (line: string) => void): Promise<ManyWatchersResults> {
  // Their per-client cap out of the way: the server-wide one is measured.
  const srv = await benchServer(dialect, port, ["--max-watch-streams", String(s.manyWatchers)]);
  const table = `watched_bench_${nextTable}`;
  await queue(srv.rpc, table, 0, 1);
  const controller = new AbortController();
  setMaxListeners(s.manyWatchers + 10, controller.signal);
  const connections = Array.from({ length: 10 }, () => sdkConnection(srv.server.url));
  let served = 0;
  let refused = 0;
  const streams = Array.from({ length: s.manyWatchers }, async (_, w) => {
    try {
      for await (const _m of connections[w % connections.length]!.rpc.watch({ table, countsOnly: true }, { signal: controller.signal })) served++;
    } catch (err) {
      if (controller.signal.aborted) return;
      if (err instanceof ResourceExhaustedError) refused++;
      else throw err;
    }
  });
  while (served + refused < s.manyWatchers) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 1000));
  const statm = readFileSync(`/proc/${srv.server.process.pid}/statm`, "utf8").split(" ");
  const rssMb = (Number(statm[1]) * 4096) / 2 ** 20;
  controller.abort();
  await Promise.allSettled(streams);
  for (const c of connections) c.close();
  await srv.finish();
  log(`${s.manyWatchers} counts-only watchers: ${served} served, ${refused} refused, server RSS ${rssMb.toFixed(0)} MB`);
  return { asked: s.manyWatchers, served, refused, rssMb };
}
