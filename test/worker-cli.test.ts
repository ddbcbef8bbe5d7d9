/**
 * populus-worker, the real CLI as a process (node --import tsx
 * worker/dist/main.js) against real servers on each dialect:
 *
 * - --once populates a pipeline's table with --processes 2 and logs start,
 *   pass and stop as JSON lines; a failing make exits 1, or 0 with
 *   --suppress-errors;
 * - bad options exit 2 and an unloadable pipeline module exits 3, each with
 *   one clear line;
 * - SIGTERM mid-run exits 0: running makes commit, nothing stays reserved,
 *   no attempt is charged;
 * - the server stopped mid-run and started again on the same database and
 *   port: the worker goes on and every key is made exactly once.
 *
 * Pipeline: fixtures/worker-pipeline.ts (calls recorded in $WORKER_TEST_DIR).
 */
import test from "ava";
import BetterSqlite3 from "better-sqlite3";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type PopulusClient } from "../client-sdk/dist/index.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { recordedCalls } from "./helpers/pipeline-setup.js";
import { gaugeValue } from "./helpers/prometheus.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";
import { runWorker as startWorkerProcess, type WorkerExit, type WorkerProcess } from "./helpers/worker-process.js";

const PIPELINE = fileURLToPath(new URL("./fixtures/worker-pipeline.ts", import.meta.url));
const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

interface Setup {
  readonly database: TestDatabase;
  readonly server: ServerProcess;
  readonly dir: string;
  readonly db: PopulusClient;
}

const dialects = testDialects();
const setups: Setup[] = [];
const workers = new Set<ChildProcess>();

async function setUp(dialect: Dialect): Promise<Setup> {
  const database = await createTestDatabase(dialect);
  const server = await startServer({ database: database.url });
  const dir = mkdtempSync(join(tmpdir(), `populus-worker-${dialect}-`));
  const setup = { database, server, dir, db: connect({ url: server.url }) };
  setups.push(setup);
  return setup;
}

test.after.always(async () => {
  for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill("SIGKILL");
  for (const s of setups) {
    s.db.close();
    await s.server.stop();
    await s.database.drop();
    rmSync(s.dir, { recursive: true, force: true });
  }
});

/** Runs populus-worker with `args`, killed in teardown if still running. */
function runWorker(args: readonly string[], env: NodeJS.ProcessEnv = {}): WorkerProcess {
  const w = startWorkerProcess(args, env);
  workers.add(w.child);
  return w;
}

const calls = recordedCalls;

