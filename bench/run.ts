/**
 * `npm run bench [-- --full] [-- --dialect sqlite|mysql] [-- --scenario watch ...]`: the speed, latency
 * and memory figures the README lists (Benchmark). Quick mode (the default) runs every scenario at small sizes in
 * about two minutes; full mode at the sizes the targets are stated for.
 * Each dialect runs in its own process (bench/dialect.ts). Prints a table
 * per dialect, with each target and by how much it is missed, and writes the
 * same figures, the machine and the versions to bench/results.json.
 */
import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import mysql from "mysql2/promise";
import type { DrainResults, IdleResults, LatencyResults, ManyWatchersResults, OneKeyResults, ProcessesCpuSpread, WatchResults } from "./scenarios.js";
import type { Spread } from "./stats.js";

const { values } = parseArgs({
  options: { full: { type: "boolean", default: false }, dialect: { type: "string", multiple: true }, scenario: { type: "string", multiple: true } },
});
const mode = values.full ? "full" : "quick";
const dialects = values.dialect ?? ["mysql", "sqlite"];
/** Names of bench/dialect.ts's scenarios; all of them when none is given. */
const scenarios = values.scenario ?? [];

/** One dialect's figures; a scenario left out with --scenario has none. */
interface Results {
  drain?: Record<string, DrainResults>;
  refresh?: Record<string, Spread>;
  /** Each phase's CPU per key of the bench process (the SDK), the server and (MySQL) mariadbd, µs. */
  refreshCpuPerKey?: Record<string, ProcessesCpuSpread>;
  /** MySQL: the empty-table refresh's rows inserted by mysql2 alone, the same way (bench scenario 2). */
  refreshDatabaseAlone?: Spread;
  /** MySQL: mariadbd's CPU per row meanwhile, µs. */
  refreshDatabaseAloneCpuUs?: Spread;
  flat?: Record<string, Spread>;
  latency?: Record<string, LatencyResults>;
  watch?: WatchResults;
  idle?: IdleResults;
  manyWatchers?: ManyWatchersResults;
  oneKey?: OneKeyResults;
  peakRssMb: { drain?: number; watch?: number };
  sizes: Record<string, number>;
}

function runDialect(dialect: string): Promise<Results> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", fileURLToPath(new URL("./dialect.ts", import.meta.url)), dialect, mode, ...(scenarios.length > 0 ? [scenarios.join(",")] : [])],
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => {
      const last = out.trim().split("\n").at(-1) ?? "";
      if (code !== 0) return reject(new Error(`the ${dialect} bench failed (exit ${code})`));
      resolve(JSON.parse(last) as Results);
    });
  });
}

const fmt = (s: Spread, digits = 0) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

/** "met" or how far off a target is. */
function verdict(value: number, target: number, higherIsBetter: boolean): string {
  const met = higherIsBetter ? value >= target : value <= target;
  if (met) return "met";
  const off = higherIsBetter ? (1 - value / target) * 100 : (value / target - 1) * 100;
  return `missed by ${off.toFixed(0)}%`;
}

