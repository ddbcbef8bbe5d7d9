/**
 * The server answers binary Connect Watch streams over HTTP/2 itself
 * (server/src/service/watch-fast-path.ts) and every other form of Watch through connect-es.
 * Which requests it takes, and that it runs the interceptors and encodes each message once for
 * every stream, is checked on the module alone, behind a bare HTTP/2 server that answers 418 for
 * what it leaves. Then, on a real server, the same Watch sent both ways (HTTP/2, which takes the
 * fast path, and HTTP/1.1, which connect-es answers) gets the same bytes: a snapshot that ends
 * at its deadline, and each kind of error in the end-of-stream envelope.
 */
import type http from "node:http";
import http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import test from "ava";
import { connect } from "../client-sdk/dist/index.js";
import { WatchRequestSchema, WatchResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { watchFastPath } from "../server/dist/service/watch-fast-path.js";
import { aloneOptions, behindBareServer, postHttp1 } from "./helpers/fast-path.js";
import { postHttp2 } from "./helpers/raw-http2.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";

const server = sqliteServerPerFile(test);
const TABLE = "WatchFastPath";
const STREAM_PROTO = { "content-type": "application/connect+proto", "connect-protocol-version": "1" };
const WATCH = "/populus.v1.JobService/Watch";

/** One message in a Connect envelope: flags, length (big-endian), bytes. */
function envelope(data: Uint8Array, flags = 0, length = data.byteLength): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(length, 1);
  return Buffer.concat([head, data]);
}

