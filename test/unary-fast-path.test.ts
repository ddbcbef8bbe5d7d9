/**
 * The server answers plain binary Connect unary calls over HTTP/2 itself
 * (server/src/service/unary-fast-path.ts) and everything else through connect-es. Which requests
 * it takes is checked on the module alone, behind a bare HTTP/2 server that answers 418 for what
 * it leaves. Then, on a real server, the same request sent both ways (HTTP/2, which takes the
 * fast path, and HTTP/1.1, which connect-es answers) gets the same answer: status, content type,
 * body, for successes and for each kind of error; requests the fast path leaves (a compressed
 * body, a bad timeout header) are still answered by connect-es; and a deadline in the request
 * ends a long poll as it does on connect-es.
 */
import { gzipSync } from "node:zlib";
import type http from "node:http";
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { connect } from "../client-sdk/dist/index.js";
import {
  CompleteRequestSchema,
  GetProgressRequestSchema,
  GetProgressResponseSchema,
  ReserveRequestSchema,
} from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { aloneOptions, behindBareServer, postHttp1 } from "./helpers/fast-path.js";
import { postHttp2 } from "./helpers/raw-http2.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";
import { callsAwaiting } from "../server/dist/service/shutdown-fanout.js";
import { unaryFastPath } from "../server/dist/service/unary-fast-path.js";
import { seconds, until } from "./helpers/jobs-client.js";

const server = sqliteServerPerFile(test);
const TABLE = "FastPath";
const PROTO = { "content-type": "application/proto", "connect-protocol-version": "1" };

let declared: Promise<void> | undefined;
/** A declared table holding three pending jobs (made once, by the first test to ask). */
function declareTable(): Promise<void> {
  declared ??= (async () => {
    const db = connect({ url: server().url });
    await db.table<{ id: number }>(TABLE, { keySource: [{ id: 1 }, { id: 2 }, { id: 3 }], make: () => ({}) }).jobs.refresh();
    db.close();
  })();
  return declared;
}

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

async function overHttp2(path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  const a = await postHttp2(server().url, path, headers, body);
  return { status: a.status, contentType: String(a.headers["content-type"] ?? ""), body: a.body };
}

function overHttp1(path: string, headers: http.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  return postHttp1(`${server().url}${path}`, headers, body);
}

const method = (name: string) => `/populus.v1.JobService/${name}`;

/** The answer both ways, asserted equal; the HTTP/2 one is returned. */
async function sameBothWays(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void }, name: string, body: Uint8Array): Promise<Answer> {
  const fast = await overHttp2(method(name), PROTO, body);
  const connectEs = await overHttp1(method(name), PROTO, body);
  t.deepEqual(
    { status: fast.status, contentType: fast.contentType, body: fast.body.toString("base64") },
    { status: connectEs.status, contentType: connectEs.contentType, body: connectEs.body.toString("base64") },
    `${name}: the fast path and connect-es answer alike`,
  );
  return fast;
}

test("a success answers the same message as connect-es", async (t) => {
  await declareTable();
  const a = await sameBothWays(t, "GetProgress", toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: TABLE })));
  t.is(a.status, 200);
  t.is(a.contentType, "application/proto");
  t.is(Number(fromBinary(GetProgressResponseSchema, a.body).progress?.pending), 3);
  // The answer's headers: a Date, as an origin server sends it (RFC 9110, 6.6.1).
  const raw = await postHttp2(
    server().url,
    method("GetProgress"),
    PROTO,
    toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: TABLE })),
  );
  t.true(Math.abs(Date.parse(String(raw.headers.date)) - Date.now()) < 5000, `date: ${raw.headers.date}`);
  t.is(raw.headers["content-length"], String(raw.body.byteLength));
});

test("errors answer the same JSON as connect-es: not found, invalid argument, a lost lease with its details", async (t) => {
  await declareTable();
  const missing = await sameBothWays(t, "GetProgress", toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: "NoSuchTable" })));
  t.is(missing.status, 404);
  t.like(JSON.parse(missing.body.toString()), { code: "not_found" });

  const undecodable = await sameBothWays(t, "Reserve", Buffer.from([0x0a, 0x7f, 0x41]));
  t.is(undecodable.status, 400);
  t.regex(JSON.parse(undecodable.body.toString()).message, /did not decode as a populus\.v1\.ReserveRequest message/);

  const badTable = await sameBothWays(t, "GetProgress", toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: "no spaces allowed" })));
  t.is(badTable.status, 400);

  const token = `${"cd".repeat(16)}-1`;
  const lost = await sameBothWays(
    t,
    "Complete",
    toBinary(CompleteRequestSchema, create(CompleteRequestSchema, { table: TABLE, completions: [{ leaseToken: token, result: {} }] })),
  );
  const error = JSON.parse(lost.body.toString()) as { code: string; details?: unknown[] };
  t.is(error.code, "failed_precondition");
  t.is(error.details?.length, 1, "the LeaseLostDetail travels as on connect-es");
});

