/**
 * The SDK's populate() end to end, against a real server on each dialect:
 * direct and distributed populate, processes: 4 computing every key once,
 * maxCalls, priority scheduling, error recovery, suppressErrors both ways,
 * keepCompleted both ways; plus the errors a pipeline author meets first
 * (a table a child cannot load, a table never refreshed, a bad key, a bad
 * setting).
 *
 * Each dialect's tables live in its own instance of
 * fixtures/sdk-pipeline.ts (imported with ?url=&dir=); every make appends
 * "<id> <pid>" to <dir>/<Table>.calls, which is how calls are counted
 * across processes.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  config,
  connect,
  InvalidArgumentError,
  InvalidConfigError,
  JobsConfig,
  LeaseLostError,
  MakeError,
  PopulusError,
  TableNotFoundError,
  UnavailableError,
  WorkerProcessError,
} from "../client-sdk/dist/index.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type CompleteRequest, CompleteRequestSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { AttributeType } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { RefreshKeys, toProtoKey } from "../client-sdk/dist/keys.js";
import { refreshKeySource } from "../client-sdk/dist/refresh.js";
import { durationOf } from "../client-sdk/dist/wire-values.js";
import { claimedRefresh, RefreshClaim, waitForWork } from "../client-sdk/dist/claimed-refresh.js";
import { runReserveLoop, toReadyResult } from "../client-sdk/dist/reserve-loop.js";
import type { HeartbeatListener, LeaseKeeper } from "../client-sdk/dist/heartbeat-thread.js";
import { withRetry } from "../client-sdk/dist/retry.js";
import type { JobServiceRpc } from "../client-sdk/dist/rpc.js";
import { jobsSettingsFromEnv } from "../client-sdk/dist/config.js";
import { testDialects } from "./helpers/databases.js";
import { pipelinePerDialect, type PipelineSetup, recordedCalls } from "./helpers/pipeline-setup.js";

type Pipeline = typeof import("./fixtures/sdk-pipeline.js");

type Setup = PipelineSetup<Pipeline>;

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-pipeline.ts");

const calls = (setup: Setup, table: string) => recordedCalls(setup.dir, table);

const sortedIds = (list: { id: number }[]) => list.map((c) => c.id).sort((a, b) => a - b);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: populate() without reserveJobs computes key source − target once`, async (t) => {
    const s = await setup();
    const { Direct } = s.pipeline;
    t.deepEqual(await Direct.populate(), { successCount: 20, errorList: [] });
    const rows = await Direct.fetch();
    t.deepEqual(
      rows.map((r) => [r.key.id, r.result.square]).sort((a, b) => Number(a[0]) - Number(b[0])),
      range(0, 20).map((id) => [id, id * id]),
    );
    t.true(rows.every((r) => r.completeTime instanceof Date));
    t.deepEqual(await Direct.populate(), { successCount: 0, errorList: [] });
    t.deepEqual(sortedIds(calls(s, "Direct")), range(0, 20));
    t.like(await Direct.jobs.progress(), { pending: 0, reserved: 0, success: 0, target: 20, remaining: 0 });
    // Computed rows deleted are computed again.
    t.is(await Direct.delete([{ id: 3 }, { id: 4 }]), 2);
    t.deepEqual(await Direct.populate(), { successCount: 2, errorList: [] });
    t.is(calls(s, "Direct").length, 22);
  });

  test(`${dialect}: populate({ reserveJobs: true, processes: 4 }) computes every key exactly once in 4 processes`, async (t) => {
    const s = await setup();
    const { Distributed } = s.pipeline;
    const result = await Distributed.populate({ reserveJobs: true, processes: 4 });
    t.deepEqual(result, { successCount: 120, errorList: [] });
    const made = calls(s, "Distributed");
    t.deepEqual(sortedIds(made), range(0, 120));
    const pids = new Set(made.map((c) => c.pid));
    t.false(pids.has(process.pid), "make ran in child processes, not in the test process");
    t.true(pids.size >= 2, `expected several processes to make keys, saw pids ${[...pids].join(", ")}`);
    t.like(await Distributed.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 120, remaining: 0 });
  });

  // Serial: the count of processes that imported the pipeline module must not see other tests' children.
  test.serial(`${dialect}: populate({ processes: 2 }) with nothing pending starts no child process`, async (t) => {
    const s = await setup();
    const { Idle } = s.pipeline;
    const imports = () => readFileSync(join(s.dir, "imports"), "utf8").split("\n").filter(Boolean).length;
    const first = imports();
    t.deepEqual(await Idle.populate({ reserveJobs: true, processes: 2 }), { successCount: 6, errorList: [] });
    const afterWork = imports();
    t.is(afterWork, first + 2, "two child processes made the keys");
    t.deepEqual(await Idle.populate({ reserveJobs: true, processes: 2 }), { successCount: 0, errorList: [] });
    t.deepEqual(await Idle.populate({ reserveJobs: true, refresh: false, processes: 2, priority: 0 }), { successCount: 0, errorList: [] });
    t.is(imports(), afterWork, "no child process started for an empty queue");
    t.is(calls(s, "Idle").length, 6);
  });

  test(`${dialect}: maxCalls caps make calls across processes`, async (t) => {
    const s = await setup();
    const { Capped } = s.pipeline;
    t.deepEqual(await Capped.populate({ reserveJobs: true, processes: 2, maxCalls: 15 }), { successCount: 15, errorList: [] });
    t.is(calls(s, "Capped").length, 15);
    t.deepEqual(await Capped.populate({ reserveJobs: true, maxCalls: 5 }), { successCount: 5, errorList: [] });
    t.is(calls(s, "Capped").length, 20);
    t.like(await Capped.jobs.progress(), { target: 20, pending: 20, remaining: 20 });
  });

  test(`${dialect}: populate({ priority: 3 }) touches only the keys refreshed at priority 1`, async (t) => {
    const s = await setup();
    const { Prioritized, setPrioritizedKeys } = s.pipeline;
    setPrioritizedKeys(8);
    t.like(await Prioritized.jobs.refresh({ priority: 1 }), { added: 8 });
    setPrioritizedKeys(20);
    t.like(await Prioritized.jobs.refresh(), { added: 12 });
    t.is((await Prioritized.jobs.pending.fetch({ maxPriority: 1 })).length, 8);
    t.deepEqual(await Prioritized.populate({ reserveJobs: true, priority: 3 }), { successCount: 8, errorList: [] });
    t.deepEqual(sortedIds(calls(s, "Prioritized")), range(0, 8));
    const pending = await Prioritized.jobs.pending.fetch();
    t.deepEqual(
      pending.map((j) => j.key.id).sort((a, b) => a - b),
      range(8, 20),
    );
    t.true(pending.every((j) => j.priority === 5 && j.status === "pending"));
  });

  test(`${dialect}: error recovery: errors.fetch() shows key and message; errors.delete() and populate complete them`, async (t) => {
    const s = await setup();
    const { Flaky } = s.pipeline;
    const first = await Flaky.populate({ reserveJobs: true, suppressErrors: true });
    t.is(first.successCount, 16);
    t.deepEqual(
      first.errorList.map((e) => [e.key, e.message]),
      [0, 5, 10, 15].map((id) => [{ id }, `key ${id} is bad`]),
    );
    const errors = await Flaky.jobs.errors.fetch();
    t.deepEqual(
      errors.map((j) => [j.key.id, j.errorMessage]).sort((a, b) => Number(a[0]) - Number(b[0])),
      [0, 5, 10, 15].map((id) => [id, `key ${id} is bad`]),
    );
    for (const job of errors) {
      t.is(job.status, "error");
      t.regex(job.errorStack, /Error: key \d+ is bad/);
      t.is(job.pid, process.pid);
      t.is(job.attempts, 1);
      t.true(job.completeTime instanceof Date && job.reserveTime instanceof Date);
      t.true(job.workerId.startsWith(`${job.host}:${process.pid}:`));
    }
    t.is(await Flaky.jobs.errors.count(), 4);
    // Fix make, clear the errors, populate again.
    writeFileSync(join(s.dir, "Flaky.fixed"), "");
    t.is(await Flaky.jobs.errors.delete(), 4);
    t.deepEqual(await Flaky.populate({ reserveJobs: true }), { successCount: 4, errorList: [] });
    t.like(await Flaky.jobs.progress(), { error: 0, target: 20, remaining: 0 });
  });

  test(`${dialect}: suppressErrors: true goes on and collects every failure`, async (t) => {
    const s = await setup();
    const { Suppressed } = s.pipeline;
    const result = await Suppressed.populate({ reserveJobs: true, processes: 2, suppressErrors: true });
    t.is(result.successCount, 12);
    t.deepEqual(
      result.errorList.map((e) => e.key.id).sort((a, b) => a - b),
      [0, 4, 8, 12],
    );
    t.true(result.errorList.every((e) => e.message === `key ${e.key.id} is bad`));
    t.deepEqual(sortedIds(calls(s, "Suppressed")), range(0, 16));
    t.like(await Suppressed.jobs.progress(), { error: 4, target: 12, remaining: 0 });
  });

  test(`${dialect}: suppressErrors: false records the first failure, stops every process and throws it`, async (t) => {
    const s = await setup();
    const { Stopper } = s.pipeline;
    const err = await t.throwsAsync(Stopper.populate({ reserveJobs: true, processes: 2 }), { instanceOf: MakeError, message: "key 3 is bad" });
    t.deepEqual(err?.key, { id: 3 });
    t.true(err instanceof PopulusError);
    t.deepEqual(
      (await Stopper.jobs.errors.fetch()).map((j) => [j.key, j.errorMessage]),
      [[{ id: 3 }, "key 3 is bad"]],
    );
    const progress = await Stopper.jobs.progress();
    t.is(progress.reserved, 0, "the stopped processes released what they held");
    t.true(calls(s, "Stopper").length < 30, "the other process stopped before the end");
    t.is(progress.target + progress.pending + progress.error, 30);
  });

  test(`${dialect}: keepCompleted keeps success jobs; without it the job rows are deleted`, async (t) => {
    const s = await setup();
    const { Kept, NotKept } = s.pipeline;
    // config is process-wide and read when populate() starts, synchronously:
    // set and reset around the call so that concurrent tests keep the default.
    config.jobs.keepCompleted = true;
    const kept = Kept.populate({ reserveJobs: true, processes: 2 });
    config.jobs.keepCompleted = false;
    t.deepEqual(await kept, { successCount: 10, errorList: [] });
    const completed = await Kept.jobs.completed.fetch();
    t.deepEqual(
      completed.map((j) => j.key.id).sort((a, b) => a - b),
      range(0, 10),
    );
    for (const job of completed) {
      t.is(job.status, "success");
      t.true(job.completeTime instanceof Date);
      t.is(typeof job.durationMs, "number");
      t.not(job.pid, process.pid);
      t.not(job.host, "");
    }
    t.like(await Kept.jobs.progress(), { success: 10, target: 10 });

    t.deepEqual(await NotKept.populate({ reserveJobs: true }), { successCount: 10, errorList: [] });
    t.is(await NotKept.jobs.completed.count(), 0);
    t.like(await NotKept.jobs.progress(), { success: 0, pending: 0, target: 10 });
  });

  test(`${dialect}: a table never refreshed is a TableNotFoundError with the server's message`, async (t) => {
    const s = await setup();
    const db = connect({ url: s.server.url });
    const Nope = db.table("NeverRefreshed", { keySource: [], make: () => ({}), module: import.meta.url });
    const err = await t.throwsAsync(Nope.jobs.progress(), { instanceOf: TableNotFoundError });
    t.regex(err?.message ?? "", /never_refreshed|NeverRefreshed/);
    t.deepEqual(await Nope.populate({ reserveJobs: true }), { successCount: 0, errorList: [] });
    db.close();
  });

  test(`${dialect}: a Complete with a lease not held is a LeaseLostError carrying the token`, async (t) => {
    const s = await setup();
    const db = connect({ url: s.server.url });
    const Leased = db.table("Leased", { keySource: [{ id: 1 }], make: () => ({}), module: import.meta.url });
    t.like(await Leased.jobs.refresh(), { added: 1 });
    const err = await t.throwsAsync(db.rpc.complete({ table: "Leased", completions: [{ leaseToken: "not-a-lease", result: {} }] }), {
      instanceOf: LeaseLostError,
    });
    t.deepEqual(err?.leaseTokens, ["not-a-lease"]);
    t.true(err?.cause instanceof ConnectError);
    t.is(err?.code, Code.FailedPrecondition);
    db.close();
  });
}

/** Runs `script` as an inline ES module (node -e) with `env` added; its exit code and stdout. */
async function inlineScript(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  // "close", not "exit": the process can exit before its output has all been read.
  const [code] = (await once(child, "close")) as [number | null];
  return { code, stdout };
}

