/**
 * The heartbeat runs off the thread that runs make (promise 3, ARCHITECTURE.md),
 * against a real server on each dialect:
 *
 * - a make that blocks its event loop with synchronous CPU work for four
 *   lease lengths keeps its lease: its job is leased once (attempts 1), its
 *   key is made once and committed once, and a second populate process that
 *   keeps reserving meanwhile never gets it (with the heartbeat on make's
 *   event loop, the 1 s lease expired and the competitor made the key too);
 * - a lease the server takes back while make runs reaches make as an abort
 *   of ctx.signal with LeaseLostError, and its result is dropped; the key is
 *   leased again and committed once;
 * - both again with `processes: 2`, where the parent's one heartbeat thread
 *   renews the children's leases and routes a lost one to the child holding it.
 *
 * Tables: fixtures/sdk-heartbeat-pipeline.ts (imported with ?url=&dir=),
 * worker processes: fixtures/sdk-heartbeat-worker.ts.
 */
import test, { type ExecutionContext } from "ava";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, LeaseLostError, type PopulateResult } from "../client-sdk/dist/index.js";
import { RESERVE_BATCH } from "../client-sdk/dist/reserve-loop.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect, type PipelineSetup, recordedCalls, startWorker, waitFor, type Worker } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/sdk-heartbeat-pipeline.js");

type Setup = PipelineSetup<Pipeline>;

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-heartbeat-pipeline.ts");

const WORKER = fileURLToPath(new URL("./fixtures/sdk-heartbeat-worker.ts", import.meta.url));

/** Starts sdk-heartbeat-worker.ts; `exited` rejects when it has not exited 20 s after start (e.g. a thread kept it alive). */
/** A worker that must exit within `exitWithinMs` of its start (its start-up under load included). */
function heartbeatWorker(s: Setup, mode: "once" | "compete", env: NodeJS.ProcessEnv = {}, exitWithinMs = 20_000): Worker {
  return startWorker(WORKER, [s.server.url, s.dir, mode], { env, exitWithinMs });
}

const calls = (s: Setup, table: string) => recordedCalls(s.dir, table);
const byNumber = (a: number, b: number) => a - b;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs a `once` worker on `table` (its key BUSY_ID blocks make for BUSY_MS) against a `compete`
 * worker that keeps reserving: waits until the blocking make started (at most `startMs`), lets the
 * rival go, checks the busy worker ran through the block and both exited 0, and answers both.
 */