test("a body over the size limit is RESOURCE_EXHAUSTED, as on connect-es", async (t) => {
  const big = Buffer.alloc(16 * 1024 * 1024 + 16, 0);
  const fast = await overHttp2(method("GetProgress"), PROTO, big);
  const connectEs = await overHttp1(method("GetProgress"), PROTO, big);
  t.is(fast.status, 429);
  t.is(connectEs.status, 429);
  t.is(JSON.parse(fast.body.toString()).code, "resource_exhausted");
  // The connection and the server are fine after it.
  t.is((await overHttp2(method("GetProgress"), PROTO, toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: TABLE })))).status, 200);
});

test("requests the fast path leaves to connect-es are still answered: a gzip body, a bad timeout header", async (t) => {
  await declareTable();
  const request = toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: TABLE }));
  const gzipped = await overHttp2(method("GetProgress"), { ...PROTO, "content-encoding": "gzip" }, gzipSync(request));
  t.is(gzipped.status, 200);
  t.is(Number(fromBinary(GetProgressResponseSchema, gzipped.body).progress?.pending), 3);
  const badTimeout = await overHttp2(method("GetProgress"), { ...PROTO, "connect-timeout-ms": "soon" }, request);
  t.is(badTimeout.status, 400);
  t.regex(JSON.parse(badTimeout.body.toString()).message, /invalid connect timeout/);
});

test("a deadline in the request ends a long-polling Reserve at the deadline, as on connect-es", async (t) => {
  await declareTable();
  // maxPriority 0: the table's jobs (priority 5) are not ready for it, so the Reserve waits.
  const body = toBinary(ReserveRequestSchema, create(ReserveRequestSchema, { table: TABLE, maxJobs: 1, maxPriority: 0, wait: seconds(20) }));
  const headers = { ...PROTO, "connect-timeout-ms": "300" };
  let started = performance.now();
  const fast = await overHttp2(method("Reserve"), headers, body);
  const fastMs = performance.now() - started;
  started = performance.now();
  const connectEs = await overHttp1(method("Reserve"), headers, body);
  const connectEsMs = performance.now() - started;
  t.deepEqual({ status: fast.status, body: fast.body.toString("base64") }, { status: connectEs.status, body: connectEs.body.toString("base64") });
  t.true(fastMs < 5000 && connectEsMs < 5000, `answered at the deadline, not after the 20 s wait (${fastMs.toFixed(0)} / ${connectEsMs.toFixed(0)} ms)`);
  t.true(fastMs >= 250, `not before it (${fastMs.toFixed(0)} ms)`);
});

test("a deadline past what a timer holds (ten digits of ms, 115 days) is no deadline, not one that has passed", async (t) => {
  await declareTable();
  // Reserve waits 1 s for jobs it may not take: a timer set for 9,999,999,999 ms fires at once in node and would end it early.
  const body = toBinary(ReserveRequestSchema, create(ReserveRequestSchema, { table: TABLE, maxJobs: 1, maxPriority: 0, wait: seconds(1) }));
  const started = performance.now();
  const fast = await overHttp2(method("Reserve"), { ...PROTO, "connect-timeout-ms": "9999999999" }, body);
  t.is(fast.status, 200, fast.body.toString());
  t.true(performance.now() - started >= 900, "it waited its full second");
});

