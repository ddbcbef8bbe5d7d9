/**
 * `table.jobs.watch()` and `watchProgress()`: the SDK's Observable over the
 * Watch stream.
 *
 * Against a real server on each dialect: the snapshot, then every job
 * change with counts that end at the final totals of a populate; error
 * events with their key and message; unsubscribing aborting the call (the
 * server's populus_watch_subscribers back to 0);
 * resuming with a cursor after leaving midway, and reconnecting by itself
 * after the server is SIGKILLed and restarted, both with every event
 * exactly once and in order; typed errors for an unknown table and a foreign
 * cursor.
 *
 * Against a scripted JobServiceRpc (the reconnect policy is ours, and some
 * server answers cannot be provoked on demand: a pruned cursor needs an hour
 * of retention to pass): the cursor passed on reconnect, counts kept through
 * a catch-up, OUT_OF_RANGE ending the Observable without a retry, giving up
 * after the policy's attempts.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import test from "ava";
import type { Observable, Subscription } from "rxjs";
import {
  connect,
  CursorExpiredError,
  InvalidArgumentError,
  type JobEvent,
  type KeyRecord,
  type ProgressCounts,
  TableNotFoundError,
  UnavailableError,
  type WatchUpdate,
} from "../client-sdk/dist/index.js";
import { type WatchRequest, WatchResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { JobStatus } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import type { JobServiceRpc } from "../client-sdk/dist/rpc.js";
import { watchJobs } from "../client-sdk/dist/watch.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { pipelinePerDialect } from "./helpers/pipeline-setup.js";
import { startServer } from "./helpers/server-process.js";

type Pipeline = typeof import("./fixtures/sdk-watch-pipeline.js");

const dialects = testDialects();
const setupOf = pipelinePerDialect<Pipeline>("sdk-watch-pipeline.ts", { for: "watch" });

/** A subscription that records what it gets, and waits for a condition on it. */
class Recorder<T> {
  readonly values: T[] = [];
  error: unknown;
  completed = false;
  readonly #subscription: Subscription;
  #waiters: (() => void)[] = [];

