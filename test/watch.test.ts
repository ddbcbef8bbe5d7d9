/**
 * Watch (promise 5) against real servers: the snapshot, then every change
 * with its counts and job-level events; resuming by cursor with every event
 * exactly once and in order, on the same replica and on another one sharing
 * the database (on SQLite, a second server process on the same file); a completion made through replica A reaching a
 * watcher on replica B; counts-only streams; cursor errors; and the stream
 * ending with UNAVAILABLE when its server drains.
 */
import { type Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import test from "ava";
import BetterSqlite3 from "better-sqlite3";
import mysql from "mysql2/promise";
import type { WatchResponse } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { AttributeType, JobStatus } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { createTestDatabase, type TestDatabase, testDialects } from "./helpers/databases.js";
import { codeName, counts, idOf, type JobsClient, jobsClient, keys, rpcError, seconds, sleep } from "./helpers/jobs-client.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const WORKER = { workerId: "w-test", host: "test", pid: 1, user: "test", codeVersion: "" };

/** A job-level event, flattened for comparison. */
interface Seen {
  id: number;
  status: string;
  committed: boolean;
  error: string;
  worker: string;
}

/** A message's events, from JobEvent messages or from event groups (grouped_events), as the same records. */
function flatten(m: WatchResponse): Seen[] {
  if (m.eventGroups.length > 0) {
    if (m.events.length > 0) throw new Error("a message with both events and event groups");
    const attributes = m.keyAttributes.map((a) => [a.name, AttributeType[a.type]]);
    if (JSON.stringify(attributes) !== JSON.stringify([["id", "INT64"]])) throw new Error(`key attributes ${JSON.stringify(attributes)}`);
    return m.eventGroups.flatMap((g) =>
      (JSON.parse(g.keysJson) as { id: string }[]).map((key, i) => {
        if (typeof key.id !== "string") throw new Error(`an int64 in keys_json is not a decimal string: ${g.keysJson}`);
        return { id: Number(key.id), status: JobStatus[g.status], committed: g.committed, error: g.errorMessages[i] ?? "", worker: g.workerId };
      }),
    );
  }
  return m.events.map((e) => ({ id: idOf(e.key), status: JobStatus[e.status], committed: e.committed, error: e.errorMessage, worker: e.workerId }));
}

/** A Watch stream read in the background: its messages, as they come, and how it ended. */
class Stream {
  readonly messages: WatchResponse[] = [];
  readonly arrivals: number[] = [];
  readonly done: Promise<{ code: Code | "ok" }>;
  private readonly controller = new AbortController();

  constructor(client: JobsClient, table: string, options: { cursor?: string; countsOnly?: boolean; groupedEvents?: boolean } = {}) {
    this.done = (async () => {
      try {
        for await (const m of client.watch(
          { table, cursor: options.cursor ?? "", countsOnly: options.countsOnly ?? false, groupedEvents: options.groupedEvents ?? false },
          { signal: this.controller.signal },
        )) {
          this.messages.push(m);
          this.arrivals.push(Date.now());
        }
        return { code: "ok" as const };
      } catch (err) {
        return { code: (await rpcError(Promise.reject(err))).code };
      }
    })();
  }

  get events(): Seen[] {
    return this.messages.flatMap(flatten);
  }

  get lastCursor(): string {
    return this.messages.at(-1)?.cursor ?? "";
  }

  /** The last counts this stream carried, as numbers. */
  get progress(): Record<string, number> | undefined {
    const p = this.messages.findLast((m) => m.progress !== undefined)?.progress;
    if (p === undefined) return undefined;
    return {
      pending: Number(p.pending),
      reserved: Number(p.reserved),
      error: Number(p.error),
      success: Number(p.success),
      ignore: Number(p.ignore),
      target: Number(p.target),
      remaining: Number(p.remaining),
    };
  }

  /** Waits until `probe` holds for this stream (fails the test after 10 s). */
  async until(what: string, probe: (s: Stream) => boolean): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!probe(this)) {
      if (Date.now() > deadline) throw new Error(`Watch: timed out waiting for ${what}; got ${JSON.stringify(this.events)} / ${JSON.stringify(this.progress)}`);
      await sleep(20);
    }
  }

  async close(): Promise<void> {
    this.controller.abort();
    await this.done;
  }
}

/** Reserve n jobs of `table` through `client` and answer their tokens in key order. */
async function reserve(client: JobsClient, table: string, n: number): Promise<{ id: number; token: string }[]> {
  const { leases } = await client.reserve({ table, maxJobs: n, worker: WORKER, leaseDuration: seconds(60) });
  return leases.map((l) => ({ id: idOf(l.key), token: l.leaseToken }));
}

