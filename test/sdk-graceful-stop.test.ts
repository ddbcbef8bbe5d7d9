/**
 * populate's graceful stop (promise 3, ARCHITECTURE.md: a worker told to stop releases
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
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { JobRecord, PopulateResult } from "../client-sdk/dist/index.js";
import { RESERVE_BATCH } from "../client-sdk/dist/reserve-loop.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect, type PipelineSetup, startWorker, waitFor, type Worker } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/sdk-stop-pipeline.js");
type TableName = "Finishing" | "Stuck" | "Parallel";

type Setup = PipelineSetup<Pipeline>;

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-stop-pipeline.ts");

const WORKER = fileURLToPath(new URL("./fixtures/sdk-stop-worker.ts", import.meta.url));

/** Starts sdk-stop-worker.ts in its own process group; `exited` rejects if it is still running 30 s after start. */
function stopWorker(s: Setup, table: TableName, grace: number, processes: number): Worker {
  return startWorker(WORKER, [s.server.url, s.dir, table, String(grace), String(processes)], { detached: true, exitWithinMs: 30_000 });
}

/** The make calls recorded for a table (one per line), or the aborted signals (`.aborted`). */
function lines(s: Setup, file: string): string[] {
  const path = join(s.dir, file);
  return existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((l) => l !== "")
    : [];
}

const ids = (jobs: readonly JobRecord[]) => jobs.map((j) => Number(j.key.id)).sort((a, b) => a - b);

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: SIGTERM while make runs: it finishes within the grace period and commits; the other held lease is released, no attempt charged`, async (t) => {
    const s = await setup();
    const { Finishing } = s.pipeline;
    const w = stopWorker(s, "Finishing", 10, 1);
    await waitFor("make of key 0 to start", () => lines(s, "Finishing.calls").length > 0, w);
    // Key 1 came with key 0 in one Reserve batch and is held, not started.
    t.deepEqual(ids(await Finishing.jobs.reserved.fetch()), [0, 1].slice(0, RESERVE_BATCH));
    w.child.kill("SIGTERM");
    const exit = await w.exited;
    t.is(exit.code, 0, exit.stderr);
    t.deepEqual(JSON.parse(exit.stdout) as PopulateResult, { successCount: 1, errorList: [] });
    t.deepEqual(
      lines(s, "Finishing.calls").map((l) => l.split(" ")[0]),
      ["0"],
      "no make started after SIGTERM",
    );
    t.deepEqual(lines(s, "Finishing.aborted"), [], "the running make was not aborted: it finished within the grace period");
    t.deepEqual(
      (await Finishing.fetch()).map((r) => r.key.id),
      [0],
    );
    t.is(await Finishing.jobs.reserved.count(), 0);
    const pending = await Finishing.jobs.pending.fetch();
    t.deepEqual(ids(pending), [1, 2, 3]);
    t.true(
      pending.every((j) => j.attempts === 0),
      `attempts: ${pending.map((j) => j.attempts).join(",")}`,
    );
  });

  test(`${dialect}: a make that ignores its signal past the grace period is aborted and its lease released; populate returns and the process exits 0`, async (t) => {
    const s = await setup();
    const { Stuck } = s.pipeline;
    const w = stopWorker(s, "Stuck", 0.5, 1);
    await waitFor("make of key 0 to start", () => lines(s, "Stuck.calls").length > 0, w);
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
    t.true(
      pending.every((j) => j.attempts === 0),
      `attempts: ${pending.map((j) => j.attempts).join(",")}`,
    );
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
      const w = stopWorker(s, "Parallel", 10, 2);
      // Both children are inside a make.
      await waitFor("both children to start a make", () => new Set(lines(s, "Parallel.calls").map((l) => l.split(" ")[1])).size === 2, w);
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
      t.true(
        pending.every((j) => j.attempts === 0),
        `attempts: ${pending.map((j) => j.attempts).join(",")}`,
      );
    });
  }
}
