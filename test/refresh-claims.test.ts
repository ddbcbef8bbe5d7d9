/**
 * Promise 4's coordination, end to end with real worker processes on each
 * dialect: when workers populate one table at once, one of them reads the key
 * source and the others go straight to reserving; a refresh that finished
 * less than refreshInterval ago is not repeated.
 *
 * The key source of fixtures/claimed-pipeline.ts records each read and then
 * waits for the test's word, so "at once" is not a matter of timing: the
 * other workers ask while the first one's refresh is provably still open.
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

for (const dialect of testDialects()) {
  test.serial(
    `${dialect}: 6 worker processes populate a new table at once: one reads the key source while the 5 others are held back and return, that one makes every key once; then refreshInterval holds a repeat back, and 0 lets it read again`,
    async (t) => {
      t.timeout(240_000);
      const s = await setupOf(dialect);
      writeFileSync(join(s.dir, "Claimed.keys"), "40");
      const workers = Array.from({ length: 6 }, () => worker(s, 0));
      await waitFor("6 workers ready", () => readdirSync(s.dir).filter((f) => f.startsWith("ready.")).length === 6, undefined, 90_000);
      writeFileSync(join(s.dir, "go"), "");
      await waitFor("one worker reads the key source", () => readsSoFar(s).length > 0);
      const [reader] = reads(s);
      const readerWorker = workers.find((w) => w.child.pid === reader);
      if (readerWorker === undefined) throw new Error(`the key source was read by pid ${reader}, not a worker`);
      // The reader's refresh stays open until Claimed.open exists: every other worker ends meanwhile.
      const others = workers.filter((w) => w !== readerWorker);
      for (const other of others) {
        t.deepEqual(await resultOf(other), { successCount: 0, errorList: [] }, "held back: a table with nothing pending yet has nothing to reserve");
      }
      t.deepEqual(reads(s), [reader], "while one refresh ran, no other worker read the key source");

      writeFileSync(join(s.dir, "Claimed.open"), "");
      t.deepEqual(await resultOf(readerWorker), { successCount: 40, errorList: [] });
      t.deepEqual(
        recordedCalls(s.dir, "Claimed")
          .map((c) => c.id)
          .sort((a, b) => a - b),
        Array.from({ length: 40 }, (_, i) => i),
        "every key made once",
      );

      // Ten more keys upstream. Within the interval the finished refresh is not repeated...
      writeFileSync(join(s.dir, "Claimed.keys"), "50");
      t.deepEqual(await resultOf(worker(s, 3600)), { successCount: 0, errorList: [] });
      t.is(reads(s).length, 1, "a refresh that finished less than refreshInterval ago is not repeated");
      // ...and with none it is: the new keys are queued and made.
      t.deepEqual(await resultOf(worker(s, 0)), { successCount: 10, errorList: [] });
      t.is(reads(s).length, 2);
      t.is(recordedCalls(s.dir, "Claimed").length, 50, "every key made once");
    },
  );
}