  constructor(observable: Observable<T>) {
    this.#subscription = observable.subscribe({
      next: (v) => {
        this.values.push(v);
        this.#wake();
      },
      error: (err: unknown) => {
        this.error = err;
        this.#wake();
      },
      complete: () => {
        this.completed = true;
        this.#wake();
      },
    });
  }

  /** Resolves once `done(values)` holds; rejects on the Observable's error or after `ms`. */
  async until(done: (values: readonly T[]) => boolean, what: string, ms = 30_000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.error !== undefined) throw this.error;
      if (done(this.values)) return;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${this.values.length} values`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  stop(): void {
    this.#subscription.unsubscribe();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}

/** Polls `condition` every 20 ms until it holds (or fails the wait after `ms`). */
async function eventually(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `eventually` for an async condition. */
async function eventuallyAsync(condition: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const eventsOf = (updates: readonly WatchUpdate[]): JobEvent[] => updates.flatMap((u) => u.events);
/** An event as compared across subscriptions: what happened to which key, when. */
const flat = (e: JobEvent) => `${String(e.key.id)} ${e.status}${e.committed ? " committed" : ""} ${e.time?.toISOString() ?? "-"}`;
const reachedTarget = (n: number) => (updates: readonly WatchUpdate[]) => updates.at(-1)?.progress?.target === n && updates.at(-1)?.progress?.remaining === 0;
const sortedIds = (events: readonly JobEvent[]) => events.map((e) => Number(e.key.id)).sort((a, b) => a - b);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

for (const dialect of dialects) {
  const setup = () => setupOf(dialect);

  test(`${dialect}: watch() emits a snapshot, then each job change in commit order, with counts that end at the populate's totals`, async (t) => {
    const { Watched } = (await setup()).pipeline;
    t.like(await Watched.jobs.refresh(), { added: 40 });
    const updates = new Recorder(Watched.jobs.watch());
    const counts = new Recorder(Watched.jobs.watchProgress());
    await updates.until((v) => v.length > 0, "the snapshot");
    await counts.until((v) => v.length > 0, "the first counts");

    const snapshot = updates.values[0];
    t.deepEqual(snapshot?.events, []);
    t.deepEqual(snapshot?.progress, { pending: 40, reserved: 0, success: 0, error: 0, ignore: 0, target: 0, remaining: 40 });
    t.deepEqual(counts.values[0], snapshot?.progress);

    t.deepEqual(await Watched.populate({ reserveJobs: true, refresh: false }), { successCount: 40, errorList: [] });
    await updates.until(reachedTarget(40), "target 40");
    await counts.until((v) => v.at(-1)?.target === 40, "target 40 on watchProgress");
    updates.stop();
    counts.stop();

    const done: ProgressCounts = { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: 40, remaining: 0 };
    t.deepEqual(updates.values.at(-1)?.progress, done);
    t.deepEqual(counts.values.at(-1), done);
    // Counts only move forward during a populate, and every update's cursor is a new one.
    const targets = updates.values.map((u) => u.progress?.target ?? -1);
    t.deepEqual(
      targets,
      [...targets].sort((a, b) => a - b),
    );
    t.is(new Set(updates.values.map((u) => u.cursor)).size, updates.values.length);
    t.true(updates.values.every((u) => u.cursor !== ""));

    // Each key: reserved by a worker, then committed (its row deleted: keepCompleted is off), exactly once each.
    const events = eventsOf(updates.values);
    const reserved = events.filter((e) => e.status === "reserved");
    const committed = events.filter((e) => e.status === "deleted" && e.committed);
    t.deepEqual(sortedIds(reserved), range(40));
    t.deepEqual(sortedIds(committed), range(40));
    t.is(events.length, 80);
    for (const id of range(40)) {
      const mine = events.filter((e) => e.key.id === id);
      t.deepEqual(
        mine.map((e) => e.status),
        ["reserved", "deleted"],
        `key ${id}`,
      );
    }
    t.true(events.every((e) => e.time instanceof Date && e.workerId !== "" && e.errorMessage === ""));
    // An event's time is its change's server clock at the start of its transaction; two transactions
    // running at once (a worker's next Reserve overlaps its Complete) may commit in the other order,
    // so times are ordered per key, not across the stream.
    for (const id of range(40)) {
      const [reservedAt, committedAt] = events.filter((e) => e.key.id === id).map((e) => e.time?.getTime() ?? NaN);
      t.true(committedAt! >= reservedAt!, `key ${id}: committed at ${committedAt}, reserved at ${reservedAt}`);
    }
    // watchProgress emits only changes of the counts.
    t.true(counts.values.every((c, i) => i === 0 || JSON.stringify(c) !== JSON.stringify(counts.values[i - 1])));
  });

  test(`${dialect}: a failing make's events carry its key and error message`, async (t) => {
    const { Failing } = (await setup()).pipeline;
    await Failing.jobs.refresh();
    const updates = new Recorder(Failing.jobs.watch());
    await updates.until((v) => v.length > 0, "the snapshot");
    const result = await Failing.populate({ reserveJobs: true, refresh: false, suppressErrors: true });
    t.is(result.successCount, 16);
    await updates.until((v) => v.at(-1)?.progress?.error === 4 && v.at(-1)?.progress?.remaining === 0, "4 errors");
    updates.stop();

    const errors = eventsOf(updates.values).filter((e) => e.status === "error");
    t.deepEqual(
      errors.map((e) => [e.key, e.errorMessage, e.committed]).sort((a, b) => Number((a[0] as { id: number }).id) - Number((b[0] as { id: number }).id)),
      [0, 5, 10, 15].map((id) => [{ id }, `key ${id} is bad`, false]),
    );
    t.true(errors.every((e) => e.workerId !== ""));
    t.like(updates.values.at(-1)?.progress, { error: 4, target: 16, pending: 0, reserved: 0 });
  });

  test(`${dialect}: unsubscribing aborts the Watch call: the server's open-stream count returns to 0, and nothing more is emitted`, async (t) => {
    // A server of this test's own, so that its populus_watch_subscribers counts only these
    // streams, and a connection of its own, whose rpc object is wrapped to see the real stream end.
    const database = await createTestDatabase(dialect);
    const server = await startServer({ database: database.url });
    const subscribers = async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(/^populus_watch_subscribers(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
    };
    const db = connect({ url: server.url });
    const Unwatched = db.table("Unwatched", { keySource: [{ id: 1 }, { id: 2 }], make: () => ({}), module: import.meta.url });
    await Unwatched.jobs.refresh();
    const rpc = Unwatched.rpc as { watch: JobServiceRpc["watch"] };
    const real = rpc.watch;
    const calls: { signal: AbortSignal | undefined; ended: boolean }[] = [];
    rpc.watch = (req, options) => {
      const call = { signal: options?.signal, ended: false };
      calls.push(call);
      return (async function* () {
        try {
          yield* real(req, options);
        } finally {
          call.ended = true;
        }
      })();
    };
    try {
      const updates = new Recorder(Unwatched.jobs.watch());
      await updates.until((v) => v.length > 0, "the snapshot");
      t.is(calls.length, 1);
      t.false(calls[0]?.signal?.aborted);
      t.is(await subscribers(), 1);
      updates.stop();
      t.true(calls[0]?.signal?.aborted);
      await eventually(() => calls[0]?.ended === true, "the aborted stream to end");
      await eventuallyAsync(async () => (await subscribers()) === 0, "the server to close the stream");

      // A change after unsubscribing reaches a new subscription, not the old one.
      const after = new Recorder(Unwatched.jobs.watch());
      await after.until((v) => v.length > 0, "the second snapshot");
      const seen = updates.values.length;
      t.is(await Unwatched.jobs.ignore([{ id: 1 }]), 1);
      await after.until((v) => eventsOf(v).some((e) => e.status === "ignore"), "the ignore event");
      after.stop();
      await eventuallyAsync(async () => (await subscribers()) === 0, "the server to close the second stream");
      t.is(updates.values.length, seen);
      t.is(calls.length, 2, "no reconnect after unsubscribing");
      t.false(updates.completed);
      t.is(updates.error, undefined);
    } finally {
      rpc.watch = real;
      db.close();
      await server.stop();
      await database.drop();
    }
  });

  test(`${dialect}: resubscribing with the last cursor after leaving midway yields every event exactly once, in order`, async (t) => {
    const { Resumed } = (await setup()).pipeline;
    await Resumed.jobs.refresh();
    const whole = new Recorder(Resumed.jobs.watch());
    const first = new Recorder(Resumed.jobs.watch());
    await whole.until((v) => v.length > 0, "the snapshot");
    await first.until((v) => v.length > 0, "the snapshot");

    const populated = Resumed.populate({ reserveJobs: true, refresh: false });
    await first.until((v) => eventsOf(v).length >= 20, "20 events");
    first.stop();
    const left = first.values.at(-1);
    // Events are committed while nobody listens with that cursor: the resumed subscription must replay them.
    const seenThen = eventsOf(whole.values).length;
    await whole.until((v) => eventsOf(v).length >= seenThen + 10, "10 more events");
    const second = new Recorder(Resumed.jobs.watch({ cursor: left?.cursor ?? "" }));
    t.deepEqual(await populated, { successCount: 60, errorList: [] });
    await whole.until(reachedTarget(60), "target 60");
    await second.until(reachedTarget(60), "target 60 after resuming");
    whole.stop();
    second.stop();

    // The replay: catch-up updates with events and, before the server's first counts, no counts at all.
    t.true((second.values[0]?.events.length ?? 0) > 0);
    t.is(second.values[0]?.progress, undefined);
    t.deepEqual([...eventsOf(first.values), ...eventsOf(second.values)].map(flat), eventsOf(whole.values).map(flat));
    t.is(eventsOf(whole.values).length, 120);
  });

  test(`${dialect}: a Watch cut by a SIGKILLed server reconnects to its restart and resumes without a gap`, async (t) => {
    const database = await createTestDatabase(dialect);
    let server = await startServer({ database: database.url });
    const db = connect({ url: server.url });
    const Restarted = db.table("Restarted", { keySource: range(30).map((id) => ({ id })), make: () => ({}), module: import.meta.url });
    try {
      await Restarted.jobs.refresh();
      // Patient: the restarted server must start before the attempts run out,
      // and on this shared 2-core machine a start took longer than the default's
      // 6 to 12 s budget.
      const updates = new Recorder(Restarted.jobs.watch({ retry: { maxAttempts: 40, initialDelayMs: 100, maxDelayMs: 1000 } }));
      await updates.until((v) => v.length > 0, "the snapshot");
      const start = updates.values[0]?.cursor ?? "";
      t.is((await Restarted.populate({ reserveJobs: true, refresh: false, maxCalls: 10 })).successCount, 10);
      await updates.until((v) => v.at(-1)?.progress?.target === 10, "target 10");

      await server.kill();
      server = await startServer({ database: database.url, args: ["--port", String(server.port)] });
      t.is((await Restarted.populate({ reserveJobs: true, refresh: false })).successCount, 20);
      await updates.until(reachedTarget(30), "target 30 after the restart");
      updates.stop();
      t.is(updates.error, undefined);

      // What a subscription resuming from the snapshot's cursor replays is exactly what the live one saw across the restart.
      const replay = new Recorder(Restarted.jobs.watch({ cursor: start }));
      await replay.until((v) => v.some((u) => u.progress !== undefined), "the replay to reach the live position");
      replay.stop();
      const live = eventsOf(updates.values);
      t.deepEqual(live.map(flat), eventsOf(replay.values).map(flat));
      t.deepEqual(sortedIds(live.filter((e) => e.committed)), range(30));
    } finally {
      db.close();
      await server.stop();
      await database.drop();
    }
  });

  test(`${dialect}: watch() errors with TableNotFoundError for an unknown table and InvalidArgumentError for a foreign cursor`, async (t) => {
    const { pipeline } = await setup();
    const Unknown = pipeline.db.table("NeverRefreshed", { keySource: [], make: () => ({}), module: import.meta.url });
    const unknown = new Recorder(Unknown.jobs.watch());
    const notFound = await t.throwsAsync(
      unknown.until(() => false, "an error"),
      { instanceOf: TableNotFoundError },
    );
    t.regex(notFound?.message ?? "", /never_refreshed|NeverRefreshed/);

    await pipeline.Foreign.jobs.refresh();
    const foreign = new Recorder(pipeline.Foreign.jobs.watch({ cursor: "99999999999" }));
    await t.throwsAsync(
      foreign.until(() => false, "an error"),
      { instanceOf: InvalidArgumentError, message: /cursor/ },
    );
    t.deepEqual(foreign.values, []);
  });
}