async function busyAgainstRival(
  t: ExecutionContext,
  s: Setup,
  table: "Busy" | "BusyInChild",
  env: NodeJS.ProcessEnv,
  startMs: number,
): Promise<{ busy: Worker; rival: Worker; busyResult: PopulateResult; rivalResult: PopulateResult }> {
  // keepCompleted: the job rows stay (status success) so their attempts can be read after the commit.
  // Each may take up to startMs to reach its first make, then about 20 s for the rest.
  const busy = heartbeatWorker(s, "once", { POPULUS_KEEP_COMPLETED: "true", ...env }, startMs + 20_000);
  const rival = heartbeatWorker(s, "compete", env, startMs + 20_000);
  await waitFor(`the busy worker to start the blocking make of ${table}`, () => existsSync(join(s.dir, `${table}.marker`)), busy, startMs);
  // The blocking make spins only once the rival is ready to take the other keys meanwhile.
  await waitFor(`the rival worker of ${table} to be ready`, () => existsSync(join(s.dir, `${table}.rival`)), rival, startMs);
  writeFileSync(join(s.dir, `${table}.go`), "");
  const started = Date.now();
  const b = await busy.exited;
  t.true(Date.now() - started >= s.pipeline.BUSY_MS - 1000, "the busy worker ran through its blocking make");
  writeFileSync(join(s.dir, `${table}.stop`), "");
  const r = await rival.exited;
  t.is(b.code, 0, b.stderr);
  t.is(r.code, 0, r.stderr);
  const busyResult = JSON.parse(b.stdout) as PopulateResult;
  const rivalResult = JSON.parse(r.stdout) as PopulateResult;
  t.deepEqual([busyResult.errorList, rivalResult.errorList], [[], []]);
  return { busy, rival, busyResult, rivalResult };
}

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: a make that blocks its event loop for four 1 s lease lengths keeps its lease and commits once; a competing worker never gets the key`, async (t) => {
    const s = await setup();
    const { Busy, BUSY_ID } = s.pipeline;
    // The busy worker holds one Reserve batch (the blocking key and the next); the rival takes the rest and keeps asking.
    // 60 s to reach the first make, as the child variant below: with the whole suite running, a
    // worker's start (tsx, connect, refresh, the heartbeat thread) once took over 20 s.
    const { busy, rival, busyResult, rivalResult } = await busyAgainstRival(t, s, "Busy", {}, 60_000);
    t.is(busyResult.successCount, RESERVE_BATCH, "the busy worker committed both keys it held");
    t.is(rivalResult.successCount, 4 - RESERVE_BATCH);

    const made = calls(s, "Busy");
    t.deepEqual(made.map((c) => c.id).sort(byNumber), [0, 1, 2, 3], "each key was made once");
    t.deepEqual(
      made.filter((c) => c.id === BUSY_ID).map((c) => c.pid),
      [busy.child.pid],
      "only the busy worker made the blocking key",
    );
    t.false(
      made.some((c) => c.pid === rival.child.pid && c.id < RESERVE_BATCH),
      "the rival never made a key the busy worker held",
    );

    const rows = await Busy.fetch();
    t.deepEqual(rows.map((row) => row.key.id).sort(byNumber), [0, 1, 2, 3]);
    t.true((rows.find((row) => row.key.id === BUSY_ID)?.result.spins as number) > 0, "the committed row is the blocking make's result");
    const completed = await Busy.jobs.completed.fetch();
    const blocking = completed.find((j) => j.key.id === BUSY_ID);
    t.is(blocking?.attempts, 1, "the blocking key was leased once: its lease never expired");
    t.is(blocking?.pid, busy.child.pid);
    t.like(await Busy.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 4 });
  });

  test(`${dialect}: a lease taken back while make runs aborts ctx.signal with LeaseLostError; the result is dropped and the key committed once`, async (t) => {
    const s = await setup();
    const db = connect({ url: s.server.url });
    const reasons: unknown[] = [];
    let started: () => void = () => undefined;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const Reclaimed = db.table<{ id: number }>("Reclaimed", {
      keySource: [{ id: 1 }],
      make: async (_key, ctx) => {
        if (reasons.length > 0) return { first: false };
        started();
        // Waits for the abort (at most 10 s, so a missing abort fails the assertions rather than hanging).
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 10_000);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
        reasons.push(ctx.signal.reason);
        return { first: true };
      },
      module: import.meta.url,
    });
    // 3 s leases: renewed every second, so the loss is heard within about a second.
    const populating = Reclaimed.populate({ reserveJobs: true, leaseDuration: 3 });
    await firstStarted;
    await sleep(5);
    // The server takes the lease back (as for a worker it thinks is gone); the next heartbeat hears it is lost.
    t.like(await Reclaimed.jobs.refresh({ orphanTimeout: 0 }), { orphaned: 1 });
    const result = await populating;
    t.is(reasons.length, 1);
    t.true(reasons[0] instanceof LeaseLostError, `aborted with ${String(reasons[0])}`);
    t.deepEqual(result, { successCount: 1, errorList: [] }, "the lost lease's result was dropped, the second lease's committed");
    t.deepEqual(
      (await Reclaimed.fetch()).map((r) => r.result),
      [{ first: false }],
    );
    t.like(await Reclaimed.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 1 });
    db.close();
  });

  test(`${dialect}: processes: 2: a child's make that blocks its event loop for four 1 s lease lengths keeps its lease (the parent renews it) and commits once`, async (t) => {
    const s = await setup();
    const { BusyInChild, BUSY_ID } = s.pipeline;
    const { busy, busyResult, rivalResult } = await busyAgainstRival(t, s, "BusyInChild", { POPULUS_TEST_PROCESSES: "2" }, 60_000);
    t.is(busyResult.successCount + rivalResult.successCount, 4);
    const made = calls(s, "BusyInChild");
    t.deepEqual(made.map((c) => c.id).sort(byNumber), [0, 1, 2, 3], "each key was made once");
    const blockingPid = Number(readFileSync(join(s.dir, "BusyInChild.marker"), "utf8"));
    t.not(blockingPid, busy.child.pid, "the blocking make ran in a child process");
    t.deepEqual(
      made.filter((c) => c.id === BUSY_ID).map((c) => c.pid),
      [blockingPid],
      "only the busy child made the blocking key",
    );
    const blocking = (await BusyInChild.jobs.completed.fetch()).find((j) => j.key.id === BUSY_ID);
    t.is(blocking?.attempts, 1, "the blocking key was leased once: its lease never expired");
    t.like(await BusyInChild.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 4 });
  });

  test(`${dialect}: processes: 2: a lease taken back while a child's make runs aborts its ctx.signal with LeaseLostError; the key is committed once`, async (t) => {
    const s = await setup();
    const { ReclaimedInChild } = s.pipeline;
    const populating = ReclaimedInChild.populate({ reserveJobs: true, leaseDuration: 3, processes: 2 });
    await waitFor("a child starts the first make", () => existsSync(join(s.dir, "ReclaimedInChild.marker")));
    t.like(await ReclaimedInChild.jobs.refresh({ orphanTimeout: 0 }), { orphaned: 1 });
    const result = await populating;
    t.deepEqual(readFileSync(join(s.dir, "ReclaimedInChild.reasons"), "utf8").split("\n").filter(Boolean), ["LeaseLostError"]);
    t.deepEqual(result, { successCount: 1, errorList: [] }, "the lost lease's result was dropped, the second lease's committed");
    t.deepEqual(
      (await ReclaimedInChild.fetch()).map((r) => r.result),
      [{ first: false }],
    );
    t.like(await ReclaimedInChild.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 1 });
  });
}