test("a table defined in an inline script cannot go to child processes, with a clear error", async (t) => {
  const s = await setupOf(dialects[0] ?? "sqlite");
  t.truthy(s);
  const sdk = new URL("../client-sdk/dist/index.js", import.meta.url).href;
  const script = `
    import { connect } from ${JSON.stringify(sdk)};
    const db = connect({ url: ${JSON.stringify(s?.server.url)} });
    const Inline = db.table("Inline", { keySource: [{ id: 1 }], make: () => ({}) });
    try { await Inline.populate({ reserveJobs: true, processes: 2 }); console.log("no error"); }
    catch (e) { console.log(e.name + ": " + e.message); }`;
  const { stdout } = await inlineScript(script);
  t.is(
    stdout.trim(),
    "WorkerProcessError: table Inline was defined in an inline script ([eval1], e.g. node -e), which a child process cannot load; define tables in a module file",
  );
});

test("a module that does not define the table in the child is a WorkerProcessError", async (t) => {
  const s = await setupOf(dialects[0] ?? "sqlite");
  const db = connect({ url: s?.server.url ?? "" });
  // This test file is a module, but importing the SDK's own index defines no table.
  const Ghost = db.table("Ghost", { keySource: [{ id: 1 }], make: () => ({}), module: new URL("../client-sdk/dist/keys.js", import.meta.url).href });
  const err = await t.throwsAsync(Ghost.populate({ reserveJobs: true, processes: 2 }), { instanceOf: WorkerProcessError });
  t.regex(
    err?.message ?? "",
    /^table Ghost was defined in .*keys\.js \(importing it did not define the table; .*\), which a child process cannot load; define tables in a module file$/,
  );
  db.close();
});