/** A scripted JobServiceRpc: each Watch call plays the next script (messages, then an error, thenFail, or the end). */
function scriptedRpc(scripts: { messages: MessageInitShape<typeof WatchResponseSchema>[]; thenFail?: Error }[]) {
  const requests: WatchRequest[] = [];
  const rpc = {
    watch(req: WatchRequest, options?: { signal?: AbortSignal }) {
      requests.push(req);
      const script = scripts.shift() ?? { messages: [], thenFail: new ConnectError("no more scripts", Code.Internal) };
      return (async function* () {
        for (const m of script.messages) yield create(WatchResponseSchema, m);
        if (script.thenFail !== undefined) throw script.thenFail;
        // A stream that stays open until aborted, as a live one does.
        if (script.thenFail === undefined && scripts.length === 0) {
          await new Promise((resolve) => options?.signal?.addEventListener("abort", resolve, { once: true }));
        }
      })();
    },
  };
  return { rpc: rpc as unknown as JobServiceRpc, requests };
}

const FAST = { maxAttempts: 3, initialDelayMs: 1, maxDelayMs: 5 };
const key = (id: number) => ({ attributes: { id: { kind: { case: "intValue" as const, value: BigInt(id) } } } });
const progress = (target: number, pending: number) => ({ table: "t", target: BigInt(target), pending: BigInt(pending), remaining: BigInt(pending) });