const dialects = testDialects();
const databases: TestDatabase[] = [];
const servers: ServerProcess[] = [];

async function server(db: TestDatabase): Promise<{ server: ServerProcess; client: JobsClient }> {
  const s = await startServer({ database: db.url });
  servers.push(s);
  return { server: s, client: jobsClient(s.url) };
}

test.after.always(async () => {
  await Promise.all(servers.map((s) => s.kill()));
  await Promise.all(databases.map((d) => d.drop()));
});

for (const dialect of dialects) {
  const setup = (async () => {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    return { db, ...(await server(db)) };
  })();

  test.serial(
    `${dialect}: Connect+protobuf, Connect+JSON and gRPC streams carry the same events, one by one or in groups (the binary ones are encoded once per change)`,
    async (t) => {
      const { server: s, client } = await setup;
      const table = "WatchCodecs";
      await client.refresh({ table, keys: keys(0, 6) });
      const json = createClient(JobService, createConnectTransport({ baseUrl: s.url, httpVersion: "2", useBinaryFormat: false }));
      const grpc = createClient(JobService, createGrpcTransport({ baseUrl: s.url }));
      const streams = [client, json, grpc].flatMap((c) => [new Stream(c, table), new Stream(c, table, { groupedEvents: true })]);
      for (const w of streams) await w.until("the snapshot", (x) => x.messages.length >= 1);
      const held = await reserve(client, table, 4);
      await client.complete({ table, completions: held.slice(0, 3).map((h) => ({ leaseToken: h.token, result: { ok: true } })) });
      await client.fail({ table, leaseToken: held[3]!.token, errorMessage: "boom ✗", errorStack: "" });
      for (const w of streams) await w.until("all 8 events", (x) => x.events.length === 8);
      const [binary, ...others] = streams.map((w) => ({ events: w.events, cursors: w.messages.map((m) => m.cursor), progress: w.progress }));
      t.is(binary!.events.filter((e) => e.status === "ERROR" && e.error === "boom ✗").length, 1);
      for (const other of others) t.deepEqual(other, binary);
      const grouped = streams.filter((_, i) => i % 2 === 1);
      for (const w of grouped) t.true(w.messages.every((m) => m.events.length === 0) && w.messages.some((m) => m.eventGroups.length > 0), "groups, no events");
      await Promise.all(streams.map((w) => w.close()));
    },
  );

  test.serial(`${dialect}: a snapshot, then each change with its events and counts, ending at the totals GetProgress reports`, async (t) => {
    const { client } = await setup;
    const table = "WatchBasics";
    await client.refresh({ table, keys: keys(0, 20) });
    const watch = new Stream(client, table);
    await watch.until("the snapshot", (s) => s.messages.length >= 1);
    t.deepEqual(watch.messages[0]!.events, [], "the first message is a snapshot");
    t.like(watch.progress, { pending: 20, reserved: 0, target: 0, remaining: 20 });

    const leased = await reserve(client, table, 5);
    await client.complete({ table, completions: leased.slice(0, 3).map((l) => ({ leaseToken: l.token, result: { ok: true } })) });
    await client.fail({ table, leaseToken: leased[3]!.token, errorMessage: "boom: bad input", errorStack: "Error: boom" });
    await client.release({ table, leaseTokens: [leased[4]!.token] });
    await client.ignore({ table, keys: keys(19, 20) });

    await watch.until("ten events", (s) => s.events.length >= 11);
    const ids = leased.map((l) => l.id);
    t.deepEqual(watch.events, [
      ...ids.map((id) => ({ id, status: "RESERVED", committed: false, error: "", worker: WORKER.workerId })),
      ...ids.slice(0, 3).map((id) => ({ id, status: "UNSPECIFIED", committed: true, error: "", worker: WORKER.workerId })),
      { id: ids[3]!, status: "ERROR", committed: false, error: "boom: bad input", worker: WORKER.workerId },
      { id: ids[4]!, status: "PENDING", committed: false, error: "", worker: WORKER.workerId },
      { id: 19, status: "IGNORE", committed: false, error: "", worker: "" },
    ]);
    const expected = { pending: 15, reserved: 0, success: 0, error: 1, ignore: 1, target: 3, remaining: 15 };
    t.deepEqual(watch.progress, expected);
    t.deepEqual(await counts(client, table), expected, "the streamed counts are the table's counts");

    // Bulk changes move the counts without job-level events.
    await client.refresh({ table, keys: keys(20, 30) });
    await client.deleteJobs({ table, statuses: [JobStatus.ERROR] });
    await watch.until("the bulk changes", (s) => s.progress?.pending === 25 && s.progress.error === 0);
    t.is(watch.events.length, 11);
    t.deepEqual(await counts(client, table), watch.progress);
    await watch.close();
  });

  test.serial(`${dialect}: a client that reconnects with its cursor gets every event exactly once, in order`, async (t) => {
    const { client } = await setup;
    const table = "WatchResume";
    await client.refresh({ table, keys: keys(0, 40) });
    const whole = new Stream(client, table);
    const first = new Stream(client, table);
    await first.until("the snapshot", (s) => s.messages.length >= 1);

    for (let round = 0; round < 4; round++) {
      const leased = await reserve(client, table, 5);
      await client.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
    }
    await first.until("the first 40 events", (s) => s.events.length >= 40);
    await first.close();
    const cursor = first.lastCursor;

    // Changes made while no one listens with that cursor.
    for (let round = 0; round < 3; round++) {
      const leased = await reserve(client, table, 4);
      await client.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
    }
    // Once this replica has passed them, the missed events can only come back from the log.
    await whole.until("the first 64 events", (s) => s.events.length >= 64);
    const resumed = new Stream(client, table, { cursor });
    await resumed.until("the missed 24 events", (s) => s.events.length >= 24 && s.progress !== undefined);
    const leased = await reserve(client, table, 2);
    await client.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
    await resumed.until("the live 4 events", (s) => s.events.length >= 28);
    await whole.until("all 68 events", (s) => s.events.length >= 68);

    t.deepEqual([...first.events, ...resumed.events], whole.events, "no event lost, none doubled, same order");
    t.true(
      resumed.messages.some((m) => m.progress === undefined && m.events.length > 0),
      `catch-up messages carry events without counts: ${JSON.stringify(resumed.messages.map((m) => [m.cursor, m.progress !== undefined, m.events.length]))}`,
    );
    t.deepEqual(
      resumed.messages.filter((m) => m.progress === undefined).map((m) => m.events.length),
      [4, 4, 4, 4, 4, 4],
      "catch-up comes one change per message (3 Reserves and 3 Completes of 4 jobs), never a batch of changes in one",
    );
    t.deepEqual(resumed.progress, await counts(client, table));
    await Promise.all([resumed.close(), whole.close()]);
  });

  test.serial(`${dialect}: counts-only streams carry counts and no events`, async (t) => {
    const { client } = await setup;
    const table = "WatchCountsOnly";
    await client.refresh({ table, keys: keys(0, 10) });
    const watch = new Stream(client, table, { countsOnly: true });
    await watch.until("the snapshot", (s) => s.messages.length >= 1);
    const leased = await reserve(client, table, 10);
    await client.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
    await watch.until("the final counts", (s) => s.progress?.target === 10);
    t.true(watch.messages.every((m) => m.events.length === 0));
    t.like(watch.progress, { pending: 0, reserved: 0, target: 10, remaining: 0 });
    await watch.close();
  });

  test.serial(`${dialect}: bad cursors and tables answer INVALID_ARGUMENT, OUT_OF_RANGE and NOT_FOUND`, async (t) => {
    const { client, db } = await setup;
    const table = "WatchErrors";
    await client.refresh({ table, keys: keys(0, 3) });
    const code = async (req: { table: string; cursor?: string }) => {
      const s = new Stream(client, req.table, { cursor: req.cursor });
      return codeName((await s.done).code as Code);
    };
    t.is(await code({ table, cursor: "abc" }), "InvalidArgument");
    t.is(await code({ table, cursor: "999999999" }), "InvalidArgument");
    t.is(await code({ table: "NoSuchTable" }), "NotFound");

    // Pretend changes 1..2 were pruned: a cursor below that bound is OUT_OF_RANGE.
    if (db.dialect === "sqlite") {
      const file = new BetterSqlite3(db.url.slice("sqlite:".length));
      file.prepare(`INSERT OR REPLACE INTO "~populus_meta" (name, value) VALUES ('events_pruned_through', 2)`).run();
      file.close();
    } else {
      const c = await mysql.createConnection({ uri: db.url });
      await c.query("REPLACE INTO `~populus_meta` (name, value) VALUES ('events_pruned_through', 2)");
      await c.end();
    }
    t.is(await code({ table, cursor: "1" }), "OutOfRange");
    const atBound = new Stream(client, table, { cursor: "2" });
    await atBound.until("an answer at the pruned bound", (s) => s.messages.length >= 1);
    await atBound.close();
    t.pass();
  });

  test.serial(`${dialect}: a draining server ends its Watch streams with UNAVAILABLE`, async (t) => {
    const { db } = await setup;
    const { server: own, client } = await server(db);
    const table = "WatchDrain";
    await client.refresh({ table, keys: keys(0, 3) });
    const watch = new Stream(client, table);
    await watch.until("the snapshot", (s) => s.messages.length >= 1);
    t.is(await own.stop(), 0);
    t.is(codeName((await watch.done).code as Code), "Unavailable");
  });
}

