/**
 * populate's graceful stop (DESIGN promise 3: a worker told to stop releases
 * what it holds without charging an attempt), with real worker processes
 * that wire SIGTERM/SIGINT to populate's `signal`, against a real server on
 * each dialect:
 *
 * - a make running at SIGTERM finishes within the grace period and commits;
 *   the lease held for the next key is released (attempts back to 0);
 * - a make that ignores its signal past the grace period has its signal
 *   aborted and its lease released, and populate returns anyway;
 * - with `processes: 2`, SIGTERM to the parent alone, or SIGINT to the whole
 *   process group (Ctrl-C), stops both children the same way;
 *
 * and every time the process ends by itself with code 0, and no job is left
 * reserved.
 *
 * Tables: fixtures/sdk-stop-pipeline.ts; processes: fixtures/sdk-stop-worker.ts.
 */
import test from "ava";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { JobRecord, PopulateResult } from "../client-sdk/dist/index.js";
import { RESERVE_BATCH } from "../client-sdk/dist/reserve-loop.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

type Pipeline = typeof import("./fixtures/sdk-stop-pipeline.js");
type TableName = "Finishing" | "Stuck" | "Parallel";

interface Setup {
  readonly database: TestDatabase;
  readonly server: ServerProcess;
  readonly dir: string;
  readonly pipeline: Pipeline;
}

const WORKER = fileURLToPath(new URL("./fixtures/sdk-stop-worker.ts", import.meta.url));
const dialects = testDialects();
const setups = new Map<Dialect, Promise<Setup>>();
const workers = new Set<ChildProcess>();

async function setUp(dialect: Dialect): Promise<Setup> {
  const database = await createTestDatabase(dialect);
  const server = await startServer({ database: database.url });
  const dir = mkdtempSync(join(tmpdir(), `populus-stop-${dialect}-`));
  const pipeline = (await import(
    `./fixtures/sdk-stop-pipeline.ts?url=${encodeURIComponent(server.url)}&dir=${encodeURIComponent(dir)}`
  )) as Pipeline;
  return { database, server, dir, pipeline };
}

test.before(() => {
  for (const d of dialects) setups.set(d, setUp(d));
});

test.after.always(async () => {
  for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill("SIGKILL");
  for (const s of setups.values()) {
    const setup = await s.catch(() => undefined);
    if (setup === undefined) continue;
    setup.pipeline.db.close();
    await setup.server.stop();
    await setup.database.drop();
    rmSync(setup.dir, { recursive: true, force: true });
  }
});

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** ms since start */
  readonly at: number;
}

