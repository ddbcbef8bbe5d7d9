/**
 * The SDK reads Watch streams itself (client-sdk/src/server-stream.ts), not through connect-es's
 * pipeline. The Watch tests (sdk-watch, watch) run it against real servers; these pin the wire
 * cases a real server rarely sends, against a bare node:http2 server that answers as told: the
 * end-of-stream message (trailers, an error), a stream cut short, an HTTP error, a content type or
 * compression the SDK did not ask for, an abort, a deadline, and flow control: a reader that stops
 * reading holds the server back by the stream's window, not by this process's memory.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import test from "ava";
import { resolveConnectOptions } from "../client-sdk/dist/config.js";
import { WatchRequestSchema, WatchResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { openConnection } from "../client-sdk/dist/rpc.js";
import { STREAM_WINDOW_BYTES } from "../client-sdk/dist/session-manager.js";

type Answer = (stream: http2.ServerHttp2Stream, table: string) => void;

/** A node:http2 server whose Watch answers are `answer`'s, chosen by the request's table; the headers of each request are kept. */
async function fakeServer(t: { teardown(fn: () => void): void }, answer: Answer) {
  const requests: http2.IncomingHttpHeaders[] = [];
  const server = http2.createServer();
  server.on("stream", (stream, headers) => {
    requests.push(headers);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      const request = fromBinary(WatchRequestSchema, body.subarray(5, 5 + body.readUInt32BE(1)));
      answer(stream, request.table);
    });
    stream.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const connection = openConnection(resolveConnectOptions({ url }));
  t.teardown(() => {
    connection.close();
    server.close();
  });
  return { rpc: connection.rpc, requests };
}

/** One enveloped message: flags, length, bytes. */
function envelope(flags: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(data.byteLength, 1);
  return Buffer.concat([head, data]);
}

const message = (cursor: string, padding = "") => envelope(0, toBinary(WatchResponseSchema, create(WatchResponseSchema, { cursor: cursor + padding })));
const endStream = (json: object) => envelope(2, Buffer.from(JSON.stringify(json)));
const OK_HEADERS = { ":status": 200, "content-type": "application/connect+proto" };

async function collect(iterable: AsyncIterable<{ cursor: string }>): Promise<{ cursors: string[]; error: unknown }> {
  const cursors: string[] = [];
  try {
    for await (const m of iterable) cursors.push(m.cursor);
    return { cursors, error: undefined };
  } catch (error) {
    return { cursors, error };
  }
}

test("messages arrive in order, the request is the binary Connect stream form, and the end's metadata is the trailer", async (t) => {
  const { rpc, requests } = await fakeServer(t, (stream, table) => {
    stream.respond(OK_HEADERS);
    // Split across writes, one of them inside a message, as TCP may deliver it.
    const all = Buffer.concat([message(`${table}-1`), message(`${table}-2`), message(`${table}-3`), endStream({ metadata: { "x-end": ["yes"] } })]);
    stream.write(all.subarray(0, 7));
    stream.end(all.subarray(7));
  });
  let trailer: Headers | undefined;
  const { cursors, error } = await collect(rpc.watch({ table: "T" }, { onTrailer: (h) => (trailer = h) }));
  t.is(error, undefined);
  t.deepEqual(cursors, ["T-1", "T-2", "T-3"]);
  t.is(trailer?.get("x-end"), "yes");
  t.is(requests[0]?.["content-type"], "application/connect+proto");
  t.is(requests[0]?.[":path"], "/populus.v1.JobService/Watch");
  t.is(requests[0]?.["connect-protocol-version"], "1");
});

test("an error in the end's message is the typed error it names, after the messages before it", async (t) => {
  const { rpc } = await fakeServer(t, (stream) => {
    stream.respond(OK_HEADERS);
    stream.end(Buffer.concat([message("1"), endStream({ error: { code: "resource_exhausted", message: "the reader fell behind" } })]));
  });
  const { cursors, error } = await collect(rpc.watch({ table: "T" }));
  t.deepEqual(cursors, ["1"]);
  t.is((error as ConnectError).code, Code.ResourceExhausted);
  t.regex((error as Error).message, /the reader fell behind/);
});

test("a stream that ends without its end message, or inside a message, is a protocol error (INVALID_ARGUMENT)", async (t) => {
  const { rpc } = await fakeServer(t, (stream, table) => {
    stream.respond(OK_HEADERS);
    const m = message("1");
    stream.end(table === "cut" ? Buffer.concat([m, m.subarray(0, 6)]) : m);
  });
  for (const table of ["no-end", "cut"]) {
    const { cursors, error } = await collect(rpc.watch({ table }));
    t.deepEqual(cursors, ["1"], table);
    t.is((error as ConnectError).code, Code.InvalidArgument, table);
  }
  const missing = await collect(rpc.watch({ table: "no-end" }));
  t.regex((missing.error as Error).message, /missing EndStreamResponse/);
});