test("keys: integers are int64, other numbers double; anything else names the attribute", (t) => {
  t.is(toProtoKey({ id: 3 }).attributes.id?.kind.case, "intValue");
  t.is(toProtoKey({ id: 3n }).attributes.id?.kind.case, "intValue");
  t.is(toProtoKey({ x: 0.5 }).attributes.x?.kind.case, "doubleValue");
  t.is(toProtoKey({ s: "a", b: true }).attributes.b?.kind.case, "boolValue");
  t.throws(() => toProtoKey({ id: null }), {
    instanceOf: InvalidArgumentError,
    message: 'key attribute "id": null is not a key value; use a number, bigint, string or boolean',
  });
  t.throws(() => toProtoKey({ when: new Date(0) }), { instanceOf: InvalidArgumentError, message: /^key attribute "when": object/ });
});

test("refresh: a call that fails while another is in flight fails the refresh, and the final call (stale removal) is never sent", async (t) => {
  const sent: { keys: number; final: boolean }[] = [];
  const rpc = {
    async refresh(req: { keys: unknown[]; final: boolean }) {
      sent.push({ keys: req.keys.length, final: req.final });
      await new Promise((r) => setTimeout(r, 5));
      if (sent.length === 2) throw new InvalidArgumentError("batch 2 is bad");
      return { added: BigInt(req.keys.length), removed: 0n, orphaned: 0n, rePended: 0n };
    },
  } as unknown as JobServiceRpc;
  async function* keys() {
    for (let id = 0; id < 60_000; id++) {
      if (id % 10_000 === 0) await new Promise((r) => setTimeout(r, 20)); // a slow key source: calls fail while it is read
      yield { id };
    }
  }
  const params = { priority: 5, staleTimeout: 3600, orphanTimeout: undefined, delay: 0 };
  await t.throwsAsync(refreshKeySource(rpc, "T", keys, params), { instanceOf: InvalidArgumentError, message: "batch 2 is bad" });
  t.false(
    sent.some((c) => c.final),
    `no final call after a failed one: ${JSON.stringify(sent)}`,
  );
});

