/**
 * A request body that does not decode is answered INVALID_ARGUMENT on every protocol (Connect
 * unary and streaming, gRPC, gRPC-web; binary and JSON), with a message that says so, and the
 * server goes on serving. connect-es alone answers binary ones INTERNAL
 * (server/src/service/undecodable-bodies.ts).
 */
import type http2 from "node:http2";
import test from "ava";
import { postHttp2, type RawAnswer } from "./helpers/raw-http2.js";
import { sqliteServerPerFile } from "./helpers/sqlite-server.js";

const server = sqliteServerPerFile(test);

/** A ReserveRequest whose field 1 (table, length-delimited) claims more bytes than follow: "premature EOF". */
const TRUNCATED = Buffer.from([0x0a, 0x7f, 0x41]);
/** Wire type 7 does not exist: "illegal tag"/"cannot skip". */
const ILLEGAL = Buffer.from([0x0f, 0x01]);

function envelope(flag: number, data: Buffer): Buffer {
  const out = Buffer.alloc(5 + data.length);
  out[0] = flag;
  out.writeUInt32BE(data.length, 1);
  data.copy(out, 5);
  return out;
}

/** The envelopes of a body: [flag, data][]. */
function envelopes(body: Buffer): [number, Buffer][] {
  const out: [number, Buffer][] = [];
  for (let at = 0; at + 5 <= body.length; ) {
    const length = body.readUInt32BE(at + 1);
    out.push([body[at] as number, body.subarray(at + 5, at + 5 + length)]);
    at += 5 + length;
  }
  return out;
}

/** One HTTP/2 POST over cleartext. */
function post(path: string, headers: http2.OutgoingHttpHeaders, body: Buffer): Promise<RawAnswer> {
  return postHttp2(server().url, path, headers, body);
}

const RESERVE = "/populus.v1.JobService/Reserve";
const WATCH = "/populus.v1.JobService/Watch";

for (const [name, bytes] of [
  ["truncated", TRUNCATED],
  ["illegal wire type", ILLEGAL],
] as const) {
  test(`Connect unary, binary (${name}): HTTP 400 invalid_argument naming the message type`, async (t) => {
    const a = await post(RESERVE, { "content-type": "application/proto", "connect-protocol-version": "1" }, bytes);
    t.is(a.status, 400);
    const error = JSON.parse(a.body.toString()) as { code: string; message: string };
    t.is(error.code, "invalid_argument");
    t.regex(error.message, /^the request body did not decode as a populus\.v1\.ReserveRequest message in protobuf binary \(.+\)$/);
    t.is(Number(a.headers["content-length"]), a.body.length, "content-length matches the rewritten body");
  });

  test(`gRPC, binary (${name}): grpc-status 3 with the message`, async (t) => {
    const a = await post(RESERVE, { "content-type": "application/grpc", te: "trailers" }, envelope(0, bytes));
    const status = a.trailers["grpc-status"] ?? a.headers["grpc-status"];
    const message = decodeURIComponent(String(a.trailers["grpc-message"] ?? a.headers["grpc-message"]));
    t.is(status, "3", message);
    t.regex(message, /did not decode as a populus\.v1\.ReserveRequest message/);
  });

  test(`gRPC-web, binary (${name}): the trailer envelope says grpc-status 3`, async (t) => {
    const a = await post(RESERVE, { "content-type": "application/grpc-web+proto" }, envelope(0, bytes));
    const trailer = envelopes(a.body).find(([flag]) => flag === 0x80);
    t.truthy(trailer, a.body.toString());
    const text = trailer![1].toString();
    t.regex(text, /grpc-status: 3\r\n/);
    t.regex(decodeURIComponent(text), /did not decode as a populus\.v1\.ReserveRequest message/);
  });

  test(`Connect streaming (Watch), binary (${name}): the end-of-stream error is invalid_argument`, async (t) => {
    const a = await post(WATCH, { "content-type": "application/connect+proto", "connect-protocol-version": "1" }, envelope(0, bytes));
    const end = envelopes(a.body).find(([flag]) => flag === 0x02);
    t.truthy(end, a.body.toString());
    const error = (JSON.parse(end![1].toString()) as { error: { code: string; message: string } }).error;
    t.is(error.code, "invalid_argument");
    t.regex(error.message, /did not decode as a populus\.v1\.WatchRequest message/);
  });

  test(`gRPC streaming (Watch), binary (${name}): grpc-status 3`, async (t) => {
    const a = await post(WATCH, { "content-type": "application/grpc", te: "trailers" }, envelope(0, bytes));
    t.is(a.trailers["grpc-status"] ?? a.headers["grpc-status"], "3");
  });
}

test("gRPC: an envelope flagged compressed in a request that names no compression is invalid_argument", async (t) => {
  const a = await post(RESERVE, { "content-type": "application/grpc", te: "trailers" }, envelope(1, Buffer.from([0x0a, 0x01, 0x41])));
  t.is(a.trailers["grpc-status"] ?? a.headers["grpc-status"], "3");
  t.regex(decodeURIComponent(String(a.trailers["grpc-message"] ?? a.headers["grpc-message"])), /flagged compressed, but the request names no compression/);
});

test("JSON that does not decode stays invalid_argument, and a server fault would stay internal: only parse failures are rewritten", async (t) => {
  const a = await post(RESERVE, { "content-type": "application/json", "connect-protocol-version": "1" }, Buffer.from("{"));
  t.is(a.status, 400);
  t.is((JSON.parse(a.body.toString()) as { code: string }).code, "invalid_argument");
  // A well-formed request still answers as before: NOT_FOUND for a table never refreshed.
  const ok = await post(RESERVE, { "content-type": "application/json", "connect-protocol-version": "1" }, Buffer.from('{"table":"Never","maxJobs":1}'));
  t.is(ok.status, 404);
  t.is((JSON.parse(ok.body.toString()) as { code: string }).code, "not_found");
});

test("after every malformed body the server still serves", async (t) => {
  await post(RESERVE, { "content-type": "application/proto" }, TRUNCATED);
  const a = await post("/populus.v1.JobService/ListTables", { "content-type": "application/json", "connect-protocol-version": "1" }, Buffer.from("{}"));
  t.is(a.status, 200);
});
