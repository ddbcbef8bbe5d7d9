/**
 * Deferred deletes on SQLite (server/src/store/sqlite/deferred-deletes.ts), through a real server
 * process on a real file, with a second connection reading the file as it is on disk:
 * - in a large table (here, from any size: --sqlite-defer-deletes-from 0) a Complete leaves its
 *   jobs' rows marked done, hidden from Progress and ListJobs, and they are deleted within seconds;
 * - a key whose job is marked done is queued afresh by refresh once its result is deleted (through
 *   DeleteTargets or straight in the file), and ignored afresh by Ignore;
 * - a server stopped cleanly deletes what it marked; rows left marked by a server killed with
 *   SIGKILL are deleted by the next server at start;
 * - below the threshold (the default) a Complete deletes its rows at once.
 * store-conformance runs every scenario with deferral on as well when POPULUS_SQLITE_DEFER_DELETES_FROM=0.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import BetterSqlite3 from "better-sqlite3";
import { JobStatus } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { DEFAULT_DEFER_DELETES_FROM } from "../server/dist/store/sqlite/deferred-deletes.js";
import { allJobs, counts, idOf, type JobsClient, jobsClient, key, keys, only, until } from "./helpers/jobs-client.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const WORKER = { workerId: "deferred-deletes-test", host: "test-host", pid: 1, user: "tester", codeVersion: "v1" };

interface Setup {
  readonly file: string;
  readonly start: (args?: string[]) => Promise<{ server: ServerProcess; client: JobsClient }>;
  /** The jobs rows of `table` by key id, as the file holds them now. */
  readonly rows: (table: string) => Map<number, { status: string; attempts: number }>;
}