/** Starts sdk-stop-worker.ts in its own process group; `exited` rejects if it is still running 30 s after start. */
function startWorker(s: Setup, table: TableName, grace: number, processes: number): { child: ChildProcess; exited: Promise<Exit> } {
  const started = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", WORKER, s.server.url, s.dir, table, String(grace), String(processes)], {
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so a test can signal the group as a terminal's Ctrl-C does
  });
  workers.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Exit>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker still running after 30 s: ${stderr.trim()}`)), 30_000);
    void (once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>).then(([code, signal]) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, at: Date.now() - started });
    });
  });
  // Handled here too: a test that failed before awaiting it must not turn its timeout into an unhandled rejection.
  exited.catch(() => undefined);
  return { child, exited };
}

/** The make calls recorded for a table (one per line), or the aborted signals (`.aborted`). */
function lines(s: Setup, file: string): string[] {
  const path = join(s.dir, file);
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l !== "") : [];
}

async function waitFor(what: string, check: () => boolean, exited: Promise<Exit>): Promise<void> {
  let gone: Exit | undefined;
  void exited.then((e) => (gone = e));
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (gone !== undefined) throw new Error(`waiting for ${what}: the worker exited first (${gone.signal ?? gone.code}): ${gone.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: timed out`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ids = (jobs: readonly JobRecord[]) => jobs.map((j) => Number(j.key.id)).sort((a, b) => a - b);

for (const dialect of dialects) {
  const setup = () => setups.get(dialect) as Promise<Setup>;

  test(`${dialect}: SIGTERM while make runs: it finishes within the grace period and commits; the other held lease is released, no attempt charged`, async (t) => {
    const s = await setup();
    const { Finishing } = s.pipeline;
    const w = startWorker(s, "Finishing", 10, 1);
    await waitFor("make of key 0 to start", () => lines(s, "Finishing.calls").length > 0, w.exited);
    // Key 1 came with key 0 in one Reserve batch and is held, not started.
    t.deepEqual(ids(await Finishing.jobs.reserved.fetch()), [0, 1].slice(0, RESERVE_BATCH));
    w.child.kill("SIGTERM");
    const exit = await w.exited;
    t.is(exit.code, 0, exit.stderr);
    t.deepEqual(JSON.parse(exit.stdout) as PopulateResult, { successCount: 1, errorList: [] });
    t.deepEqual(lines(s, "Finishing.calls").map((l) => l.split(" ")[0]), ["0"], "no make started after SIGTERM");
    t.deepEqual(lines(s, "Finishing.aborted"), [], "the running make was not aborted: it finished within the grace period");
    t.deepEqual((await Finishing.fetch()).map((r) => r.key.id), [0]);
    t.is(await Finishing.jobs.reserved.count(), 0);
    const pending = await Finishing.jobs.pending.fetch();
    t.deepEqual(ids(pending), [1, 2, 3]);
    t.true(pending.every((j) => j.attempts === 0), `attempts: ${pending.map((j) => j.attempts).join(",")}`);
  });

  test(`${dialect}: a make that ignores its signal past the grace period is aborted and its lease released; populate returns and the process exits 0`, async (t) => {
    const s = await setup();
    const { Stuck } = s.pipeline;
    const w = startWorker(s, "Stuck", 0.5, 1);
    await waitFor("make of key 0 to start", () => lines(s, "Stuck.calls").length > 0, w.exited);
    const signalled = Date.now();
    w.child.kill("SIGTERM");
    const exit = await w.exited;
    const took = Date.now() - signalled;
    t.is(exit.code, 0, exit.stderr);
    t.true(took >= 500, `exited ${took} ms after SIGTERM, before the 0.5 s grace period ended`);
    t.deepEqual(JSON.parse(exit.stdout) as PopulateResult, { successCount: 0, errorList: [] });
    t.deepEqual(lines(s, "Stuck.aborted"), ["0"], "the stuck make's signal was aborted when the grace period ended");
    t.deepEqual(await Stuck.fetch(), []);
    t.is(await Stuck.jobs.reserved.count(), 0);
    const pending = await Stuck.jobs.pending.fetch();
    t.deepEqual(ids(pending), [0, 1, 2, 3]);
    t.true(pending.every((j) => j.attempts === 0), `attempts: ${pending.map((j) => j.attempts).join(",")}`);
  });

  for (const how of ["SIGTERM to the parent", "SIGINT to the process group"] as const) {
    test.serial(`${dialect}: processes: 2, ${how}: every running make finishes and commits, held leases are released, nothing stays reserved`, async (t) => {
      const s = await setup();
      const { Parallel } = s.pipeline;
      // The serial variants share the table: start each from twelve pending keys.
      await Parallel.jobs.refresh();
      await Parallel.delete({ all: true });
      await Parallel.jobs.refresh();
      rmSync(join(s.dir, "Parallel.calls"), { force: true });
      const w = startWorker(s, "Parallel", 10, 2);
      // Both children are inside a make.
      await waitFor("both children to start a make", () => new Set(lines(s, "Parallel.calls").map((l) => l.split(" ")[1])).size === 2, w.exited);
      if (how === "SIGTERM to the parent") w.child.kill("SIGTERM");
      else process.kill(-(w.child.pid ?? 0), "SIGINT");
      const exit = await w.exited;
      t.is(exit.code, 0, exit.stderr);
      const result = JSON.parse(exit.stdout) as PopulateResult;
      const made = lines(s, "Parallel.calls");
      t.deepEqual(result.errorList, []);
      t.true(result.successCount >= 2 && result.successCount < 12, `committed ${result.successCount}`);
      t.is(made.length, result.successCount, "every make that started finished and committed");
      t.deepEqual(lines(s, "Parallel.aborted"), []);
      t.is((await Parallel.fetch()).length, result.successCount);
      t.is(await Parallel.jobs.reserved.count(), 0);
      const pending = await Parallel.jobs.pending.fetch();
      t.is(pending.length, 12 - result.successCount);
      t.true(pending.every((j) => j.attempts === 0), `attempts: ${pending.map((j) => j.attempts).join(",")}`);
    });
  }
}
