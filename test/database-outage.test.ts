/**
 * The database crashes (issue 15, item 3, MySQL family): a MariaDB owned by this test
 * (helpers/owned-mariadb.ts) is SIGKILLed mid-drain under one populus-server and three
 * populus-worker processes, stays down 5 s, and is started again on the same data directory.
 *
 * - During the outage the server reports NOT_SERVING on grpc.health.v1 and answers UNAVAILABLE.
 * - After it, the same server process serves again (SERVING) without a restart, and the workers
 *   resume: the time from the database answering again to the next commit is measured and logged.
 * - Nothing is lost, nothing is made twice, nothing stays reserved.
 */
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import test from "ava";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";
import { connect } from "../client-sdk/dist/index.js";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../client-sdk/dist/gen/grpc/health/v1/health_pb.js";
import { testDialects } from "./helpers/databases.js";
import { codeName, jobsClient, rpcError } from "./helpers/jobs-client.js";
import { ownedMariadbUnavailable, startOwnedMariadb } from "./helpers/owned-mariadb.js";
import { recordedCalls } from "./helpers/pipeline-setup.js";
import { startServer } from "./helpers/server-process.js";
import { runWorker, type WorkerProcess } from "./helpers/worker-process.js";

const PIPELINE = fileURLToPath(new URL("./fixtures/worker-pipeline.ts", import.meta.url));
const KEYS = 300;
const OUTAGE_MS = 5_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `probe` every 50 ms until it holds; answers the ms it took. */
async function within(what: string, limitMs: number, probe: () => Promise<boolean> | boolean): Promise<number> {
  const start = Date.now();
  while (!(await probe())) {
    if (Date.now() - start > limitMs) throw new Error(`${what}: not within ${limitMs / 1000} s`);
    await sleep(50);
  }
  return Date.now() - start;
}

if (testDialects().includes("mysql")) {
  test("mysql: mariadbd SIGKILLed mid-drain under one server and three workers, down 5 s, restarted: NOT_SERVING and UNAVAILABLE meanwhile, then serving again without a restart; nothing lost, made twice or left reserved", async (t) => {
    t.timeout(150_000);
    const missing = ownedMariadbUnavailable();
    if (missing !== null) return t.fail(`this test runs its own mariadbd: ${missing}`);
    const mariadb = await startOwnedMariadb();
    const dir = mkdtempSync(join(tmpdir(), "populus-outage-"));
    const workers: WorkerProcess[] = [];
    t.teardown(async () => {
      for (const w of workers) if (w.child.exitCode === null) w.child.kill("SIGKILL");
      await mariadb.remove();
      rmSync(dir, { recursive: true, force: true });
    });
    const admin = await mysql.createConnection({ uri: mariadb.url });
    await admin.query("CREATE DATABASE populus_outage");
    await admin.end();
    const server = await startServer({ database: `${mariadb.url}/populus_outage` });
    t.teardown(() => server.kill());
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion: "2" });
    const health = createClient(Health, transport);
    const serving = async () => (await health.check({ service: "populus.v1.JobService" })).status;
    const raw = jobsClient(server.url);
    const target = async () => Number((await raw.getProgress({ table: "Outage" })).progress?.target ?? 0);

    for (let i = 0; i < 3; i++) {
      workers.push(runWorker(["--pipeline", PIPELINE, "--table", "Outage", "--server", server.url, "--idle-wait", "1"], { WORKER_TEST_DIR: dir }, 120_000));
    }
    await within("a third of the keys committed", 60_000, async () => (await target().catch(() => 0)) >= KEYS / 3);

    await mariadb.kill();
    const killedAt = Date.now();
    const before = await target().catch(() => -1);
    t.is(before, -1, "GetProgress fails while the database is down");
    const notServingAfter = await within("health NOT_SERVING", 4_000, async () => (await serving()) === Serving.NOT_SERVING);
    const refused = await rpcError(raw.getProgress({ table: "Outage" }));
    t.is(codeName(refused.code), codeName(Code.Unavailable), `GetProgress during the outage: ${refused.rawMessage}`);
    t.regex(refused.rawMessage, /the database is unavailable; retry shortly/);

    await sleep(OUTAGE_MS - (Date.now() - killedAt));
    const committedBefore = recordedCalls(dir, "Outage").length;
    await mariadb.start();
    const servingAfter = await within("health SERVING again", 10_000, async () => (await serving()) === Serving.SERVING);
    const afterRestart = await target();
    const resumedAfter = await within("the workers' next commit", 30_000, async () => (await target()) > afterRestart);
    const drainedAfter = await within("every key committed", 90_000, async () => (await target()) === KEYS);
    t.log(
      `NOT_SERVING ${notServingAfter} ms after the kill; after the restart: SERVING in ${servingAfter} ms, first commit ${servingAfter + resumedAfter} ms, drained ${servingAfter + resumedAfter + drainedAfter} ms (${committedBefore} makes before the restart)`,
    );
    t.true(servingAfter + resumedAfter <= 10_000, `the workers resumed ${servingAfter + resumedAfter} ms after the database came back`);

    for (const w of workers) w.child.kill("SIGTERM");
    for (const w of workers) {
      const exit = await w.exited;
      t.is(exit.code, 0, exit.stderr + exit.stdout.slice(-2000));
    }
    const made = recordedCalls(dir, "Outage")
      .map((c) => c.id)
      .sort((a, b) => a - b);
    t.deepEqual(
      made,
      Array.from({ length: KEYS }, (_, id) => id),
      "every key made exactly once",
    );
    const db = connect({ url: server.url });
    try {
      const Outage = db.table<{ id: number }>("Outage", { keySource: [], make: () => ({}), module: PIPELINE });
      t.like(await Outage.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: KEYS });
      t.is((await Outage.fetch()).length, KEYS);
    } finally {
      db.close();
    }
    t.is(await server.stop(), 0, "the server exits 0 on SIGTERM");
  });
}