function report(dialect: string, r: Results): string[] {
  const lines: string[] = [];
  const row = (what: string, value: string, target = "") => lines.push(`  ${what.padEnd(58)} ${value.padEnd(30)} ${target}`);
  lines.push(`${dialect} (${mode}: ${r.sizes.repetitions} repetitions; median (min–max))`);
  const drainTarget = dialect === "mysql" ? 25_000 : 10_000;
  for (const [k, d] of Object.entries(r.drain ?? {})) {
    row(
      `1. drain ${r.sizes.drainKeys} no-op jobs, ${k} (jobs/s)`,
      fmt(d.endToEnd),
      k.startsWith("4") ? `target ≥ ${drainTarget}: ${verdict(d.endToEnd.median, drainTarget, true)}` : "",
    );
    row(
      `   first to last commit (jobs/s)`,
      fmt(d.commitSpan),
      k.startsWith("4") ? `target ≥ ${drainTarget}: ${verdict(d.commitSpan.median, drainTarget, true)}` : "",
    );
    row("   the server's CPU per job (µs)", fmt(d.serverCpuUs), "the server's share");
    if (d.databaseCpuUs !== undefined) row("   MariaDB's CPU per job (µs)", fmt(d.databaseCpuUs), "the database's share");
    if (d.redoBytes !== undefined) row("   redo log InnoDB wrote per job (bytes)", fmt(d.redoBytes));
  }
  for (const [k, s] of Object.entries(r.refresh ?? {})) {
    row(`2. refresh ${r.sizes.refreshKeys} keys, ${k} (keys/s)`, fmt(s), `target ≥ 150000: ${verdict(s.median, 150_000, true)}`);
    const cpu = r.refreshCpuPerKey?.[k];
    if (cpu !== undefined)
      row(
        `   CPU per key: bench (SDK) / server${cpu.databaseUs === undefined ? "" : " / mariadbd"} (µs)`,
        [cpu.benchUs, cpu.serverUs, ...(cpu.databaseUs === undefined ? [] : [cpu.databaseUs])].map((v) => v.median.toFixed(1)).join(" / "),
        "medians; 2 cores give 2 µs of CPU per µs of wall",
      );
  }
  if (r.refreshDatabaseAlone !== undefined)
    row("   its empty-table rows inserted by mysql2 alone (rows/s)", fmt(r.refreshDatabaseAlone), "the INSERTs alone, for comparison");
  if (r.refreshDatabaseAloneCpuUs !== undefined) row("   mariadbd's CPU per row meanwhile (µs)", fmt(r.refreshDatabaseAloneCpuUs, 1));
  const flat = Object.entries(r.flat ?? {});
  for (const [k, s] of flat) row(`3. drain ${r.sizes.flatDrain} of ${k} (jobs/s, first to last commit)`, fmt(s));
  if (flat.length === 2) {
    const ratio = flat[1]![1].median / flat[0]![1].median;
    row("   large queue vs small", `${(ratio * 100).toFixed(0)}%`, `target ≥ 90%: ${verdict(ratio, 0.9, true)}`);
  }
  for (const [k, l] of Object.entries(r.latency ?? {})) {
    row(`4. Reserve→Complete, ${k} (ms) p50`, fmt(l.p50, 2));
    row(`   p99`, fmt(l.p99, 2), k.startsWith("4") ? `target < 10 ms: ${verdict(l.p99.median, 10, false)}` : "");
    row(`   max`, fmt(l.max, 2));
    row(`   server answered Reserve, Complete within 5 ms (%)`, fmt(l.serverWithin5ms, 1), "its RPC histogram: two such calls < 10 ms");
    row(`   within 10 ms (%)`, fmt(l.serverWithin10ms, 1));
    if (l.serverGcMs !== undefined)
      row(
        `   GC pauses in the run, server / bench process (ms)`,
        `${fmt(l.serverGcMs)} / ${fmt(l.benchGcMs)}`,
        "the server's at least (prom-client's GC histogram)",
      );
  }
  const w = r.watch;
  if (w !== undefined) {
    const cost = 1 - w.jobsPerSecond.median / w.withoutWatchers.median;
    row(`5. drain with ${r.sizes.watchers} watchers (jobs/s, first to last commit)`, fmt(w.jobsPerSecond));
    row(`   without watchers (jobs/s)`, fmt(w.withoutWatchers));
    row(`   cost of the watchers`, `${(cost * 100).toFixed(0)}%`, `target < 10%: ${verdict(cost * 100, 10, false)}`);
    row(`   server CPU per drain, with / without watchers (s)`, `${fmt(w.serverCpu, 2)} / ${fmt(w.serverCpuWithout, 2)}`);
    row(`   the watchers' own process, CPU per drain (s)`, fmt(w.watchersCpu, 2));
    row(`   commit→event delay p50 (ms)`, fmt(w.delayP50));
    row(`   commit→event delay p99 (ms)`, fmt(w.delayP99), `target < 250 ms: ${verdict(w.delayP99.median, 250, false)}`);
  }
  if (r.peakRssMb.drain !== undefined)
    row(`6. server peak RSS, scenario 1 (MB)`, r.peakRssMb.drain.toFixed(0), `target < 250: ${verdict(r.peakRssMb.drain, 250, false)}`);
  if (r.peakRssMb.watch !== undefined)
    row(`   server peak RSS, scenario 5 (MB)`, r.peakRssMb.watch.toFixed(0), `target < 250: ${verdict(r.peakRssMb.watch, 250, false)}`);
  if (r.idle !== undefined)
    row(
      `7. ${r.idle.workers} idle workers: server CPU (% of a core)`,
      `${r.idle.serverCpuPercent.toFixed(1)}% (${r.idle.callsPerSecond.toFixed(0)} calls/s)`,
      `target ≤ 5%: ${verdict(r.idle.serverCpuPercent, 5, false)}`,
    );
  if (r.idle?.serverAloneCpuPercent !== undefined)
    row(`   the server alone, no client yet (% of a core)`, `${r.idle.serverAloneCpuPercent.toFixed(1)}%`, "its own timers");
  if (r.idle?.bareHttp2CpuPercent !== undefined)
    row(`   the same calls to a bare node:http2 server (% of a core)`, `${r.idle.bareHttp2CpuPercent.toFixed(1)}%`, "the floor here");
  const crowd = r.manyWatchers;
  if (crowd !== undefined) {
    row(
      `8. ${crowd.asked} counts-only watchers at once: served / refused`,
      `${crowd.served} / ${crowd.refused}`,
      "each served or refused (RESOURCE_EXHAUSTED)",
    );
    row(`   server RSS with them open (MB)`, crowd.rssMb.toFixed(0), `target < 250: ${verdict(crowd.rssMb, 250, false)}`);
  }
  const one = r.oneKey;
  if (one !== undefined) {
    row(`9. one key per call, ${r.sizes.oneKeyCalls} calls in a row (calls/s)`, fmt(one.callsPerSecond), "peers bench: ≥ 1.3x graphile-worker's addJob");
    row(`   CPU per call: client (µs)`, fmt(one.clientCpuUs));
    row(`   server (µs)`, fmt(one.serverCpuUs));
    if (one.databaseCpuUs !== undefined) row(`   mariadbd (µs)`, fmt(one.databaseCpuUs));
    row(
      `   the first ${r.sizes.oneKeyCalls} calls of a fresh server (calls/s)`,
      `${one.coldCallsPerSecond.toFixed(0)} (server ${one.coldServerCpuUs.toFixed(0)} µs a call)`,
      "cold (JIT): what the peers bench measures",
    );
    row(
      `   the floor: a bare node:http2 server, one durable INSERT a call (calls/s)`,
      `${fmt(one.bareFloorCallsPerSecond)} (its CPU ${fmt(one.bareFloorServerCpuUs)} µs a call)`,
      "a Node HTTP/2 service that commits each call, with no work of its own",
    );
  }
  return lines;
}

