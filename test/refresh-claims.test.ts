/**
 * Promise 4's coordination, end to end with real worker processes on each
 * dialect: when workers populate one table at once, one of them reads the key
 * source and the others go straight to reserving; a refresh that finished
 * less than refreshInterval ago is not repeated.
 *
 * The key source of fixtures/claimed-pipeline.ts records each read and then
 * waits for the test's word, so "at once" is not a matter of timing: the
 * other workers ask while the first one's refresh is provably still open
 * (the server's populus_refresh_claims_total counts them held back).
 */
import test from "ava";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { PopulateResult } from "../client-sdk/dist/index.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect, type PipelineSetup, recordedCalls, startWorker, waitFor, type Worker } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/claimed-pipeline.js");
type Setup = PipelineSetup<Pipeline>;

const setupOf = pipelinePerDialect<Pipeline>("claimed-pipeline.ts");
const WORKER = fileURLToPath(new URL("./fixtures/claimed-worker.ts", import.meta.url));

const reads = (s: Setup) => readFileSync(join(s.dir, "Claimed.reads"), "utf8").split("\n").filter(Boolean).map(Number);
const readsSoFar = (s: Setup) => {
  try {
    return reads(s);
  } catch {
    return [];
  }
};
const worker = (s: Setup, refreshInterval: number): Worker => startWorker(WORKER, [s.server.url, s.dir, String(refreshInterval)], { exitWithinMs: 120_000 });

/** The worker's populate result (its one JSON line), once it exited 0. */
async function resultOf(w: Worker): Promise<PopulateResult> {
  const exit = await w.exited;
  if (exit.code !== 0) throw new Error(`worker exited ${exit.signal ?? exit.code}: ${exit.stderr.trim()}`);
  return JSON.parse(exit.stdout.trim()) as PopulateResult;
}

/** How many ClaimRefresh calls the server held back because a refresh was running (its /metrics). */
async function heldBackWhileRunning(s: Setup): Promise<number> {
  const text = await (await fetch(`${s.server.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("populus_refresh_claims_total{") && l.includes('table="claimed"') && l.includes('outcome="running"'));
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

for (const dialect of testDialects()) {
  test.serial(
    `${dialect}: 4 worker processes populate a new table at once: one reads the key source while the 3 others are held back and wait for it, then all 4 share the keys, each made once; then refreshInterval holds a repeat back, and 0 lets it read again`,
    async (t) => {
      t.timeout(240_000);
      const s = await setupOf(dialect);
      writeFileSync(join(s.dir, "Claimed.keys"), "400");
      // A day's interval: a worker that asks only after the refresh ended (a loaded machine) is held back as recent, not granted a second read.
      const workers = Array.from({ length: 4 }, () => worker(s, 86_400));
      await waitFor("4 workers ready", () => readdirSync(s.dir).filter((f) => f.startsWith("ready.")).length === 4, undefined, 90_000);
      writeFileSync(join(s.dir, "go"), "");
      await waitFor("one worker reads the key source", () => readsSoFar(s).length > 0);
      const [reader] = reads(s);
      if (!workers.some((w) => w.child.pid === reader)) throw new Error(`the key source was read by pid ${reader}, not a worker`);
      // The reader's refresh stays open until Claimed.open exists: every other worker asks meanwhile, is held back, and waits.
      let heldBack = 0;
      for (const deadline = Date.now() + 60_000; heldBack < 3 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 100))) {
        heldBack = await heldBackWhileRunning(s);
      }
      t.true(heldBack >= 3, `the 3 others were held back while the refresh ran (${heldBack} times)`);
      t.deepEqual(reads(s), [reader], "while one refresh ran, no other worker read the key source");
      t.true(
        workers.every((w) => w.child.exitCode === null),
        "none gave up: a table with nothing pending yet is waited for, not left",
      );

      writeFileSync(join(s.dir, "Claimed.open"), "");
      const results = await Promise.all(workers.map(resultOf));
      t.is(
        results.reduce((sum, r) => sum + r.successCount, 0),
        400,
      );
      const made = recordedCalls(s.dir, "Claimed");
      t.deepEqual(
        made.map((c) => c.id).sort((a, b) => a - b),
        Array.from({ length: 400 }, (_, i) => i),
        "every key made once",
      );
      t.true(new Set(made.map((c) => c.pid)).size >= 2, "the waiters took their share once the refresh ended");
      t.deepEqual(reads(s), [reader], "a waiter takes the refresh that ended as its own: no second read");

      // Ten more keys upstream. Within the interval the finished refresh is not repeated...
      writeFileSync(join(s.dir, "Claimed.keys"), "410");
      t.deepEqual(await resultOf(worker(s, 3600)), { successCount: 0, errorList: [] });
      t.is(reads(s).length, 1, "a refresh that finished less than refreshInterval ago is not repeated");
      // ...and with none it is: the new keys are queued and made.
      t.deepEqual(await resultOf(worker(s, 0)), { successCount: 10, errorList: [] });
      t.is(reads(s).length, 2);
      t.is(recordedCalls(s.dir, "Claimed").length, 410, "every key made once");
    },
  );
}
