/**
 * One dialect's bench run, in a process of its own (bench/pipeline.js reads
 * BENCH_URL when imported, and populate's children inherit it):
 *
 *   node --import tsx bench/dialect.ts <sqlite|mysql> <quick|full> [scenario,...]
 *
 * Progress lines go to stderr; the results are the last stdout line, as JSON.
 */
import { createServer } from "node:net";
import type { Dialect } from "../test/helpers/databases.js";

const [dialect, mode] = process.argv.slice(2) as [Dialect, "quick" | "full"];
if ((dialect !== "sqlite" && dialect !== "mysql") || (mode !== "quick" && mode !== "full")) {
  throw new Error("usage: bench/dialect.ts <sqlite|mysql> <quick|full>");
}

/** A port free now: every server of this run listens on it, so BENCH_URL stays right across restarts. */
const port = await new Promise<number>((resolve, reject) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const address = probe.address();
    probe.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
  });
});
process.env.BENCH_URL = `http://127.0.0.1:${port}`;

// populate's children inherit this process's node flags; this process needs tsx, they do not
// (bench/pipeline.js is JavaScript, as a deployed pipeline is), and tsx costs each of them a
// second or more of start-up on this machine, which the drain would otherwise count.
for (let i = process.execArgv.indexOf("tsx"); i > 0 && process.execArgv[i - 1] === "--import"; i = process.execArgv.indexOf("tsx")) {
  process.execArgv.splice(i - 1, 2);
}

const { drain, flat, FULL, idle, latency, manyWatchers, oneKey, QUICK, refresh, watch } = await import("./scenarios.js");
const sizes = mode === "full" ? FULL : QUICK;
const log = (line: string) => process.stderr.write(`[${dialect}] ${line}\n`);

/** The scenarios to run, in order; a third argument (comma-separated names) picks some of them. */
const SCENARIOS = ["drain", "refresh", "flat", "latency", "watch", "idle", "watchers", "onekey"] as const;
const picked = process.argv[4]?.split(",") ?? [...SCENARIOS];
const unknown = picked.filter((name) => !(SCENARIOS as readonly string[]).includes(name));
if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(", ")}: pick from ${SCENARIOS.join(", ")}`);
const runs = (name: (typeof SCENARIOS)[number]) => picked.includes(name);

const drained = runs("drain") ? await drain(dialect, port, sizes, log) : undefined;
const refreshed = runs("refresh") ? await refresh(dialect, port, sizes, log) : undefined;
const flatCost = runs("flat") ? await flat(dialect, port, sizes, log) : undefined;
const latencies = runs("latency") ? await latency(dialect, port, sizes, log) : undefined;
const watched = runs("watch") ? await watch(dialect, port, sizes, log) : undefined;
const idled = runs("idle") ? await idle(dialect, port, sizes, log) : undefined;
const crowd = runs("watchers") ? await manyWatchers(dialect, port, sizes, log) : undefined;
const oneKeyCalls = runs("onekey") ? await oneKey(dialect, port, sizes, log) : undefined;

console.log(
  JSON.stringify({
    sizes,
    drain: drained?.results,
    refresh: refreshed?.phases,
    refreshCpuPerKey: refreshed?.cpuPerKey,
    refreshDatabaseAlone: refreshed?.databaseAlone,
    refreshDatabaseAloneCpuUs: refreshed?.databaseAloneCpuUs,
    flat: flatCost,
    latency: latencies,
    watch: watched?.results,
    idle: idled?.results,
    manyWatchers: crowd,
    oneKey: oneKeyCalls,
    peakRssMb: { drain: drained?.peakRssMb, watch: watched?.peakRssMb },
  }),
);
process.exit(0);
