/**
 * Recovery and concurrency of populate() across real OS processes, against a
 * real server on each dialect:
 *
 * - orphan recovery: a worker process killed with SIGKILL mid-job leaves its
 *   leases reserved; `jobs.refresh({ orphanTimeout })` returns them to
 *   pending and another populate completes them, each key once in the target;
 * - stale removal: a refresh with a smaller key source removes exactly the
 *   dropped keys' pending jobs, once they are older than staleTimeout;
 * - two populate runs in separate processes on one table at once never make
 *   the same key twice.
 *
 * Lease expiry is not exercised here: populate() asks for 60 s leases
 * (LEASE_DURATION_S) and has no option to shorten them; the server's expiry
 * sweep is covered by the store conformance suite.
 *
 * Tables live in fixtures/sdk-recovery-pipeline.ts (imported with
 * ?url=&dir=); worker processes are fixtures/sdk-recovery-worker.ts.
 */
import test from "ava";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, InvalidArgumentError, type PopulateResult } from "../client-sdk/dist/index.js";
import { RESERVE_BATCH } from "../client-sdk/dist/reserve-loop.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect, type PipelineSetup, recordedCalls, startWorker, waitFor, type Worker } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/sdk-recovery-pipeline.js");

type Setup = PipelineSetup<Pipeline>;

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-recovery-pipeline.ts");

const WORKER = fileURLToPath(new URL("./fixtures/sdk-recovery-worker.ts", import.meta.url));

/** Starts sdk-recovery-worker.ts for `table` in its own OS process. */
function recoveryWorker(s: Setup, table: "Orphan" | "Shared" | "Expiry", barrier = false, env: NodeJS.ProcessEnv = {}): Worker {
  return startWorker(WORKER, [s.server.url, s.dir, table, ...(barrier ? ["--barrier"] : [])], { env });
}

const calls = (s: Setup, table: string) => recordedCalls(s.dir, table);