function setUp(t: ExecutionContext): Setup {
  const dir = mkdtempSync(path.join(tmpdir(), "populus-deferred-"));
  const file = path.join(dir, "populus.db");
  const servers: ServerProcess[] = [];
  t.teardown(async () => {
    for (const s of servers) await s.kill().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    file,
    async start(args = ["--sqlite-defer-deletes-from", "0"]) {
      const server = await startServer({ database: `sqlite:${file}`, args });
      servers.push(server);
      return { server, client: jobsClient(server.url) };
    },
    rows(table) {
      const db = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
      try {
        const found = db.prepare(`SELECT key_json, status, attempts FROM "~~${table}"`).all() as { key_json: string; status: string; attempts: number }[];
        return new Map(found.map((r) => [Number(JSON.parse(r.key_json).id), { status: r.status, attempts: r.attempts }]));
      } finally {
        db.close();
      }
    },
  };
}

/** Queues keys 0..n-1 of `table` and completes the first `done` of them (one Reserve, one Complete). */
async function completeSome(client: JobsClient, table: string, n: number, done: number): Promise<void> {
  await client.refresh({ table, keys: keys(0, n) });
  const { leases } = await client.reserve({ table, maxJobs: done, worker: WORKER });
  await client.complete({ table, completions: leases.map((l) => ({ leaseToken: l.leaseToken, result: { id: idOf(l.key) } })) });
}

test("a Complete in a large table marks its rows done: hidden from Progress and ListJobs, then deleted within seconds", async (t) => {
  const s = setUp(t);
  const { client } = await s.start();
  await completeSome(client, "marked", 5, 3);
  // Read from the file at once: the purge waits a second after the table's last Complete.
  const marked = [...s.rows("marked").values()].filter((r) => r.status === "done").length;
  t.true(marked > 0, "the completed jobs' rows are still in the file, marked done");
  t.deepEqual(await counts(client, "marked"), only({ pending: 2, remaining: 2, target: 3 }));
  t.deepEqual(
    (await allJobs(client, "marked")).map((j) => [idOf(j.key), j.status]),
    [
      [3, JobStatus.PENDING],
      [4, JobStatus.PENDING],
    ],
  );
  await until("the marked rows are deleted", async () => s.rows("marked").size === 2);
  t.deepEqual([...s.rows("marked").keys()].sort(), [3, 4]);
});

test("a key whose job is marked done is queued afresh once its result is deleted, through DeleteTargets or in the file; Ignore starts it afresh too", async (t) => {
  const s = setUp(t);
  const { client } = await s.start();
  await completeSome(client, "revive", 4, 4);
  t.deepEqual(Object.fromEntries([...s.rows("revive")].map(([id, r]) => [id, r.status])), { 0: "done", 1: "done", 2: "done", 3: "done" });
  // With its result in the target, a done key is computed: no job.
  t.is((await client.refresh({ table: "revive", keys: keys(0, 4) })).added, 0n);
  t.is((await client.refresh({ table: "revive", keys: [key(0)] })).added, 0n, "one key alone (its own statement) as well");

  await client.deleteTargets({ table: "revive", keys: [key(0)] });
  const other = new BetterSqlite3(s.file);
  other.pragma("busy_timeout = 5000");
  other.prepare(`DELETE FROM "revive" WHERE key_hash = (SELECT key_hash FROM "~~revive" WHERE json_extract(key_json, '$.id') = '1')`).run();
  other.close();
  t.is((await client.refresh({ table: "revive", keys: [key(0)] })).added, 1n, "one key alone, after DeleteTargets");
  t.is((await client.refresh({ table: "revive", keys: keys(1, 4) })).added, 1n, "a batch, after a delete in the file");
  t.is((await client.ignore({ table: "revive", keys: [key(2)] })).ignored, 1n);

  t.deepEqual(await counts(client, "revive"), only({ pending: 2, remaining: 2, ignore: 1, target: 2 }));
  const fresh = s.rows("revive");
  for (const id of [0, 1, 2]) t.is(fresh.get(id)?.attempts, 0, `key ${id} starts with no attempt, as a new job`);
  t.deepEqual(
    (await allJobs(client, "revive")).map((j) => [idOf(j.key), j.status, j.attempts]),
    [
      [0, JobStatus.PENDING, 0],
      [1, JobStatus.PENDING, 0],
      [2, JobStatus.IGNORE, 0],
    ],
  );
  // The revived jobs are ordinary ones: reserved and completed again.
  const { leases } = await client.reserve({ table: "revive", maxJobs: 10, worker: WORKER });
  t.deepEqual(leases.map((l) => idOf(l.key)).sort(), [0, 1]);
  await client.complete({ table: "revive", completions: leases.map((l) => ({ leaseToken: l.leaseToken, result: {} })) });
  t.deepEqual(await counts(client, "revive"), only({ ignore: 1, target: 4 }));
});

test("rows left marked done by a server killed with SIGKILL are deleted by the next server at start; nothing committed is lost", async (t) => {
  const s = setUp(t);
  const first = await s.start();
  await completeSome(first.client, "killed", 50, 40);
  t.is([...s.rows("killed").values()].filter((r) => r.status === "done").length, 40);
  await first.server.kill();
  const second = await s.start();
  await until("the next server deletes the marked rows", async () => s.rows("killed").size === 10);
  t.deepEqual(await counts(second.client, "killed"), only({ pending: 10, remaining: 10, target: 40 }));
});

test("a server stopped cleanly deletes the rows it marked done before it exits", async (t) => {
  const s = setUp(t);
  const { server } = await s.start();
  await completeSome(jobsClient(server.url), "stopped", 30, 20);
  t.is(await server.stop(), 0);
  t.deepEqual(
    [...s.rows("stopped").values()].map((r) => r.status),
    Array.from({ length: 10 }, () => "pending"),
  );
});

test("below --sqlite-defer-deletes-from (default 100,000 ids), a Complete deletes its rows at once", async (t) => {
  const s = setUp(t);
  // The default, said as a flag: a POPULUS_SQLITE_DEFER_DELETES_FROM of the run would win over no flag.
  const { client } = await s.start(["--sqlite-defer-deletes-from", String(DEFAULT_DEFER_DELETES_FROM)]);
  await completeSome(client, "small", 5, 3);
  t.deepEqual([...s.rows("small").keys()].sort(), [3, 4]);
});