test("a cut stream reconnects with the last cursor, keeps the counts through a catch-up, and emits each event once", async (t) => {
  const { rpc, requests } = scriptedRpc([
    {
      messages: [
        { cursor: "c1", progress: progress(0, 3) },
        { cursor: "c2", progress: progress(1, 2), events: [{ key: key(1), status: JobStatus.UNSPECIFIED, committed: true, workerId: "w" }] },
      ],
      thenFail: new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled),
    },
    { messages: [], thenFail: new ConnectError("connect ECONNREFUSED", Code.Unavailable) },
    {
      messages: [
        { cursor: "c3", events: [{ key: key(2), status: JobStatus.ERROR, errorMessage: "boom", workerId: "w" }] },
        { cursor: "c3", progress: progress(1, 1) },
      ],
    },
  ]);
  const updates = new Recorder(watchJobs<KeyRecord>(rpc, "t", { cursor: "c0", retry: FAST }));
  await updates.until((v) => v.length === 4, "4 updates");
  updates.stop();
  t.deepEqual(
    requests.map((r) => r.cursor),
    ["c0", "c2", "c2"],
  );
  t.deepEqual(
    updates.values.map((u) => [u.cursor, u.progress?.target, u.progress?.pending, u.events.map((e) => `${String(e.key.id)} ${e.status} ${e.errorMessage}`)]),
    [
      ["c1", 0, 3, []],
      ["c2", 1, 2, ["1 deleted "]],
      // The catch-up message has no counts: the last ones stay.
      ["c3", 1, 2, ["2 error boom"]],
      ["c3", 1, 1, []],
    ],
  );
  t.true(requests.every((r) => r.table === "t" && !r.countsOnly));
  t.is(updates.error, undefined);
});