const byNumber = (a: number, b: number) => a - b;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: orphan recovery: a worker killed with SIGKILL mid-job; refresh({ orphanTimeout }) re-pends its keys and another populate completes them once`, async (t) => {
    const s = await setup();
    const { Orphan, BLOCKING_ID } = s.pipeline;
    writeFileSync(join(s.dir, "Orphan.block"), "");
    const worker = recoveryWorker(s, "Orphan");
    const marker = join(s.dir, "Orphan.marker");
    await waitFor("the worker to start the blocking make", () => existsSync(marker), worker);
    const pid = worker.child.pid;
    t.is(readFileSync(marker, "utf8"), String(pid));
    worker.child.kill("SIGKILL");
    const exit = await worker.exited;
    t.is(exit.signal, "SIGKILL");
    rmSync(join(s.dir, "Orphan.block"));

    // The dead worker's leases (the key it was making and the one reserved with it) are still reserved.
    const reserved = await Orphan.jobs.reserved.fetch();
    t.is(reserved.length, RESERVE_BATCH, "the worker held one Reserve batch");
    t.true(
      reserved.some((j) => j.key.id === BLOCKING_ID),
      "the blocked key is still reserved",
    );
    t.true(reserved.every((j) => j.pid === pid && j.status === "reserved" && j.attempts === 1));
    t.deepEqual(await Orphan.fetch(), [], "the killed worker committed nothing");

    // Leases younger than orphanTimeout are left alone; older ones go back to pending.
    t.deepEqual(await Orphan.jobs.refresh({ orphanTimeout: 3600 }), { added: 0, removed: 0, orphaned: 0, rePended: 0 });
    t.is(await Orphan.jobs.reserved.count(), reserved.length);
    await new Promise((r) => setTimeout(r, 5));
    t.deepEqual(await Orphan.jobs.refresh({ orphanTimeout: 0 }), { added: 0, removed: 0, orphaned: reserved.length, rePended: 0 });
    t.is(await Orphan.jobs.reserved.count(), 0);
    const pending = await Orphan.jobs.pending.fetch();
    t.deepEqual(pending.map((j) => j.key.id).sort(byNumber), range(6));
    t.true(pending.filter((j) => reserved.some((r) => r.key.id === j.key.id)).every((j) => j.attempts === 1 && j.leaseExpireTime === undefined));

    // Another populate completes every key; the target holds each exactly once.
    t.deepEqual(await Orphan.populate({ reserveJobs: true }), { successCount: 6, errorList: [] });
    const rows = await Orphan.fetch();
    t.deepEqual(
      rows.map((r) => [r.key.id, r.result.double]).sort((a, b) => Number(a[0]) - Number(b[0])),
      range(6).map((id) => [id, id * 2]),
    );
    t.like(await Orphan.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 6, remaining: 0 });
    const made = calls(s, "Orphan");
    t.deepEqual(
      made.filter((c) => c.pid === pid).map((c) => c.id),
      [BLOCKING_ID],
      "the killed worker got as far as the blocking key",
    );
    t.deepEqual(
      made
        .filter((c) => c.pid === process.pid)
        .map((c) => c.id)
        .sort(byNumber),
      range(6),
    );
  });

  test(`${dialect}: lease expiry: a worker with a 2 s lease killed with SIGKILL; its keys come back without any refresh`, async (t) => {
    const s = await setup();
    const { Expiry, BLOCKING_ID } = s.pipeline;
    writeFileSync(join(s.dir, "Expiry.block"), "");
    const worker = recoveryWorker(s, "Expiry", false, { SDK_TEST_LEASE: "2" });
    await waitFor("the worker to start the blocking make", () => existsSync(join(s.dir, "Expiry.marker")), worker);
    const reserved = await Expiry.jobs.reserved.fetch();
    t.true(reserved.some((j) => j.key.id === BLOCKING_ID));
    // The lease asked for: 2 s from reservation (the server's clock), not the 60 s default.
    for (const j of reserved) {
      const leaseMs = (j.leaseExpireTime?.getTime() ?? 0) - (j.reserveTime?.getTime() ?? 0);
      t.true(leaseMs >= 2000 && leaseMs < 5000, `lease of ${leaseMs} ms`);
    }
    worker.child.kill("SIGKILL");
    await worker.exited;
    rmSync(join(s.dir, "Expiry.block"));
    // No refresh: the server's sweep returns expired leases (2 s lease + 1 s sweep).
    let back = false;
    for (let i = 0; i < 75 && !back; i++) {
      back = (await Expiry.jobs.reserved.count()) === 0 && (await Expiry.jobs.pending.count()) === 6;
      if (!back) await new Promise((r) => setTimeout(r, 200));
    }
    t.true(back, "every key is pending again without a refresh");
    t.deepEqual(await Expiry.populate({ reserveJobs: true, refresh: false }), { successCount: 6, errorList: [] });
    t.deepEqual((await Expiry.fetch()).map((r) => r.key.id).sort(byNumber), range(6));
  });

  test(`${dialect}: populate rejects a lease outside 1-86400 s`, async (t) => {
    const s = await setup();
    await t.throwsAsync(s.pipeline.Expiry.populate({ reserveJobs: true, leaseDuration: 0.5 }), {
      instanceOf: InvalidArgumentError,
      message: "Expiry.populate: leaseDuration must be from 1 to 86400 seconds, got 0.5",
    });
  });

  test(`${dialect}: stale removal: refresh with a smaller key source removes exactly the dropped keys' pending jobs`, async (t) => {
    const s = await setup();
    const db = connect({ url: s.server.url });
    let n = 10;
    const Stale = db.table<{ id: number }>("Stale", {
      keySource: () => range(n).map((id) => ({ id })),
      make: () => ({}),
      module: import.meta.url,
    });
    t.deepEqual(await Stale.jobs.refresh(), { added: 10, removed: 0, orphaned: 0, rePended: 0 });
    n = 6;
    // Default staleTimeout (config.jobs, 3600 s): the jobs are too young to be stale.
    t.deepEqual(await Stale.jobs.refresh(), { added: 0, removed: 0, orphaned: 0, rePended: 0 });
    t.is(await Stale.jobs.pending.count(), 10);
    await new Promise((r) => setTimeout(r, 1100));
    t.deepEqual(await Stale.jobs.refresh({ staleTimeout: 1 }), { added: 0, removed: 4, orphaned: 0, rePended: 0 });
    t.deepEqual((await Stale.jobs.pending.fetch()).map((j) => j.key.id).sort(byNumber), range(6));
    // Nothing left to remove; a key that comes back is added again.
    t.deepEqual(await Stale.jobs.refresh({ staleTimeout: 0 }), { added: 0, removed: 0, orphaned: 0, rePended: 0 });
    n = 7;
    t.deepEqual(await Stale.jobs.refresh({ staleTimeout: 0 }), { added: 1, removed: 0, orphaned: 0, rePended: 0 });
    t.deepEqual((await Stale.jobs.pending.fetch()).map((j) => j.key.id).sort(byNumber), range(7));
    db.close();
  });

  test(`${dialect}: two populate runs in separate processes on one table at once never make a key twice`, async (t) => {
    const s = await setup();
    const { Shared } = s.pipeline;
    const a = recoveryWorker(s, "Shared", true);
    const b = recoveryWorker(s, "Shared", true);
    const ready = (w: Worker) => existsSync(join(s.dir, `ready.${w.child.pid}`));
    await Promise.all([waitFor("worker a to be ready", () => ready(a), a), waitFor("worker b to be ready", () => ready(b), b)]);
    writeFileSync(join(s.dir, "go"), "");
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    t.is(ea.code, 0, ea.stderr);
    t.is(eb.code, 0, eb.stderr);
    const ra = JSON.parse(ea.stdout) as PopulateResult;
    const rb = JSON.parse(eb.stdout) as PopulateResult;
    t.deepEqual([ra.errorList, rb.errorList], [[], []]);
    t.is(ra.successCount + rb.successCount, 80);

    const made = calls(s, "Shared");
    t.is(made.length, 80, "no key was made twice");
    t.deepEqual(made.map((c) => c.id).sort(byNumber), range(80));
    const perPid = (w: Worker) => made.filter((c) => c.pid === w.child.pid).length;
    t.is(perPid(a), ra.successCount);
    t.is(perPid(b), rb.successCount);
    t.true(ra.successCount > 0 && rb.successCount > 0, `both runs made keys (a: ${ra.successCount}, b: ${rb.successCount})`);
    t.is((await Shared.fetch()).length, 80);
    t.like(await Shared.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 80, remaining: 0 });
  });
}