async function until(what: string, check: () => boolean, exited: Promise<WorkerExit>): Promise<void> {
  let gone: WorkerExit | undefined;
  void exited.then((e) => (gone = e));
  // Generous: on the shared 2-core machine under load (average 17) the CLI, tsx and two forked children took over 20 s to
  // start, and over 40 s beside another file's six worker processes starting at once.
  const deadline = Date.now() + 90_000;
  while (!check()) {
    if (gone !== undefined) throw new Error(`waiting for ${what}: populus-worker exited first (${gone.code}): ${gone.stderr}${gone.stdout}`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: timed out`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sortedIds = (made: { id: number }[]) => made.map((c) => c.id).sort((a, b) => a - b);
const table = (db: PopulusClient, name: string) => db.table<{ id: number }>(name, { keySource: [], make: () => ({}), module: PIPELINE });

test("bad options exit 2 with one line naming the option", async (t) => {
  const cases: [string[], NodeJS.ProcessEnv, string][] = [
    [[], {}, "populus-worker: --pipeline <module> is required (or set POPULUS_PIPELINE)\n"],
    [
      ["--pipeline", PIPELINE, "--processes", "0"],
      {},
      `populus-worker: option '--processes <n>' argument '0' is invalid. --processes must be a whole number from 1 to 1024, got "0"\n`,
    ],
    [
      ["--pipeline", PIPELINE, "--server", "ftp://x"],
      {},
      `populus-worker: option '--server <url>' argument 'ftp://x' is invalid. --server "ftp://x" must start with http:// or https://\n`,
    ],
    [
      ["--pipeline", PIPELINE],
      { POPULUS_LEASE_DURATION: "0" },
      `populus-worker: option '--lease-duration <seconds>' value '0' from env 'POPULUS_LEASE_DURATION' is invalid. --lease-duration must be a number of seconds from 1 to 86400, got "0"\n`,
    ],
    [
      ["--pipeline", PIPELINE, "--refresh-interval", "-5"],
      {},
      `populus-worker: option '--refresh-interval <seconds>' argument '-5' is invalid. --refresh-interval must be a number of seconds from 0 to 86400, got "-5"\n`,
    ],
    [["--pipeline", PIPELINE], { POPULUS_ONCE: "sometimes" }, `populus-worker: POPULUS_ONCE must be true or false (or 1/0, yes/no, on/off), got "sometimes"\n`],
    // The SDK's job variables, which it reads at their first use: refused before the pipeline loads, not by a stack trace.
    [["--pipeline", PIPELINE], { POPULUS_STALE_TIMEOUT: "-1" }, "populus-worker: POPULUS_STALE_TIMEOUT must be a number of seconds >= 0, got -1\n"],
    [
      ["--pipeline", PIPELINE],
      { POPULUS_KEEP_COMPLETED: "maybe" },
      `populus-worker: POPULUS_KEEP_COMPLETED must be true or false (or 1/0, yes/no, on/off), got "maybe"\n`,
    ],
    [["--pipeline", PIPELINE, "--tabel", "Squares"], {}, "populus-worker: unknown option '--tabel' (Did you mean --table?)\n"],
    [["--pipeline", PIPELINE, "--token-file", "/no/such/token"], {}, "populus-worker: --token-file /no/such/token: no such file\n"],
    [
      ["--pipeline", PIPELINE, "--table", "Squares", "--table", "Cubes"],
      { WORKER_TEST_DIR: tmpdir() },
      "populus-worker: --table Cubes: the pipeline module exports no such table; it exports Failing, Outage, Restart, Slow, Squares, Upstream\n",
    ],
  ];
  for (const [args, env, line] of cases) {
    const exit = await runWorker(args, env).exited;
    t.is(exit.code, 2, args.join(" "));
    t.is(exit.stderr, line);
    t.is(exit.stdout, "");
  }
});

test("--token-file: the worker sends its token; a worker token populates, a reader token is refused (exit 1)", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "populus-worker-token-"));
  const tokens = { worker: "w".repeat(32), reader: "r".repeat(32) };
  writeFileSync(join(dir, "tokens"), `worker ${tokens.worker}\nreader ${tokens.reader}\n`);
  writeFileSync(join(dir, "worker.token"), `${tokens.worker}\n`);
  writeFileSync(join(dir, "reader.token"), `${tokens.reader}\n`);
  const database = await createTestDatabase("sqlite");
  const server = await startServer({ database: database.url, args: ["--tokens-file", join(dir, "tokens")] });
  try {
    const run = (token: string) =>
      runWorker(["--pipeline", PIPELINE, "--table", "Squares", "--once", "--server", server.url, "--token-file", join(dir, token)], { WORKER_TEST_DIR: dir })
        .exited;
    const refused = await run("reader.token");
    t.is(refused.code, 1);
    t.regex(refused.stderr + refused.stdout, /needs the worker role; this token has the reader role/);
    t.deepEqual(calls(dir, "Squares"), [], "nothing made with a reader token");
    const ok = await run("worker.token");
    t.is(ok.code, 0, ok.stderr);
    t.deepEqual(sortedIds(calls(dir, "Squares")), range(20));
  } finally {
    await server.stop();
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an unloadable pipeline module exits 3 with one line saying why", async (t) => {
  const cases: [string, string][] = [
    ["no-such-pipeline.js", `populus-worker: cannot load pipeline module no-such-pipeline.js: ${join(process.cwd(), "no-such-pipeline.js")} does not exist\n`],
    [
      fixture("worker-broken-pipeline.ts"),
      `populus-worker: cannot load pipeline module ${fixture("worker-broken-pipeline.ts")}: the pipeline's upstream database is down\n`,
    ],
    [
      fixture("worker-empty-pipeline.ts"),
      `populus-worker: pipeline module ${fixture("worker-empty-pipeline.ts")} exports no table; export each table made with db.table() from it\n`,
    ],
  ];
  for (const [pipeline, line] of cases) {
    const exit = await runWorker(["--pipeline", pipeline, "--once"]).exited;
    t.is(exit.code, 3, pipeline);
    t.is(exit.stderr, line);
  }
});