/** A body's envelopes: flags and data. */
function envelopes(body: Buffer): { flags: number; data: Buffer }[] {
  const found = [];
  for (let at = 0; at < body.length; ) {
    const length = body.readUInt32BE(at + 1);
    found.push({ flags: body.readUInt8(at), data: body.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return found;
}

const watchBody = (table: string, extra: Partial<{ countsOnly: boolean }> = {}) =>
  envelope(toBinary(WatchRequestSchema, create(WatchRequestSchema, { table, ...extra })));

interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

function overHttp1(headers: http.OutgoingHttpHeaders, body: Uint8Array): Promise<Answer> {
  return postHttp1(`${server().url}${WATCH}`, headers, body);
}

/** The answer both ways, asserted equal; the HTTP/2 one is returned. */
async function sameBothWays(
  t: { deepEqual: (a: unknown, b: unknown, m?: string) => void },
  headers: http.OutgoingHttpHeaders,
  body: Uint8Array,
): Promise<Answer> {
  const a = await postHttp2(server().url, WATCH, headers as http2.OutgoingHttpHeaders, body);
  const fast = { status: a.status, contentType: String(a.headers["content-type"] ?? ""), body: a.body };
  const connectEs = await overHttp1(headers, body);
  t.deepEqual(
    { status: fast.status, contentType: fast.contentType, body: fast.body.toString("base64") },
    { status: connectEs.status, contentType: connectEs.contentType, body: connectEs.body.toString("base64") },
    "the fast path and connect-es answer alike",
  );
  return fast;
}

test("a Watch ending at its deadline sends the same snapshot and end of stream as connect-es", async (t) => {
  const db = connect({ url: server().url });
  await db.table<{ id: number }>(TABLE, { keySource: [{ id: 1 }, { id: 2 }], make: () => ({}) }).jobs.refresh();
  db.close();
  const a = await sameBothWays(t, { ...STREAM_PROTO, "connect-timeout-ms": "300" }, watchBody(TABLE, { countsOnly: true }));
  t.is(a.status, 200);
  t.is(a.contentType, "application/connect+proto");
  const [snapshot, end, ...rest] = envelopes(a.body);
  t.is(snapshot?.flags, 0);
  t.is(Number(fromBinary(WatchResponseSchema, snapshot?.data ?? Buffer.alloc(0)).progress?.pending), 2);
  t.is(end?.flags, 2, "then the end of the stream");
  t.deepEqual(rest, []);
});

test("errors arrive in the end-of-stream envelope as on connect-es: not found, a bad table name, undecodable bodies", async (t) => {
  const endError = (a: Answer) => {
    const [end] = envelopes(a.body);
    t.is(end?.flags, 2);
    return (JSON.parse(end?.data.toString() ?? "{}") as { error?: { code: string; message: string } }).error;
  };
  t.like(endError(await sameBothWays(t, STREAM_PROTO, watchBody("NoSuchTable"))), { code: "not_found" });
  t.like(endError(await sameBothWays(t, STREAM_PROTO, watchBody("no spaces allowed"))), { code: "invalid_argument" });
  const undecodable = endError(await sameBothWays(t, STREAM_PROTO, envelope(Buffer.from([0x0a, 0x7f, 0x41]))));
  t.is(undecodable?.code, "invalid_argument");
  t.regex(undecodable?.message ?? "", /did not decode as a populus\.v1\.WatchRequest message/);
  const compressed = endError(await sameBothWays(t, STREAM_PROTO, envelope(Buffer.from([0x0a, 0x01, 0x41]), 1)));
  t.is(compressed?.code, "invalid_argument");
});

test("alone: the interceptors run before the body is read: a refused caller is refused whatever it sent, and an undecodable body's error passes out through them", async (t) => {
  const order: string[] = [];
  const seen: (string | undefined)[] = [];
  const implementation = {
    async *watch() {
      t.fail("an undecodable or refused request never reaches the implementation");
      yield create(WatchResponseSchema, {});
    },
  };
  const options = aloneOptions(implementation, order);
  const refuseWithoutToken: Interceptor = (next) => async (req) => {
    if (req.header.get("authorization") === null) throw new ConnectError("no token", Code.Unauthenticated);
    try {
      return await next(req);
    } catch (err) {
      seen.push(ConnectError.from(err).message);
      throw err;
    }
  };
  const url = await behindBareServer(t, watchFastPath({ ...options, interceptors: [...options.interceptors, refuseWithoutToken] }, "Watch"));
  const garbage = Buffer.from([0xff, 0xff, 0xff]);

  const refused = await postHttp2(url, WATCH, STREAM_PROTO, garbage);
  t.is(refused.status, 200);
  t.like(JSON.parse(envelopes(refused.body)[0]?.data.toString() ?? ""), { error: { code: "unauthenticated", message: "no token" } });

  const undecodable = await postHttp2(url, WATCH, { ...STREAM_PROTO, authorization: "Bearer x" }, envelope(Buffer.from([0xff, 0xff, 0xff])));
  const end = JSON.parse(envelopes(undecodable.body)[0]?.data.toString() ?? "");
  t.is(end.error.code, "invalid_argument");
  t.regex(end.error.message, /did not decode/);
  t.is(seen.length, 1, "the innermost interceptor saw the error");
  t.regex(seen[0] ?? "", /did not decode/);
  t.deepEqual(order, ["outer in", "inner in", "outer in", "inner in"], "both calls went into the interceptors; neither came out with an answer");
});

test("alone: a client that resets the stream while an interceptor awaits gets its call ended, not left waiting for a body that never comes", async (t) => {
  let outcome!: (what: string) => void;
  const ended = new Promise<string>((resolve) => {
    outcome = resolve;
  });
  const implementation = {
    async *watch() {
      t.fail("a reset request never reaches the implementation");
      yield create(WatchResponseSchema, {});
    },
  };
  const options = aloneOptions(implementation, []);
  // Waits for I/O before the call goes on (as a token check against a remote service would); the
  // client resets meanwhile, and the call's signal says when the server has seen it.
  const waitsForReset: Interceptor = (next) => async (req) => {
    if (!req.signal.aborted) await new Promise((r) => req.signal.addEventListener("abort", r, { once: true }));
    try {
      const res = await next(req);
      outcome("answered");
      return res;
    } catch (err) {
      outcome(ConnectError.from(err).code === Code.Canceled ? "canceled" : `failed: ${ConnectError.from(err).message}`);
      throw err;
    }
  };
  const url = await behindBareServer(t, watchFastPath({ ...options, interceptors: [...options.interceptors, waitsForReset] }, "Watch"));
  const session = http2.connect(url);
  t.teardown(() => session.destroy());
  const request = session.request({ ":method": "POST", ":path": WATCH, ...STREAM_PROTO });
  request.on("error", () => undefined);
  request.write(watchBody(TABLE).subarray(0, 3)); // part of the body, never its end
  await new Promise((r) => setTimeout(r, 100));
  request.close(http2.constants.NGHTTP2_CANCEL);
  const result = await Promise.race([ended, new Promise<string>((r) => setTimeout(() => r("still waiting after 5 s"), 5000))]);
  t.is(result, "canceled");
});

test("alone: it takes binary Connect Watch over HTTP/2 through the interceptors, encodes each message once for every stream, and leaves every other request", async (t) => {
  const order: string[] = [];
  const shared = create(WatchResponseSchema, { cursor: "7" });
  let serialized = 0;
  // Counts the encodings of the shared message: its cursor is read once per encoding.
  Object.defineProperty(shared, "cursor", {
    get: () => {
      serialized++;
      return "7";
    },
  });
  const implementation = {
    async *watch(req: { table: string }) {
      if (req.table === "Missing") throw new ConnectError("no such table", Code.NotFound);
      yield shared;
    },
  };
  const fast = watchFastPath(aloneOptions(implementation, order), "Watch");
  const url = await behindBareServer(t, fast);

  const first = await postHttp2(url, WATCH, STREAM_PROTO, watchBody("Taken"));
  const encoded = serialized;
  t.true(encoded > 0);
  const answers = [first, ...(await Promise.all([1, 2, 3].map(() => postHttp2(url, WATCH, STREAM_PROTO, watchBody("Taken")))))];
  for (const a of answers) {
    t.is(a.status, 200);
    const [message, end] = envelopes(a.body);
    t.is(fromBinary(WatchResponseSchema, message?.data ?? Buffer.alloc(0)).cursor, "7");
    t.deepEqual(JSON.parse(end?.data.toString() ?? ""), {});
  }
  t.is(serialized, encoded, "three more streams of the same message, no more encoding");
  t.deepEqual(order.slice(0, 4), ["outer in", "inner in", "inner out", "outer out"]);

  const missing = await postHttp2(url, WATCH, STREAM_PROTO, watchBody("Missing"));
  t.is(missing.status, 200);
  t.like(JSON.parse(envelopes(missing.body)[0]?.data.toString() ?? ""), { error: { code: "not_found", message: "no such table" } });

  const left: [string, string, http2.OutgoingHttpHeaders][] = [
    ["JSON", WATCH, { "content-type": "application/connect+json" }],
    ["gRPC", WATCH, { "content-type": "application/grpc+proto" }],
    ["gRPC-Web", WATCH, { "content-type": "application/grpc-web+proto" }],
    ["a compressed stream", WATCH, { ...STREAM_PROTO, "connect-content-encoding": "gzip" }],
    ["a bad timeout", WATCH, { ...STREAM_PROTO, "connect-timeout-ms": "soon" }],
    ["protocol version 2", WATCH, { ...STREAM_PROTO, "connect-protocol-version": "2" }],
    ["another method", "/populus.v1.JobService/Reserve", STREAM_PROTO],
  ];
  for (const [what, path, headers] of left) t.is((await postHttp2(url, path, headers, watchBody("Taken"))).status, 418, `${what} is left to connect-es`);
});