test("refresh: after its first call, keeps as many calls in flight as the server's answer says (2 when it says nothing, at most 8), and sends the first and the final one alone", async (t) => {
  /** The most calls in flight at once, and whether the first and the final call had company, for a server that answers `callsAtOnce`. */
  const inFlightWith = async (callsAtOnce: number | undefined) => {
    let inFlight = 0;
    let most = 0;
    let calls = 0;
    let firstAlone = true;
    let finalAlone = true;
    const rpc = {
      async refresh(req: { keysJson: string; final: boolean }) {
        inFlight++;
        calls++;
        most = Math.max(most, inFlight);
        if (req.final && inFlight > 1) finalAlone = false;
        // A second call sent while the first is still in flight (it has not answered yet).
        if (calls === 2 && inFlight > 1) firstAlone = false;
        await new Promise((r) => setTimeout(r, 10));
        inFlight--;
        const added = req.keysJson === "" ? 0 : (JSON.parse(req.keysJson) as unknown[]).length;
        return { added: BigInt(added), removed: 0n, orphaned: 0n, rePended: 0n, callsAtOnce: req.final ? 0 : (callsAtOnce ?? 0) };
      },
    } as unknown as JobServiceRpc;
    function* keys() {
      for (let id = 0; id < 150_000; id++) yield { id };
    }
    const { counts } = await refreshKeySource(rpc, "T", keys, { priority: 5, staleTimeout: 3600, orphanTimeout: undefined, delay: 0 });
    t.is(counts.added, 150_000);
    return { most, firstAlone, finalAlone };
  };
  const alone = { firstAlone: true, finalAlone: true };
  t.deepEqual(await inFlightWith(3), { most: 3, ...alone }, "a MySQL server says 3");
  t.deepEqual(await inFlightWith(2), { most: 2, ...alone }, "a SQLite server says 2");
  t.deepEqual(await inFlightWith(undefined), { most: 2, ...alone }, "a server that does not say");
  t.deepEqual(await inFlightWith(1), { most: 1, ...alone });
  t.deepEqual(await inFlightWith(100), { most: 8, ...alone }, "capped: each call in flight holds its keys");
});

test("populate's refresh claim: every call carries it; a key source that throws gives it back; a second populate of the table in this process is held back while the first refreshes; held back with nothing pending it waits for the running refresh; a server without ClaimRefresh gets the refresh of old", async (t) => {
  const params = { priority: 5, staleTimeout: 3600, orphanTimeout: undefined, delay: 0 };
  const fakeServer = (claimAnswer: () => Promise<object>, refreshing: () => Promise<unknown> = async () => undefined) => {
    const log: string[] = [];
    const rpc = {
      async claimRefresh(req: { claimId: string; minInterval?: { seconds: bigint; nanos: number } }) {
        const interval = req.minInterval === undefined ? "-" : Number(req.minInterval.seconds) + req.minInterval.nanos / 1e9;
        log.push(`claim ${req.claimId} ${interval}`);
        return claimAnswer();
      },
      async abandonRefresh(req: { claimId: string }) {
        log.push(`abandon ${req.claimId}`);
        return { released: true };
      },
      async refresh(req: { claimId: string; final: boolean }) {
        log.push(`refresh ${req.claimId === "" ? "unclaimed" : req.claimId}${req.final ? " final" : ""}`);
        await refreshing();
        return { added: 1n, removed: 0n, orphaned: 0n, rePended: 0n, anyPending: true, callsAtOnce: 0 };
      },
    } as unknown as JobServiceRpc;
    return { rpc, log };
  };
  const granted = fakeServer(async () => ({ granted: true, running: false }));
  const claim = new RefreshClaim();
  const outcome = await claimedRefresh(granted.rpc, "T", [{ id: 1 }], params, claim, 30);
  t.like(outcome, { heldBack: false, anyPending: true });
  t.deepEqual(granted.log, [`claim ${claim.id} 30`, `refresh ${claim.id} final`]);

  const failing = fakeServer(async () => ({ granted: true, running: false }));
  const broken = () => {
    throw new Error("the upstream database is down");
  };
  await t.throwsAsync(claimedRefresh(failing.rpc, "T", broken, params, claim, 0), { message: "the upstream database is down" });
  t.deepEqual(failing.log, [`claim ${claim.id} 0`, `abandon ${claim.id}`], "given back, no refresh call sent");
  t.false(claim.refreshing);

  let answerClaim: (answer: object) => void = () => undefined;
  let answerRefresh: () => void = () => undefined;
  let refreshAsked: () => void = () => undefined;
  const refreshCalled = new Promise<void>((resolve) => (refreshAsked = resolve));
  const slow = fakeServer(
    () => new Promise<object>((resolve) => (answerClaim = resolve)),
    () => {
      refreshAsked();
      return new Promise<void>((resolve) => (answerRefresh = resolve));
    },
  );
  const first = claimedRefresh(slow.rpc, "T", [{ id: 1 }], params, claim, 0);
  await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(
    await claimedRefresh(slow.rpc, "T", [{ id: 1 }], params, claim, 0),
    { heldBack: "running", anyPending: undefined },
    "while the claim is asked for",
  );
  answerClaim({ granted: true, running: false });
  await refreshCalled;
  t.deepEqual(await claimedRefresh(slow.rpc, "T", [{ id: 1 }], params, claim, 0), { heldBack: "running", anyPending: undefined }, "while it refreshes");
  answerRefresh();
  await first;
  t.deepEqual(slow.log, [`claim ${claim.id} 0`, `refresh ${claim.id} final`], "the second populate sent nothing");

  // Held back by a running refresh with nothing pending yet: waits for that refresh, asking for any refresh finished since.
  const answers = [
    { granted: false, running: true, anyPending: false },
    { granted: false, running: true, anyPending: false },
    { granted: false, running: false, anyPending: true },
  ];
  const waiting = fakeServer(async () => answers.shift() ?? { granted: true });
  t.deepEqual(await claimedRefresh(waiting.rpc, "T", broken, params, claim, 0), { heldBack: "recent", anyPending: true }, "no key source read");
  t.is(waiting.log.length, 3);
  t.is(waiting.log[0], `claim ${claim.id} 0`);
  t.true(
    waiting.log.slice(1).every((l) => Number(l.split(" ")[2]) >= 0.2),
    `the later asks take any refresh finished since the first: ${waiting.log.join("; ")}`,
  );
  const forever = fakeServer(async () => ({ granted: false, running: true, anyPending: false }));
  const waitedFrom = performance.now();
  t.deepEqual(
    await claimedRefresh(forever.rpc, "T", broken, params, claim, 0, undefined, 600),
    { heldBack: "running", anyPending: false },
    "the wait has a ceiling",
  );
  t.true(performance.now() - waitedFrom >= 550, "it waited up to the ceiling");
  t.true(forever.log.length >= 2 && forever.log.length <= 4, `asks at 0, 0.25 and 0.6 s: ${forever.log.length}`);
  const aborted = fakeServer(async () => ({ granted: false, running: true, anyPending: false }));
  const stop = new AbortController();
  stop.abort();
  t.deepEqual(
    await claimedRefresh(aborted.rpc, "T", broken, params, claim, 0, stop.signal),
    { heldBack: "running", anyPending: false },
    "a stop ends the wait",
  );
  t.is(aborted.log.length, 1);

  const heldBack = fakeServer(async () => ({ granted: false, running: false, anyPending: false }));
  t.deepEqual(await claimedRefresh(heldBack.rpc, "T", broken, params, claim, 60), { heldBack: "recent", anyPending: false }, "no key source read");

  const older = fakeServer(async () => {
    throw new PopulusError("unknown method ClaimRefresh", Code.Unimplemented);
  });
  t.like(await claimedRefresh(older.rpc, "T", [{ id: 1 }], params, claim, 0), { heldBack: false, anyPending: true });
  t.deepEqual(older.log, [`claim ${claim.id} 0`, "refresh unclaimed final"]);
});