test("OUT_OF_RANGE ends the Observable with CursorExpiredError at once, without reconnecting", async (t) => {
  const { rpc, requests } = scriptedRpc([
    { messages: [], thenFail: new ConnectError('cursor "5" is older than the kept changes; start again without a cursor', Code.OutOfRange) },
    { messages: [{ cursor: "never", progress: progress(0, 0) }] },
  ]);
  const updates = new Recorder(watchJobs(rpc, "t", { cursor: "5", retry: FAST }));
  const err = await t.throwsAsync(
    updates.until(() => false, "an error"),
    { instanceOf: CursorExpiredError },
  );
  t.is(err?.message, 'cursor "5" is older than the kept changes; start again without a cursor');
  t.is(requests.length, 1);
  t.deepEqual(updates.values, []);
});

test("after the policy's attempts in a row without a message, the last UNAVAILABLE ends the Observable", async (t) => {
  const down = () => ({ messages: [], thenFail: new ConnectError("connect ECONNREFUSED 127.0.0.1:1", Code.Unavailable) });
  const { rpc, requests } = scriptedRpc([down(), down(), down(), down()]);
  const updates = new Recorder(watchJobs(rpc, "t", { retry: FAST }));
  await t.throwsAsync(
    updates.until(() => false, "an error"),
    { instanceOf: UnavailableError, message: "connect ECONNREFUSED 127.0.0.1:1" },
  );
  t.is(requests.length, FAST.maxAttempts);
});

test("watchProgress() asks for counts only and emits each distinct count once", async (t) => {
  // Through a Jobs built on the scripted rpc, as table.jobs is built on the real one.
  const { Jobs } = await import("../client-sdk/dist/index.js");
  const { rpc, requests } = scriptedRpc([
    {
      messages: [
        { cursor: "1", progress: progress(0, 2) },
        { cursor: "2", progress: progress(0, 2) },
        { cursor: "3", progress: progress(1, 1) },
        { cursor: "4" },
        { cursor: "5", progress: progress(2, 0) },
      ],
    },
  ]);
  const jobs = new Jobs(rpc, "t", []);
  const counts = new Recorder(jobs.watchProgress());
  await counts.until((v) => v.at(-1)?.target === 2, "target 2");
  counts.stop();
  t.true(requests[0]?.countsOnly);
  t.deepEqual(
    counts.values.map((c) => [c.target, c.pending]),
    [
      [0, 2],
      [1, 1],
      [2, 0],
    ],
  );
});

test("unsubscribing aborts the signal of the call in progress", async (t) => {
  const { rpc } = scriptedRpc([{ messages: [{ cursor: "1", progress: progress(0, 0) }] }]);
  let signal: AbortSignal | undefined;
  const spy = {
    watch: (req: WatchRequest, o?: { signal?: AbortSignal }) => {
      signal = o?.signal;
      return rpc.watch(req, o);
    },
  } as unknown as JobServiceRpc;
  const updates = new Recorder(watchJobs(spy, "t", { retry: FAST }));
  await updates.until((v) => v.length === 1, "the snapshot");
  t.false(signal?.aborted);
  updates.stop();
  t.true(signal?.aborted);
  await new Promise((r) => setTimeout(r, 20));
  t.false(updates.completed);
  t.is(updates.error, undefined);
});