// Replicas: on MariaDB two servers on one database; on SQLite two server processes on one file.
for (const dialect of dialects) {
  test.serial(`${dialect}: a watcher on replica B sees a completion made through replica A within a second, and resumes on A without a gap`, async (t) => {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    const a = await server(db);
    const b = await server(db);
    const table = "WatchReplicas";
    await a.client.refresh({ table, keys: keys(0, 30) });
    const onA = new Stream(a.client, table);
    const onB = new Stream(b.client, table);
    await onB.until("the snapshot", (s) => s.messages.length >= 1);
    await onA.until("the snapshot", (s) => s.messages.length >= 1);

    const [lease] = await reserve(a.client, table, 1);
    await onB.until("the reservation", (s) => s.events.length >= 1);
    const committedAt = Date.now();
    await a.client.complete({ table, completions: [{ leaseToken: lease!.token, result: {} }] });
    await onB.until("the completion", (s) => s.events.some((e) => e.committed));
    const delay = onB.arrivals.at(-1)! - committedAt;
    t.log(`completion through A reached B's watcher after ${delay} ms`);
    t.true(delay < 1000, `delay ${delay} ms`);
    t.like(onB.progress, { target: 1, pending: 29 });

    await onB.close();
    for (let round = 0; round < 5; round++) {
      const leased = await reserve(b.client, table, 3);
      await b.client.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
    }
    const resumed = new Stream(a.client, table, { cursor: onB.lastCursor });
    await resumed.until("the 30 missed events", (s) => s.events.length >= 30);
    await onA.until("all 32 events", (s) => s.events.length >= 32);
    t.deepEqual([...onB.events, ...resumed.events], onA.events);
    await sleep(200);
    t.is(resumed.events.length, 30, "nothing more arrives");
    t.deepEqual(resumed.progress, await counts(a.client, table));
    await Promise.all([resumed.close(), onA.close()]);
  });
}

