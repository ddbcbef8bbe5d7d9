/**
 * GET /metrics on the service port: parsed by a Prometheus text-format
 * parser, with counters that match the work done through the RPCs (leases,
 * commits, failures, lease expiries), job gauges that match GetProgress, the
 * Watch subscriber gauge, and RPC latency histograms labelled with gRPC codes.
 */
import { createRequire } from "node:module";
import test from "ava";
import { createTestDatabase, type TestDatabase, testDialects } from "./helpers/databases.js";
import { counts, jobsClient, keys, rpcError, seconds, until } from "./helpers/jobs-client.js";
import { histogramSample } from "./helpers/prometheus.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

interface Sample {
  labels?: Record<string, string>;
  value?: string;
  buckets?: Record<string, string>;
  count?: string;
  sum?: string;
}
interface Family {
  name: string;
  type: string;
  metrics: Sample[];
}
const parsePrometheusTextFormat = createRequire(import.meta.url)("parse-prometheus-text-format") as (text: string) => Family[];

const WORKER = { workerId: "w-metrics", host: "test", pid: 1, user: "test", codeVersion: "" };

const databases: TestDatabase[] = [];
const servers: ServerProcess[] = [];
test.after.always(async () => {
  await Promise.all(servers.map((s) => s.kill()));
  await Promise.all(databases.map((d) => d.drop()));
});

/** The parsed families by name, and the raw text (the parser drops histogram labels, so their samples are read from it). */
async function scrape(url: string): Promise<Map<string, Family> & { text: string }> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  if (!(res.headers.get("content-type") ?? "").startsWith("text/plain")) throw new Error(`content-type ${res.headers.get("content-type")}`);
  const text = await res.text();
  return Object.assign(new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f])), { text });
}

/** The value of the sample of `name` whose labels include `labels`; 0 when there is none. */
function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (family === undefined) throw new Error(`no metric ${name}`);
  const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return Number(sample?.value ?? sample?.count ?? 0);
}

for (const dialect of testDialects()) {
  test(`${dialect}: /metrics parses as Prometheus text and its figures match the work done`, async (t) => {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    const server = await startServer({ database: db.url });
    servers.push(server);
    const client = jobsClient(server.url);
    const table = "Metered";
    await client.refresh({ table, keys: keys(0, 10) });

    const first = await client.reserve({ table, maxJobs: 4, worker: WORKER, leaseDuration: seconds(60) });
    const second = await client.reserve({ table, maxJobs: 2, worker: WORKER, leaseDuration: seconds(60) });
    const leases = [...first.leases, ...second.leases];
    await client.complete({ table, completions: leases.slice(0, 3).map((l) => ({ leaseToken: l.leaseToken, result: {} })) });
    await client.fail({ table, leaseToken: leases[3]!.leaseToken, errorMessage: "boom" });
    await client.release({ table, leaseTokens: [leases[4]!.leaseToken] });
    t.is((await rpcError(client.getProgress({ table: "Missing" }))).code, 5 /* NotFound */);
    // One lease left to expire: a 1 s lease, returned by the sweep.
    const short = await client.reserve({ table, maxJobs: 1, worker: WORKER, leaseDuration: seconds(1) });
    t.is(short.leases.length, 1);
    await until("the short lease expired", async () => (await counts(client, table)).reserved === 1);

    const controller = new AbortController();
    const stream = client.watch({ table }, { signal: controller.signal });
    const reading = (async () => {
      try {
        for await (const _ of stream);
      } catch {
        // aborted below
      }
    })();
    await until("the Watch subscriber is counted", async () => value(await scrape(server.url), "populus_watch_subscribers") === 1);

    const m = await scrape(server.url);
    t.is(value(m, "populus_reservations_total", { table: "metered" }), 7);
    t.is(value(m, "populus_completions_total", { table: "metered" }), 3);
    t.is(value(m, "populus_failures_total", { table: "metered" }), 1);
    t.is(value(m, "populus_lease_expiries_total"), 1);
    const progress = await counts(client, table);
    for (const status of ["pending", "reserved", "success", "error", "ignore"] as const) {
      t.is(value(m, "populus_jobs", { table: "metered", status }), progress[status], status);
    }
    t.is(value(m, "populus_target_rows", { table: "metered" }), 3);
    t.is(m.get("populus_rpc_duration_seconds")?.type, "HISTOGRAM");
    t.is(histogramSample(m.text, "populus_rpc_duration_seconds", "count", { method: "Reserve", code: "OK" }), 3);
    t.is(histogramSample(m.text, "populus_rpc_duration_seconds", "count", { method: "GetProgress", code: "NotFound" }), 1);
    t.true(value(m, "populus_server_process_resident_memory_bytes") > 0);

    controller.abort();
    await reading;

    // A Reserve long-polling an empty queue is counted waiting until work wakes it.
    t.is(value(m, "populus_reserve_waiting"), 0);
    await client.refresh({ table: "Waited", keys: keys(0, 1) });
    t.is((await client.reserve({ table: "Waited", maxJobs: 1, worker: WORKER })).leases.length, 1);
    const longPoll = client.reserve({ table: "Waited", maxJobs: 1, worker: WORKER, wait: seconds(30) });
    await until("the long-poll is counted waiting", async () => value(await scrape(server.url), "populus_reserve_waiting") === 1);
    await client.refresh({ table: "Waited", keys: keys(1, 2) });
    t.is((await longPoll).leases.length, 1, "the refresh woke it with the new job");
    t.is(value(await scrape(server.url), "populus_reserve_waiting"), 0);

    const post = await fetch(`${server.url}/metrics`, { method: "POST" });
    t.is(post.status, 405);
  });
}