for (const dialect of dialects) {
  const setup = setUp(dialect);
  // Each test gets its own scratch dir for the calls files.
  const scratch = async () => {
    const s = await setup;
    return mkdtempSync(join(s.dir, "run-"));
  };

  test(`${dialect}: --once --processes 2 populates the table, logs start, pass and stop, and exits 0`, async (t) => {
    const s = await setup;
    const dir = await scratch();
    const exit = await runWorker(["--pipeline", PIPELINE, "--table", "Squares", "--once", "--processes", "2", "--server", s.server.url], {
      WORKER_TEST_DIR: dir,
    }).exited;
    t.is(exit.code, 0, exit.stderr);
    t.is(exit.stderr, "");
    t.like(exit.logs[0], {
      level: 30,
      service: "populus-worker",
      msg: "start",
      tables: ["Squares"],
      servers: [s.server.url],
      once: true,
      processes: 2,
      refreshIntervalSeconds: 30,
    });
    t.like(
      exit.logs.find((l) => l.msg === "pass"),
      { table: "Squares", successCount: 20, errors: 0 },
    );
    t.like(exit.logs.at(-1), { msg: "stop", state: "stopped", reason: "done", successCount: 20, errors: 0, exitCode: 0 });
    t.deepEqual(sortedIds(calls(dir, "Squares")), range(20), "each key made once");
    // Not "by both children": 20 instant makes may all be done by the first child before the second is up.
    t.false(
      calls(dir, "Squares").some((c) => c.pid === exit.pid),
      "by child processes, not the worker's own",
    );
    const Squares = table(s.db, "Squares");
    t.is((await Squares.fetch()).length, 20);
    t.like(await Squares.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 20, remaining: 0 });
  });

  test(`${dialect}: a failing make exits 1, or 0 with --suppress-errors; the error is logged with its key`, async (t) => {
    const s = await setup;
    const dir = await scratch();
    const args = ["--pipeline", PIPELINE, "--table", "Failing", "--once", "--server", s.server.url];
    const failed = await runWorker(args, { WORKER_TEST_DIR: dir }).exited;
    t.is(failed.code, 1, failed.stderr);
    t.like(
      failed.logs.find((l) => l.level === 50),
      { table: "Failing", key: { id: 3 }, error: "key 3 is broken" },
    );
    t.like(failed.logs.at(-1), { msg: "stop", reason: "failed", exitCode: 1 });
    const Failing = table(s.db, "Failing");
    await Failing.jobs.errors.delete();
    const suppressed = await runWorker([...args, "--suppress-errors"], { WORKER_TEST_DIR: dir }).exited;
    t.is(suppressed.code, 0, suppressed.stderr);
    t.like(
      suppressed.logs.find((l) => l.msg === "make failed"),
      { level: 40, table: "Failing", key: { id: 3 }, error: "key 3 is broken" },
    );
    t.like(suppressed.logs.at(-1), { msg: "stop", reason: "done", errors: 1, exitCode: 0 });
    t.like(await Failing.jobs.progress(), { pending: 0, reserved: 0, error: 1, target: 4 });
  });

  test(`${dialect}: an idle worker waits on the server, not polling it: no call is answered while nothing changes; is woken by a job queued by another client and makes it, and refreshes when its --refresh-interval comes due`, async (t) => {
    const s = await setup;
    const dir = await scratch();
    const metric = async (pattern: RegExp) => {
      const text = await (await fetch(`${s.server.url}/metrics`)).text();
      return text
        .split("\n")
        .filter((l) => pattern.test(l))
        .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
    };
    const claimsAsked = () => metric(/^populus_refresh_claims_total\{.*table="upstream"/);
    const waiting = () => gaugeValue(s.server.url, "populus_refresh_claims_waiting");
    // --idle-wait 1: a worker that slept and passed again (as before the long-poll) would ask every second or two.
    const w = runWorker(["--pipeline", PIPELINE, "--table", "Upstream", "--server", s.server.url, "--idle-wait", "1", "--refresh-interval", "3600"], {
      WORKER_TEST_DIR: dir,
    });
    /** Polls the server's gauge until one long-poll waits (a failed scrape counts as not yet). */
    const waitsOnServer = (worker: typeof w) => {
      let idle = false;
      void (async () => {
        while (!idle && worker.child.exitCode === null) {
          idle = (await waiting().catch(() => 0)) === 1;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      return until("the worker waits on the server", () => idle, worker.exited);
    };
    await waitsOnServer(w);
    const asked = await claimsAsked();
    await new Promise((r) => setTimeout(r, 3000));
    t.is(await claimsAsked(), asked, "no ClaimRefresh of the table answered in 3 s of idling (the worker calls nothing else while idle)");
    t.is(await waiting(), 1, "still waiting on the server");

    // Another client queues a job: the waiting worker is answered and computes it.
    const Upstream = s.db.table<{ id: number }>("Upstream", { keySource: [{ id: 7 }], make: () => ({}), module: PIPELINE });
    await Upstream.jobs.refresh();
    await until("the queued job is made", () => calls(dir, "Upstream").length === 1, w.exited);
    t.deepEqual(sortedIds(calls(dir, "Upstream")), [7]);
    w.child.kill("SIGTERM");
    t.is((await w.exited).code, 0);

    // With a refresh interval of 1 s, a waiting worker is granted the refresh when it comes due and reads the new upstream keys.
    const due = runWorker(["--pipeline", PIPELINE, "--table", "Upstream", "--server", s.server.url, "--idle-wait", "3600", "--refresh-interval", "1"], {
      WORKER_TEST_DIR: dir,
    });
    await waitsOnServer(due);
    writeFileSync(join(dir, "Upstream.keys"), "3");
    await until("the new upstream keys are made", () => calls(dir, "Upstream").length === 4, due.exited);
    t.deepEqual(sortedIds(calls(dir, "Upstream")), [0, 1, 2, 7]);
    due.child.kill("SIGTERM");
    t.is((await due.exited).code, 0);
  });

  test(`${dialect}: SIGTERM mid-run: running makes commit, held leases are released, nothing stays reserved, exit 0`, async (t) => {
    const s = await setup;
    const dir = await scratch();
    const w = runWorker(["--pipeline", PIPELINE, "--table", "Slow", "--processes", "2", "--server", s.server.url, "--grace", "10"], { WORKER_TEST_DIR: dir });
    // Two makes started (by one child or both: under load one child may come up long after the other).
    await until("two makes to start", () => calls(dir, "Slow").length >= 2, w.exited);
    w.child.kill("SIGTERM");
    const exit = await w.exited;
    t.is(exit.code, 0, exit.stderr);
    t.like(
      exit.logs.find((l) => l.msg !== undefined && String(l.msg).startsWith("stopping")),
      { signal: "SIGTERM", state: "stopping", graceSeconds: 10 },
    );
    const stop = exit.logs.at(-1);
    t.like(stop, { msg: "stop", reason: "stopped", errors: 0, exitCode: 0 });
    const made = calls(dir, "Slow");
    t.true(made.length >= 2 && made.length < 10, `${made.length} makes`);
    t.is(stop?.successCount, made.length, "every make that started committed");
    const Slow = table(s.db, "Slow");
    t.is((await Slow.fetch()).length, made.length);
    t.is(await Slow.jobs.reserved.count(), 0);
    const pending = await Slow.jobs.pending.fetch();
    t.is(pending.length, 10 - made.length);
    t.true(
      pending.every((j) => j.attempts === 0),
      `attempts: ${pending.map((j) => j.attempts).join(",")}`,
    );
  });

  if (dialect === "sqlite") {
    test("sqlite: the server is SIGKILLed mid-run and started again on the same file: the file is intact, every key commits once, nothing stays reserved", async (t) => {
      const database = await createTestDatabase("sqlite");
      let server = await startServer({ database: database.url });
      const dir = mkdtempSync(join(tmpdir(), "populus-worker-sigkill-"));
      try {
        // Not --once: a Reserve whose answer died with the server leaves its jobs reserved until
        // their 2 s leases expire, and the worker's next passes take them then.
        const w = runWorker(["--pipeline", PIPELINE, "--table", "Restart", "--server", server.url, "--lease-duration", "2", "--idle-wait", "1"], {
          WORKER_TEST_DIR: dir,
        });
        await until("five makes", () => calls(dir, "Restart").length >= 5, w.exited);
        // Results committed before the kill, read back through the server: each must survive it as it was.
        const early = connect({ url: server.url });
        let committed: { id: number; at: number | undefined }[] = [];
        try {
          const deadline = Date.now() + 20_000;
          while (committed.length === 0 && Date.now() < deadline) {
            committed = (await table(early, "Restart").fetch()).map((r) => ({ id: Number(r.key.id), at: r.completeTime?.getTime() }));
          }
        } finally {
          early.close();
        }
        t.true(committed.length > 0, "some results committed before the kill");
        await server.kill();
        const file = new BetterSqlite3(database.url.replace(/^sqlite:/, ""), { readonly: true });
        try {
          t.is(file.pragma("integrity_check", { simple: true }), "ok", "the file is intact after the SIGKILL");
        } finally {
          file.close();
        }
        server = await startServer({ database: database.url, args: ["--port", String(server.port)] });
        const db = connect({ url: server.url });
        const Restart = table(db, "Restart");
        try {
          const deadline = Date.now() + 45_000;
          while ((await Restart.jobs.progress()).target < 30 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
          w.child.kill("SIGTERM");
          const exit = await w.exited;
          t.is(exit.code, 0, exit.stderr + exit.stdout);
          t.deepEqual(sortedIds((await Restart.fetch()).map((r) => ({ id: Number(r.key.id) }))), range(30), "every key committed, once");
          t.like(await Restart.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 30 });
          const after = new Map((await Restart.fetch()).map((r) => [Number(r.key.id), r.completeTime?.getTime()]));
          for (const c of committed) t.is(after.get(c.id), c.at, `key ${c.id}'s result, committed before the kill, is kept as it was`);
          // A make whose commit died with the server may run again; its result still commits once.
          const made = sortedIds(calls(dir, "Restart"));
          t.deepEqual([...new Set(made)], range(30), "every key made");
          t.true(made.length <= 60, `makes: ${made.length}`);
        } finally {
          db.close();
        }
      } finally {
        await server.stop();
        await database.drop();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test(`${dialect}: the server stops mid-run and starts again on the same database and port: the worker finishes, every key made exactly once`, async (t) => {
    // Its own server: this test stops it.
    const database = await createTestDatabase(dialect);
    let server = await startServer({ database: database.url });
    const dir = mkdtempSync(join(tmpdir(), `populus-worker-restart-${dialect}-`));
    try {
      const w = runWorker(["--pipeline", PIPELINE, "--table", "Restart", "--once", "--server", server.url], { WORKER_TEST_DIR: dir });
      await until("five makes", () => calls(dir, "Restart").length >= 5, w.exited);
      t.is(await server.stop(), 0);
      await new Promise((r) => setTimeout(r, 500));
      server = await startServer({ database: database.url, args: ["--port", String(server.port)] });
      const exit = await w.exited;
      t.is(exit.code, 0, exit.stderr + exit.stdout);
      // successCount counts passes that ended: when the SDK's retries ran out mid-pass, that pass's commits are not in it.
      t.like(exit.logs.at(-1), { msg: "stop", reason: "done", errors: 0, exitCode: 0 });
      for (const l of exit.logs.filter((l) => l.level !== 30)) t.like(l, { level: 40, msg: "server unavailable; retrying" });
      t.deepEqual(sortedIds(calls(dir, "Restart")), range(30), "each key made exactly once");
      const db = connect({ url: server.url });
      const Restart = table(db, "Restart");
      t.deepEqual(sortedIds((await Restart.fetch()).map((r) => ({ id: Number(r.key.id) }))), range(30));
      t.like(await Restart.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 30 });
      db.close();
    } finally {
      await server.stop();
      await database.drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