test("an HTTP error is its code, and a content type or compression the SDK did not ask for is refused", async (t) => {
  const { rpc } = await fakeServer(t, (stream, table) => {
    if (table === "http-503") {
      stream.respond({ ":status": 503, "content-type": "text/plain" });
      stream.end("busy");
    } else if (table === "json") {
      stream.respond({ ":status": 200, "content-type": "application/connect+json" });
      stream.end(endStream({}));
    } else {
      stream.respond({ ...OK_HEADERS, "connect-content-encoding": "gzip" });
      stream.end(Buffer.concat([envelope(1, Buffer.from("not really gzip")), endStream({})]));
    }
  });
  t.is(((await collect(rpc.watch({ table: "http-503" }))).error as ConnectError).code, Code.Unavailable);
  t.is(((await collect(rpc.watch({ table: "json" }))).error as ConnectError).code, Code.Internal);
  const compressed = await collect(rpc.watch({ table: "gzip" }));
  t.is((compressed.error as ConnectError).code, Code.Internal);
  t.deepEqual(compressed.cursors, []);
});

test("an abort ends the stream CANCELED at once and resets it for the server; a deadline is DEADLINE_EXCEEDED", async (t) => {
  let serverSawReset: Promise<number> | undefined;
  const { rpc, requests } = await fakeServer(t, (stream) => {
    stream.respond(OK_HEADERS);
    stream.write(message("1"));
    serverSawReset = new Promise((resolve) => stream.on("close", () => resolve(stream.rstCode)));
    // Nothing more: the stream stays open until the client gives up.
  });
  const abort = new AbortController();
  const cursors: string[] = [];
  const started = performance.now();
  const error = await t.throwsAsync(
    (async () => {
      for await (const m of rpc.watch({ table: "T" }, { signal: abort.signal })) {
        cursors.push(m.cursor);
        setTimeout(() => abort.abort(), 100);
      }
    })(),
  );
  t.is((error as unknown as ConnectError).code, Code.Canceled);
  t.deepEqual(cursors, ["1"]);
  t.true(performance.now() - started < 3000);
  t.is(await serverSawReset, http2.constants.NGHTTP2_CANCEL);

  const timedOut = await collect(rpc.watch({ table: "T" }, { timeoutMs: 300 }));
  t.is((timedOut.error as ConnectError).code, Code.DeadlineExceeded);
  t.is(requests.at(-1)?.["connect-timeout-ms"], "300");

  // Aborted before it began: CANCELED, and nothing reaches the server.
  const sent = requests.length;
  const early = await collect(rpc.watch({ table: "T" }, { signal: AbortSignal.abort() }));
  t.is((early.error as ConnectError).code, Code.Canceled);
  await new Promise((r) => setTimeout(r, 200));
  t.is(requests.length, sent);
});

test("a message larger than the stream's window, in many chunks, arrives whole, between small ones", async (t) => {
  const big = "y".repeat(3 * STREAM_WINDOW_BYTES);
  const { rpc } = await fakeServer(t, (stream) => {
    stream.respond(OK_HEADERS);
    const all = Buffer.concat([message("a"), message("b", big), message("c"), endStream({})]);
    // Written in 1000-byte pieces: thousands of chunks for the big one.
    let at = 0;
    const writeMore = () => {
      while (at < all.length) {
        const piece = all.subarray(at, at + 1000);
        at += piece.length;
        if (!stream.write(piece)) {
          stream.once("drain", writeMore);
          return;
        }
      }
      stream.end();
    };
    writeMore();
  });
  const { cursors, error } = await collect(rpc.watch({ table: "T" }));
  t.is(error, undefined);
  t.deepEqual(cursors, ["a", `b${big}`, "c"]);
});

test("a reader that stops reading holds the server back by the stream's window; reading again lets every message through, in order", async (t) => {
  const TOTAL = 2000;
  const padding = "x".repeat(4096); // about 4 KiB a message: 2,000 of them are 8 MiB, far past the 1 MiB stream window
  let written = 0;
  let serverDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (serverDone = resolve));
  const { rpc } = await fakeServer(t, (stream) => {
    stream.respond(OK_HEADERS);
    const writeMore = () => {
      while (written < TOTAL) {
        const more = stream.write(message(String(written), padding));
        written++;
        if (!more) {
          stream.once("drain", writeMore);
          return;
        }
      }
      stream.end(endStream({}));
      serverDone();
    };
    writeMore();
  });
  const iterator = rpc.watch({ table: "T" })[Symbol.asyncIterator]();
  const first = await iterator.next();
  t.is(first.value?.cursor, `0${padding}`);
  // The reader pauses here. The server can only get so far ahead: the stream's receive window,
  // what the SDK queues before it pauses the stream, and the server's own write buffer.
  await new Promise((r) => setTimeout(r, 500));
  const ahead = written;
  await new Promise((r) => setTimeout(r, 300));
  t.is(written, ahead, "the server is held back while the reader does not read");
  t.true(ahead < TOTAL / 2, `the server wrote ${ahead} of ${TOTAL} messages ahead of a reader that read one`);
  t.true(ahead * (padding.length + 10) < 4 * STREAM_WINDOW_BYTES, `${ahead} messages are more than a few windows`);
  let next = 1;
  for (;;) {
    const r = await iterator.next();
    if (r.done === true) break;
    t.is(r.value.cursor, `${next}${padding}`);
    next++;
  }
  await finished;
  t.is(next, TOTAL);
});