test('waitForWork: long-polls of at most 60 s carrying the claim id, the interval, a 60 s claim timeout and the wait, under a deadline past it; "refresh" once granted, "jobs" once a job is pending; a server that answers at once without work (older than the long-poll) is asked again every 10 s at most, the rest slept here; one silent past the deadline is unavailable; one without ClaimRefresh is waited out and a refresh is due; without autoRefresh it takes no claim and reads the counts; a process refreshing the table, or a stop, answers without a call', async (t) => {
  type Asked = { claimId: string; minInterval?: { seconds: bigint }; claimTimeout?: { seconds: bigint }; wait?: { seconds: bigint; nanos: number } };
  const fakeServer = (answers: (() => object)[]) => {
    const asked: Asked[] = [];
    const deadlines: (number | undefined)[] = [];
    const answer = () => {
      const next = answers.shift();
      if (next === undefined) throw new Error("asked once too often");
      return next();
    };
    const rpc = {
      async claimRefresh(req: Asked, opts?: { timeoutMs?: number }) {
        asked.push(req);
        deadlines.push(opts?.timeoutMs);
        return answer();
      },
      async getProgress() {
        return answer();
      },
    } as unknown as JobServiceRpc;
    return { rpc, asked, deadlines };
  };
  const seconds = (d: { seconds: bigint; nanos?: number } | undefined) => (d === undefined ? undefined : Number(d.seconds) + (d.nanos ?? 0) / 1e9);
  const claim = new RefreshClaim();
  const claiming = (waitS: number, signal?: AbortSignal) => ({ refresh: true, refreshInterval: 30, waitS, signal });

  const granted = fakeServer([() => ({ granted: true, running: false })]);
  t.is(await waitForWork(granted.rpc, "T", claim, claiming(600)), "refresh");
  t.deepEqual(
    granted.asked.map((a) => [a.claimId, seconds(a.minInterval), seconds(a.claimTimeout), seconds(a.wait)]),
    [[claim.id, 30, 60, 60]],
    "one long-poll of the longest wait the server takes",
  );
  t.deepEqual(granted.deadlines, [90_000], "its call's deadline: the wait and 30 s");
  t.is(await waitForWork(fakeServer([() => ({ granted: false, running: false, anyPending: true })]).rpc, "T", claim, claiming(600)), "jobs");

  // An older server answers at once with no work: the rest of the wait is slept, and no second call made.
  const older = fakeServer([() => ({ granted: false, running: false, anyPending: false })]);
  let started = Date.now();
  t.is(await waitForWork(older.rpc, "T", claim, claiming(0.4)), null);
  t.true(Date.now() - started >= 350, `slept out its wait (${Date.now() - started} ms)`);
  t.is(older.asked.length, 1);

  const oldest = fakeServer([
    () => {
      throw new PopulusError("unknown method ClaimRefresh", Code.Unimplemented);
    },
  ]);
  started = Date.now();
  t.is(await waitForWork(oldest.rpc, "T", claim, claiming(0.3)), "refresh", "a server without refresh claims: a pass after the wait, as before");
  t.true(Date.now() - started >= 250);

  // A long-poll left unanswered past its deadline: the server or the connection hangs, which a worker
  // takes as a server it cannot reach (it sleeps and asks again), not as a failure of its own.
  const hung = fakeServer([
    () => {
      throw new PopulusError("the operation timed out", Code.DeadlineExceeded);
    },
  ]);
  await t.throwsAsync(waitForWork(hung.rpc, "T", claim, claiming(600)), {
    instanceOf: UnavailableError,
    message: "T: the server did not answer a wait for work within 90 s",
  });

  // Without autoRefresh: no claim, the counts read until a job is pending.
  const counting = fakeServer([() => ({ progress: { pending: 0n } }), () => ({ progress: { pending: 2n } })]);
  t.is(await waitForWork(counting.rpc, "T", claim, { refresh: false, refreshInterval: 30, waitS: 0.2 }), null, "none pending within the wait");
  t.is(await waitForWork(counting.rpc, "T", claim, { refresh: false, refreshInterval: 30, waitS: 600 }), "jobs");
  t.is(counting.asked.length, 0, "no claim asked for");

  const none = fakeServer([]);
  claim.refreshing = true;
  t.is(await waitForWork(none.rpc, "T", claim, claiming(600)), "refresh", "this process is refreshing the table: its populate has work");
  claim.refreshing = false;
  t.is(await waitForWork(none.rpc, "T", claim, claiming(600, AbortSignal.abort())), null, "stopped");
  t.is(none.asked.length, 0);
});