test("the module takes a plain binary unary call and leaves every other request untouched, interceptors outermost first", async (t) => {
  const order: string[] = [];
  const tables: string[] = [];
  const fast = unaryFastPath(
    aloneOptions(
      {
        getProgress: (req: { table: string }) => {
          tables.push(req.table);
          return { progress: { table: req.table, pending: 7n } };
        },
      },
      order,
    ),
  );
  const url = await behindBareServer(t, fast);
  const request = toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: "Taken" }));

  const taken = await postHttp2(url, method("GetProgress"), PROTO, request);
  t.is(taken.status, 200);
  t.is(Number(fromBinary(GetProgressResponseSchema, taken.body).progress?.pending), 7);
  t.deepEqual(tables, ["Taken"]);
  t.deepEqual(order, ["outer in", "inner in", "inner out", "outer out"]);

  const left: [string, string, http2.OutgoingHttpHeaders][] = [
    ["gzip body", method("GetProgress"), { ...PROTO, "content-encoding": "gzip" }],
    ["JSON", method("GetProgress"), { "content-type": "application/json" }],
    ["bad timeout", method("GetProgress"), { ...PROTO, "connect-timeout-ms": "soon" }],
    ["protocol version 2", method("GetProgress"), { ...PROTO, "connect-protocol-version": "2" }],
    ["gRPC", method("GetProgress"), { "content-type": "application/grpc" }],
    ["a stream (Watch)", method("Watch"), { "content-type": "application/connect+proto" }],
    ["an unknown method", method("NoSuchMethod"), PROTO],
  ];
  for (const [what, path, headers] of left) t.is((await postHttp2(url, path, headers, request)).status, 418, `${what} is left to connect-es`);
  t.deepEqual(tables, ["Taken"], "none of those reached the implementation");
});

test("a client that resets its stream mid-body is not answered, and what it sent so far never runs, even when it decodes as a whole request", async (t) => {
  const tables: string[] = [];
  const fast = unaryFastPath(aloneOptions({ getProgress: (req: { table: string }) => tables.push(req.table) && {} }, []));
  let serverGotData!: () => void;
  const gotData = new Promise<void>((resolve) => {
    serverGotData = resolve;
  });
  let serverClosed!: () => void;
  const closed = new Promise<void>((resolve) => {
    serverClosed = resolve;
  });
  const url = await behindBareServer(t, (req, res) => {
    const taken = fast(req, res);
    req.once("data", () => serverGotData());
    req.once("close", () => serverClosed());
    return taken;
  });
  const session = http2.connect(url);
  t.teardown(() => session.destroy());
  const request = session.request({ ":method": "POST", ":path": method("GetProgress"), ...PROTO });
  let answered = false;
  request.on("response", () => {
    answered = true;
  });
  request.on("error", () => undefined);
  // A whole GetProgressRequest, but the stream's end never comes: the client resets it instead.
  request.write(toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table: "Prefix" })));
  await gotData;
  request.destroy(); // RST_STREAM without END_STREAM
  await closed;
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(tables, [], "the implementation never ran");
  t.false(answered, "nothing was answered on the reset stream");
});

test("a shutdown ends every call in flight with its reason, not the calls that ended before it, and a call that comes after it at once", async (t) => {
  const shutdown = new AbortController();
  const reasons = new Map<string, unknown>();
  const signals = new Map<string, AbortSignal>();
  let held = 0;
  const fast = unaryFastPath({
    ...aloneOptions(
      {
        getProgress: async (req: { table: string }, ctx: { signal: AbortSignal }) => {
          signals.set(req.table, ctx.signal);
          if (req.table.startsWith("Held")) {
            held++;
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
            reasons.set(req.table, ctx.signal.reason);
          }
          return { progress: { table: req.table } };
        },
      },
      [],
    ),
    shutdownSignal: shutdown.signal,
  });
  const url = await behindBareServer(t, fast);
  const call = (table: string) => postHttp2(url, method("GetProgress"), PROTO, toBinary(GetProgressRequestSchema, create(GetProgressRequestSchema, { table })));

  const answered = await Promise.all(["Quick1", "Quick2", "Quick3"].map(call));
  t.deepEqual(
    answered.map((a) => a.status),
    [200, 200, 200],
  );
  t.is(callsAwaiting(shutdown.signal), 0, "the calls answered let go of the shutdown");
  const calls = Array.from({ length: 50 }, (_, i) => call(`Held${i}`));
  await until("the 50 calls are held", async () => held === 50);
  t.is(reasons.size, 0, "the held calls wait");
  t.is(callsAwaiting(shutdown.signal), 50);

  const reason = new Error("the server is stopping");
  shutdown.abort(reason);
  const ended = await Promise.all(calls);
  t.deepEqual(new Set(ended.map((a) => a.status)), new Set([200]));
  t.is(reasons.size, 50, "every held call heard the shutdown");
  t.true(
    [...reasons.values()].every((r) => r === reason),
    "with the shutdown's reason",
  );
  t.is(callsAwaiting(shutdown.signal), 0);
  for (const quick of ["Quick1", "Quick2", "Quick3"]) {
    t.not((signals.get(quick) as AbortSignal).reason, reason, `${quick}, answered before, ended with its answer, not the shutdown`);
  }

  await call("Late");
  t.is((signals.get("Late") as AbortSignal).reason, reason, "a call that comes after the shutdown is ended by it at once");
});