async function mariadbVersion(): Promise<string> {
  try {
    const c = await mysql.createConnection({ uri: process.env.POPULUS_TEST_MYSQL_URL ?? "mysql://root@127.0.0.1:3306" });
    const [rows] = await c.query(
      "SELECT VERSION() AS v, @@innodb_flush_log_at_trx_commit AS flush, @@sync_binlog AS sync_binlog, @@innodb_buffer_pool_size AS pool",
    );
    await c.end();
    const r = (rows as { v: string; flush: number; sync_binlog: number; pool: number }[])[0]!;
    return `${r.v} (innodb_flush_log_at_trx_commit=${r.flush}, sync_binlog=${r.sync_binlog}, buffer pool ${Math.round(r.pool / 2 ** 20)} MB)`;
  } catch {
    return "unreachable";
  }
}

const started = Date.now();
const results: Record<string, Results> = {};
for (const dialect of dialects) results[dialect] = await runDialect(dialect);
const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model ?? "",
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  node: process.version,
  mariadb: await mariadbVersion(),
  sqlite: "better-sqlite3 (WAL, synchronous=FULL)",
  commit: (() => {
    try {
      return execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    } catch {
      return "";
    }
  })(),
};
console.log(`\nPopulus bench, ${mode} mode, ${((Date.now() - started) / 1000).toFixed(0)} s`);
console.log(`machine: ${machine.cpus} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Node ${machine.node}, MariaDB ${machine.mariadb}\n`);
for (const [dialect, r] of Object.entries(results)) console.log(`${report(dialect, r).join("\n")}\n`);
const file = fileURLToPath(new URL("./results.json", import.meta.url));
writeFileSync(file, `${JSON.stringify({ mode, date: new Date().toISOString(), machine, results }, null, 2)}\n`);
console.log(`written: ${file}`);