test("durations: fractions are kept to the nanosecond, and one within half a nanosecond of a whole second is that second (nanos never reaches 1e9)", (t) => {
  t.deepEqual(durationOf(1.5), { seconds: 1n, nanos: 500_000_000 });
  t.deepEqual(durationOf(2.9999999999), { seconds: 3n, nanos: 0 });
  t.deepEqual(durationOf(0.25), { seconds: 0n, nanos: 250_000_000 });
});

test("refresh: sync and async key sources send the same calls; a key source that throws sends no final call", async (t) => {
  const callsOf = async (source: Parameters<typeof refreshKeySource>[2]) => {
    const sent: { ids: number[]; final: boolean }[] = [];
    const rpc = {
      async refresh(req: { keysJson: string; final: boolean }) {
        const keys = req.keysJson === "" ? [] : (JSON.parse(req.keysJson) as { id: string }[]);
        sent.push({ ids: keys.map((k) => Number(k.id)), final: req.final });
        return { added: BigInt(keys.length), removed: 0n, orphaned: 0n, rePended: 0n };
      },
    } as unknown as JobServiceRpc;
    const { counts } = await refreshKeySource(rpc, "T", source, { priority: 5, staleTimeout: 3600, orphanTimeout: undefined, delay: 0 });
    return { counts, sent };
  };
  function* syncKeys() {
    for (let id = 0; id < 25_000; id++) yield { id };
  }
  async function* asyncKeys() {
    for (let id = 0; id < 25_000; id++) yield { id };
  }
  const fromSync = await callsOf(syncKeys);
  const fromAsync = await callsOf(asyncKeys);
  t.deepEqual(
    fromSync.sent.map((c) => [c.ids.length, c.final]),
    [
      [10_000, false],
      [10_000, false],
      [5_000, true],
    ],
  );
  t.deepEqual(
    fromSync.sent.flatMap((c) => c.ids),
    range(0, 25_000),
  );
  t.deepEqual(fromAsync, fromSync);
  t.is(fromSync.counts.added, 25_000);

  function* failing() {
    for (let id = 0; id < 15_000; id++) yield { id };
    throw new Error("the key source broke");
  }
  const sent: boolean[] = [];
  const rpc = {
    async refresh(req: { keys: unknown[]; final: boolean }) {
      sent.push(req.final);
      return { added: BigInt(req.keys.length), removed: 0n, orphaned: 0n, rePended: 0n };
    },
  } as unknown as JobServiceRpc;
  await t.throwsAsync(refreshKeySource(rpc, "T", failing, { priority: 5, staleTimeout: 3600, orphanTimeout: undefined, delay: 0 }), {
    message: "the key source broke",
  });
  t.false(sent.includes(true), "no final call (stale removal) after a broken key source");
});

