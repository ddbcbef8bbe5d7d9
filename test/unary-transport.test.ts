/**
 * The SDK's unary calls go through client-sdk/src/transport.ts, not connect-es's call
 * pipeline. These pin what callers relied on from connect-es, against a real server: an abort
 * rejects CANCELED at once (and the connection goes on serving), a timeout rejects
 * DEADLINE_EXCEEDED (against a server that never answers), the server's error JSON arrives as the typed error with its details, the
 * answer's headers are there for an onHeader callback, and a server that is not there is
 * UNAVAILABLE (so retry.ts retries it).
 * A lost answer and a SIGKILLed server are covered by reserve-retry.test.ts and chaos.test.ts.
 */
import http2 from "node:http2";
import net from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import test from "ava";
import { connect, LeaseLostError, PopulusError } from "../client-sdk/dist/index.js";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { resolveConnectOptions } from "../client-sdk/dist/config.js";
import { openConnection } from "../client-sdk/dist/rpc.js";
import { createTransport } from "../client-sdk/dist/transport.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";
import { seconds } from "./helpers/jobs-client.js";

const server = sqliteServerPerFile(test);
const TABLE = "UnaryTransport";

/** A declared table with no pending job: a Reserve with a wait long-polls on it. Made once, by the first test to ask. */
let declared: Promise<void> | undefined;
function declareTable(): Promise<void> {
  declared ??= (async () => {
    const db = connect({ url: server().url });
    const table = db.table<{ id: number }>(TABLE, { keySource: [{ id: 1 }], make: () => ({}) });
    await table.jobs.refresh();
    await table.populate({ reserveJobs: true });
    db.close();
  })();
  return declared;
}

function rpcOf(url: string) {
  return openConnection(resolveConnectOptions({ url }));
}

test("an aborted call rejects CANCELED at once, and the connection serves the next call", async (t) => {
  await declareTable();
  const { rpc, close } = rpcOf(server().url);
  t.teardown(close);
  const abort = new AbortController();
  const started = performance.now();
  const call = rpc.reserve({ table: TABLE, maxJobs: 1, wait: seconds(20), requestId: "abort-me" }, { signal: abort.signal });
  setTimeout(() => abort.abort(), 200);
  const err = await t.throwsAsync(call);
  t.true(err instanceof PopulusError, `${err}`);
  t.is((err as PopulusError).code, Code.Canceled);
  t.true(performance.now() - started < 5000, "rejected long before the 20 s wait");
  // The connection is still good for the next call.
  const progress = await rpc.getProgress({ table: TABLE });
  t.is(Number(progress.progress?.pending), 0);
});

test("a call past its timeout rejects DEADLINE_EXCEEDED", async (t) => {
  // A server that takes the call and never answers, so the client's own deadline is all that can
  // end it. Populus itself ends a long-polling Reserve at the same deadline and answers it empty
  // (as connect-es does, unary-fast-path.test.ts), and which of the two came first was a race
  // that a loaded machine lost now and then.
  const silent = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  silent.on("session", (session) => sessions.add(session));
  silent.on("stream", () => undefined);
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  t.teardown(async () => {
    for (const session of sessions) session.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  const { rpc, close } = rpcOf(`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
  t.teardown(close);
  const started = performance.now();
  const err = await t.throwsAsync(rpc.reserve({ table: TABLE, maxJobs: 1, requestId: "time-me-out" }, { timeoutMs: 300 }));
  const ms = performance.now() - started;
  t.is((err as PopulusError).code, Code.DeadlineExceeded);
  t.true(ms >= 250 && ms < 5000, `rejected at the deadline (${ms.toFixed(0)} ms)`);
});

test("the server's error JSON becomes the typed error, details included", async (t) => {
  await declareTable();
  const { rpc, close } = rpcOf(server().url);
  t.teardown(close);
  const token = `${"ab".repeat(16)}-zz`;
  const err = await t.throwsAsync(rpc.complete({ table: TABLE, completions: [{ leaseToken: token, result: {} }] }));
  t.true(err instanceof LeaseLostError, `${err}`);
  t.deepEqual((err as LeaseLostError).leaseTokens, [token]);
  const missing = await t.throwsAsync(rpc.getProgress({ table: "NoSuchTable" }));
  t.is((missing as PopulusError).code, Code.NotFound);
  t.regex((missing as PopulusError).message, /NoSuchTable/);
});

test("the answer's headers reach onHeader, and onTrailer gets its trailers (none here)", async (t) => {
  await declareTable();
  const sessionManager = new Http2SessionManager(server().url);
  t.teardown(() => sessionManager.abort());
  const client = createClient(JobService, createTransport({ baseUrl: server().url, sessionManager, token: undefined }));
  let header: Headers | undefined;
  let trailer: Headers | undefined;
  const answer = await client.getProgress(
    { table: TABLE },
    {
      onHeader: (h) => {
        header = h;
      },
      onTrailer: (h) => {
        trailer = h;
      },
    },
  );
  t.is(Number(answer.progress?.pending), 0);
  t.is(header?.get("content-type"), "application/proto");
  t.false([...(header?.keys() ?? [])].some((name) => name.startsWith(":") || name.startsWith("trailer-")));
  t.true(trailer instanceof Headers);
});

test("nothing listening is UNAVAILABLE, the code retry.ts retries", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const sessionManager = new Http2SessionManager(url);
  t.teardown(() => sessionManager.abort());
  const client = createClient(JobService, createTransport({ baseUrl: url, sessionManager, token: undefined }));
  const err = await t.throwsAsync(client.getProgress(create(JobService.method.getProgress.input, { table: TABLE })));
  t.true(err instanceof ConnectError);
  t.is((err as ConnectError).code, Code.Unavailable);
});
