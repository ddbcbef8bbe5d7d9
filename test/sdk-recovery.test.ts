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
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, InvalidArgumentError, type PopulateResult } from "../client-sdk/dist/index.js";
import { RESERVE_BATCH } from "../client-sdk/dist/reserve-loop.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

type Pipeline = typeof import("./fixtures/sdk-recovery-pipeline.js");

interface Setup {
  readonly database: TestDatabase;
  readonly server: ServerProcess;
  readonly dir: string;
  readonly pipeline: Pipeline;
}

const WORKER = fileURLToPath(new URL("./fixtures/sdk-recovery-worker.ts", import.meta.url));
const dialects = testDialects();
const setups = new Map<Dialect, Promise<Setup>>();
const workers = new Set<ChildProcess>();

async function setUp(dialect: Dialect): Promise<Setup> {
  const database = await createTestDatabase(dialect);
  const server = await startServer({ database: database.url });
  const dir = mkdtempSync(join(tmpdir(), `populus-recovery-${dialect}-`));
  const pipeline = (await import(
    `./fixtures/sdk-recovery-pipeline.ts?url=${encodeURIComponent(server.url)}&dir=${encodeURIComponent(dir)}`
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

interface Worker {
  readonly child: ChildProcess;
  /** Resolves when it exits: its code, signal, stdout and stderr. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Starts sdk-recovery-worker.ts for `table` in its own OS process. */
function startWorker(s: Setup, table: "Orphan" | "Shared" | "Expiry", barrier = false, env: NodeJS.ProcessEnv = {}): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER, s.server.url, s.dir, table, ...(barrier ? ["--barrier"] : [])], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  workers.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = (once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>).then(([code, signal]) => ({ code, signal, stdout, stderr }));
  return { child, exited };
}

/**
 * Polls until `check()` is true; rejects after `ms`, or when `worker` exits first. Generous: with
 * sdk-populate's tests beside these, a dozen tsx processes start at once on the 2-core machine, and
 * a worker took over 20 s to reach its first make.
 */
async function waitFor(what: string, check: () => boolean, worker?: Worker, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  let gone: string | undefined;
  void worker?.exited.then((e) => (gone = `exited (${e.signal ?? e.code}) first: ${e.stderr.trim()}`));
  while (!check()) {
    if (gone !== undefined) throw new Error(`waiting for ${what}: the worker ${gone}`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The make calls recorded for a table: one { id, pid } per call, in order. */
function calls(s: Setup, table: string): { id: number; pid: number }[] {
  const file = join(s.dir, `${table}.calls`);
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => {
      const [id, pid] = l.split(" ").map(Number);
      return { id: id ?? -1, pid: pid ?? -1 };
    });
}

const byNumber = (a: number, b: number) => a - b;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

for (const dialect of dialects) {
  const setup = () => setups.get(dialect) as Promise<Setup>;

  test(`${dialect}: orphan recovery: a worker killed with SIGKILL mid-job; refresh({ orphanTimeout }) re-pends its keys and another populate completes them once`, async (t) => {
    const s = await setup();
    const { Orphan, BLOCKING_ID } = s.pipeline;
    writeFileSync(join(s.dir, "Orphan.block"), "");
    const worker = startWorker(s, "Orphan");
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
    t.true(reserved.some((j) => j.key.id === BLOCKING_ID), "the blocked key is still reserved");
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
    t.deepEqual(rows.map((r) => [r.key.id, r.result.double]).sort((a, b) => Number(a[0]) - Number(b[0])), range(6).map((id) => [id, id * 2]));
    t.like(await Orphan.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 6, remaining: 0 });
    const made = calls(s, "Orphan");
    t.deepEqual(made.filter((c) => c.pid === pid).map((c) => c.id), [BLOCKING_ID], "the killed worker got as far as the blocking key");
    t.deepEqual(made.filter((c) => c.pid === process.pid).map((c) => c.id).sort(byNumber), range(6));
  });

  test(`${dialect}: lease expiry: a worker with a 2 s lease killed with SIGKILL; its keys come back without any refresh`, async (t) => {
    const s = await setup();
    const { Expiry, BLOCKING_ID } = s.pipeline;
    writeFileSync(join(s.dir, "Expiry.block"), "");
    const worker = startWorker(s, "Expiry", false, { SDK_TEST_LEASE: "2" });
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
    const a = startWorker(s, "Shared", true);
    const b = startWorker(s, "Shared", true);
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