test("reserve loop: the heartbeat starts with the first leases (or before the first Reserve for leases under 30 s), never for nothing to do", async (t) => {
  const run = async (leaseDurationS: number, batches: number[]) => {
    const log: string[] = [];
    let next = 0;
    const rpc = {
      async reserve() {
        log.push("reserve");
        const n = batches.shift() ?? 0;
        if (n === 0) return { leases: [] };
        const ids = Array.from({ length: n }, () => next++);
        const columns = {
          leaseTokens: ids.map((id) => `t${id}`),
          keysJson: JSON.stringify(ids.map((id) => ({ id: String(id) }))),
          attempts: ids.map(() => 1),
          keyAttributes: [{ name: "id", type: AttributeType.INT64 }],
        };
        return { leases: [], columns };
      },
      async complete(req: CompleteRequest) {
        // Read the request as the server would: the SDK sends its tokens pre-encoded (wire-ascii).
        const { leaseTokens } = fromBinary(CompleteRequestSchema, toBinary(CompleteRequestSchema, req));
        log.push(`complete ${leaseTokens.join(",")}`);
        return { committed: BigInt(leaseTokens.length), alreadyCommitted: 0n };
      },
    } as unknown as JobServiceRpc;
    const heartbeat = (_listener: HeartbeatListener): LeaseKeeper => {
      log.push("heartbeat started");
      return {
        ready: Promise.resolve(),
        hold: (tokens) => log.push(`hold ${tokens.join(",")}`),
        drop: (tokens) => log.push(`drop ${tokens.join(",")}`),
        progress: () => undefined,
        stop: async () => void log.push("heartbeat stopped"),
      };
    };
    const result = await runReserveLoop({
      rpc,
      heartbeat,
      table: "T",
      make: () => ({}),
      identity: { workerId: "w", host: "h", pid: 1, user: "u", codeVersion: "" },
      maxCalls: undefined,
      priority: undefined,
      restriction: undefined,
      suppressErrors: false,
      keepCompleted: false,
      leaseDurationS,
    });
    return { log, successCount: result.successCount };
  };
  t.deepEqual((await run(60, [])).log, ["reserve"], "nothing to do: no heartbeat");
  t.deepEqual((await run(5, [])).log, ["heartbeat started", "reserve", "heartbeat stopped"], "short leases: started before the first Reserve");
  const worked = await run(60, [2]);
  t.is(worked.successCount, 2);
  t.deepEqual(worked.log.slice(0, 3), ["reserve", "heartbeat started", "hold t0,t1"], "started with the first leases, which it holds at once");
  t.true(worked.log.includes("complete t0,t1"), worked.log.join("; "));
  t.true(worked.log.includes("drop t0,t1") && worked.log.at(-1) === "heartbeat stopped", worked.log.join("; "));
});

test("result records: JSON-able objects only, at most 4 MiB as JSON, with a bound of their UTF-8 bytes for Complete's size limit", (t) => {
  t.deepEqual(toReadyResult("tok", undefined), { leaseToken: "tok", resultJson: "{}", jsonBytes: 2 });
  t.is(toReadyResult("tok", { at: new Date(0), gone: undefined }).resultJson, '{"at":"1970-01-01T00:00:00.000Z"}');
  t.throws(() => toReadyResult("tok", [1]), { instanceOf: InvalidArgumentError, message: /returned an array/ });
  t.throws(() => toReadyResult("tok", 3), { instanceOf: InvalidArgumentError, message: /returned 3/ });
  t.throws(() => toReadyResult("tok", { big: "x".repeat(5 * 1024 * 1024) }), { instanceOf: InvalidArgumentError, message: /at most 4194304/ });
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  t.throws(() => toReadyResult("tok", circular), { instanceOf: InvalidArgumentError, message: /not JSON-able/ });
  // Three-byte characters: the bound is never below the real size, small or large.
  for (const text of ["€".repeat(10), "€".repeat(1_000_000)]) {
    const r = toReadyResult("tok", { text });
    t.true(r.jsonBytes >= Buffer.byteLength(r.resultJson, "utf8"), `${r.jsonBytes} >= ${Buffer.byteLength(r.resultJson, "utf8")}`);
  }
});

test("retries: UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED, an unasked CANCELED and a refused stream are retried, other errors are not", async (t) => {
  const policy = { maxAttempts: 5, initialDelayMs: 1, maxDelayMs: 2 };
  let tries = 0;
  t.is(
    await withRetry(
      async () => {
        tries++;
        if (tries === 1) throw new ConnectError("down", Code.Unavailable);
        if (tries === 2) throw new ConnectError("busy", Code.ResourceExhausted);
        if (tries === 3) throw new ConnectError("read ECONNRESET", Code.Aborted);
        if (tries === 4) throw new ConnectError("stream reset", Code.Canceled);
        if (tries === 5) throw new ConnectError("Stream closed with error code NGHTTP2_REFUSED_STREAM", Code.Internal);
        return "ok";
      },
      undefined,
      { ...policy, maxAttempts: 6 },
    ),
    "ok",
  );
  t.is(tries, 6);
  tries = 0;
  await t.throwsAsync(
    withRetry(
      async () => {
        tries++;
        throw new ConnectError("a bug", Code.Internal);
      },
      undefined,
      policy,
    ),
  );
  t.is(tries, 1, "other INTERNAL errors are not retried");
  // A CANCELED the caller asked for (its signal aborted) is not retried.
  tries = 0;
  const asked = new AbortController();
  asked.abort();
  await t.throwsAsync(
    withRetry(
      async () => {
        tries++;
        throw new ConnectError("cancelled", Code.Canceled);
      },
      asked.signal,
      policy,
    ),
  );
  t.is(tries, 1);
  tries = 0;
  await t.throwsAsync(
    withRetry(
      async () => {
        tries++;
        throw new ConnectError("down", Code.Unavailable);
      },
      undefined,
      policy,
    ),
    { message: "[unavailable] down" },
  );
  t.is(tries, 5, "gives up after maxAttempts");
  tries = 0;
  await t.throwsAsync(
    withRetry(
      async () => {
        tries++;
        throw new ConnectError("bad", Code.InvalidArgument);
      },
      undefined,
      policy,
    ),
    { message: "[invalid_argument] bad" },
  );
  t.is(tries, 1);
});