// Pacing is the hub's, the same on every dialect: one run on the first.
if (dialects[0] !== undefined) {
  const dialect = dialects[0];
  test(`${dialect}: counts-only streams are paced by their number: 600 of them get a message at most every 600 ms, and the last counts`, async (t) => {
    const db = await createTestDatabase(dialect);
    databases.push(db);
    const s = await startServer({ database: db.url, args: ["--max-watch-streams", "700"] });
    servers.push(s);
    const clients = Array.from({ length: 10 }, () => jobsClient(s.url));
    const table = "WatchPaced";
    await clients[0]!.refresh({ table, keys: keys(0, 3000) });
    const streams = Array.from({ length: 600 }, (_, i) => new Stream(clients[i % clients.length]!, table, { countsOnly: true }));
    await Promise.all(streams.map((w) => w.until("the snapshot", (x) => x.messages.length >= 1)));
    // About 3 s of changes, one every 25 ms, each of which would be news to every stream.
    let done = 0;
    const before = streams.map((w) => w.messages.length);
    const started = Date.now();
    while (Date.now() - started < 3000) {
      const leased = await reserve(clients[0]!, table, 10);
      await clients[0]!.complete({ table, completions: leased.map((l) => ({ leaseToken: l.token, result: {} })) });
      done += leased.length;
      await sleep(25);
    }
    await Promise.all(streams.map((w) => w.until("the last counts", (x) => x.progress?.target === done)));
    const elapsed = Date.now() - started;
    const updates = streams.map((w, i) => w.messages.length - before[i]!);
    // 600 streams × 1000 ms / 1000 messages a second: each stream's messages are sent at least 600 ms
    // apart, so about 1 + elapsed / 600 of them arrive meanwhile (the fixed 250 ms sent 1 + elapsed / 250).
    // Counted, not timed by arrival: a loaded machine delays deliveries and can bring two arrivals
    // closer than they were sent. One more for a message sent just before the clock started, and
    // 10 ms a step for timers that fire a millisecond early.
    const most = 2 + Math.floor(elapsed / 590);
    t.log(`${done} jobs completed in ${elapsed} ms; ${Math.min(...updates)}–${Math.max(...updates)} updates per stream (at most ${most})`);
    t.true(Math.max(...updates) <= most, `a stream got ${Math.max(...updates)} updates in ${elapsed} ms`);
    t.true(Math.min(...updates) >= 3, "each stream kept getting counts while the jobs ran");
    await Promise.all(streams.map((w) => w.close()));
  });
}