test("config.jobs: DataJoint's defaults, validated in code and from the environment", (t) => {
  const jobs = new JobsConfig();
  t.deepEqual(jobs.snapshot(), { autoRefresh: true, refreshInterval: 0, keepCompleted: false, staleTimeout: 3600, defaultPriority: 5, versionMethod: null });
  t.throws(() => (jobs.defaultPriority = 300), {
    instanceOf: InvalidConfigError,
    message: "config.jobs.defaultPriority must be an integer from 0 (most urgent) to 255, got 300",
  });
  t.is(jobs.defaultPriority, 5);
  jobs.keepCompleted = true;
  t.true(jobs.keepCompleted);
  t.deepEqual(jobsSettingsFromEnv({ POPULUS_KEEP_COMPLETED: "1", POPULUS_STALE_TIMEOUT: "60", POPULUS_VERSION_METHOD: "git" }), {
    keepCompleted: true,
    staleTimeout: 60,
    versionMethod: "git",
  });
  t.throws(() => jobsSettingsFromEnv({ POPULUS_AUTO_REFRESH: "maybe" }), {
    instanceOf: InvalidConfigError,
    message: 'POPULUS_AUTO_REFRESH must be true or false (or 1/0, yes/no, on/off), got "maybe"',
  });
  t.throws(() => jobsSettingsFromEnv({ POPULUS_STALE_TIMEOUT: "-1" }), {
    instanceOf: InvalidConfigError,
    message: "POPULUS_STALE_TIMEOUT must be a number of seconds >= 0, got -1",
  });
  t.deepEqual(jobsSettingsFromEnv({ POPULUS_REFRESH_INTERVAL: "30" }), { refreshInterval: 30 });
  t.throws(() => jobsSettingsFromEnv({ POPULUS_REFRESH_INTERVAL: "86401" }), {
    instanceOf: InvalidConfigError,
    message: "POPULUS_REFRESH_INTERVAL must be a number of seconds from 0 to 86400, got 86401",
  });
  t.throws(() => (jobs.refreshInterval = -1), {
    instanceOf: InvalidConfigError,
    message: "config.jobs.refreshInterval must be a number of seconds from 0 to 86400, got -1",
  });
  t.throws(() => connect({ url: "ftp://x" }), { instanceOf: InvalidConfigError, message: 'url: "ftp://x" must start with http:// or https://' });
});

test("config.jobs: a bad POPULUS_* variable does not fail the import; its first use throws InvalidConfigError naming it, every use until fixed", async (t) => {
  const script = `
    const sdk = await import(${JSON.stringify(new URL("../client-sdk/dist/index.js", import.meta.url).href)});
    const uses = [];
    for (let i = 0; i < 2; i++) {
      try { sdk.config.jobs; uses.push("read"); } catch (err) { uses.push(\`\${err instanceof sdk.InvalidConfigError}: \${err.message}\`); }
    }
    process.env.POPULUS_STALE_TIMEOUT = "60";
    uses.push(String(sdk.config.jobs.staleTimeout));
    console.log(JSON.stringify(uses));
  `;
  const { code, stdout } = await inlineScript(script, { POPULUS_STALE_TIMEOUT: "soon" });
  t.is(code, 0);
  t.deepEqual(JSON.parse(stdout), [
    'true: POPULUS_STALE_TIMEOUT must be a number, got "soon"',
    'true: POPULUS_STALE_TIMEOUT must be a number, got "soon"',
    "60",
  ]);
});

test("refresh keys: a call of keys sharing their attributes goes in columns as canonical JSON; mixed keys go as Key messages; bad values are refused as before", (t) => {
  const columns = new RefreshKeys();
  columns.add({ id: 1, name: 'a"€', ratio: 0.5, ok: true });
  columns.add({ ok: false, ratio: -2.5, name: "b", id: 2n ** 62n });
  const c = columns.fields();
  t.deepEqual(c.keys, []);
  t.is(c.keysJson, `[{"id":"1","name":"a\\"€","ok":true,"ratio":0.5},{"id":"${2n ** 62n}","name":"b","ok":false,"ratio":-2.5}]`);
  t.deepEqual(
    c.keyAttributes.map((a) => [a.name, a.type]),
    [
      ["id", AttributeType.INT64],
      ["name", AttributeType.STRING],
      ["ok", AttributeType.BOOL],
      ["ratio", AttributeType.DOUBLE],
    ],
  );
  for (const other of [
    { id: 1.5, name: "x", ratio: 1.5, ok: true },
    { id: 3, name: "x", ratio: 1.5 },
    { id: 3, name: "x", ratio: 1.5, ok: true, more: 1 },
  ]) {
    const mixed = new RefreshKeys();
    mixed.add({ id: 1, name: "a", ratio: 0.5, ok: true });
    mixed.add(other);
    const m = mixed.fields();
    t.is(m.keysJson, "", JSON.stringify(other));
    t.is(m.keys.length, 2);
  }
  const bad = new RefreshKeys();
  t.throws(() => bad.add({ id: null }), { instanceOf: InvalidArgumentError, message: /"id": null is not a key value/ });
  t.throws(() => bad.add({ id: 2 ** 60 }), { instanceOf: InvalidArgumentError, message: /beyond 2\^53/ });
  t.throws(() => bad.add({ name: "\ud800" }), { instanceOf: InvalidArgumentError, message: /lone surrogate/ });
  t.throws(() => bad.add({}), { instanceOf: InvalidArgumentError, message: /at least one attribute/ });
  t.throws(() => bad.add([1]), { instanceOf: InvalidArgumentError, message: /must be an object/ });
});
