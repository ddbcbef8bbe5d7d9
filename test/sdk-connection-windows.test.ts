/**
 * The SDK's connections open wide HTTP/2 receive windows (client-sdk/src/session-manager.ts), so
 * a server can send a Watch stream's events ahead of a client busy with other work instead of
 * waiting for it to read each 64 KiB. Pinned against a node:http2 server that writes to streams
 * the client never reads: how much the server gets out is exactly what the windows allow.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { Http2SessionManager } from "@connectrpc/connect-node";
import test from "ava";
import { CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES, WideWindowSessionManager } from "../client-sdk/dist/session-manager.js";
import { sleep, until } from "./helpers/jobs-client.js";

const CHUNK = 16 * 1024;
/** Per stream: more than HTTP/2's default window of 65,535 bytes, less than the SDK's stream window. */
const CHUNKS_PER_STREAM = 60;

/** A server that answers every stream with CHUNKS_PER_STREAM chunks and counts the bytes node:http2 got out to the socket. */
async function sendingServer(t: import("ava").ExecutionContext) {
  let flushed = 0;
  const server = http2.createServer();
  // The client tears its connection down at the end with streams unanswered: not an error here.
  server.on("session", (session) => session.on("error", () => undefined));
  server.on("stream", (stream) => {
    stream.on("error", () => undefined);
    stream.respond({ ":status": 200 });
    for (let i = 0; i < CHUNKS_PER_STREAM; i++) stream.write(Buffer.alloc(CHUNK, 1), () => (flushed += CHUNK));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, flushed: () => flushed };
}

/** Opens `count` streams on one connection of `manager` and never reads them. */
async function openUnread(manager: Http2SessionManager, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const stream = await manager.request("POST", "/unread", {}, {});
    stream.on("error", () => undefined); // torn down with the connection at the end
    stream.end();
  }
}

test("the SDK's windows let a server send a stream ahead of a client that does not read", async (t) => {
  t.true(CHUNK * CHUNKS_PER_STREAM < STREAM_WINDOW_BYTES);
  const server = await sendingServer(t);
  const manager = new WideWindowSessionManager(server.url, {});
  t.teardown(() => manager.abort());
  await openUnread(manager, 1);
  await until("the server got the whole answer out", async () => server.flushed() === CHUNK * CHUNKS_PER_STREAM, 10_000, 20);
  t.pass();
});

test("the connection's window, shared by its streams, is opened to CONNECTION_WINDOW_BYTES", async (t) => {
  // What the client grants is the server's to send: read on the server's side of the connection.
  // (node:http2 reopens a connection's window as soon as its data arrives, read or not, so an
  // idle client never shows the difference; a client busy elsewhere, the event tailers of bench
  // scenario 5, lets the server send only a window's worth per turn of its event loop.)
  const sessions: http2.ServerHttp2Session[] = [];
  const server = http2.createServer();
  server.on("session", (session) => {
    session.on("error", () => undefined);
    sessions.push(session);
  });
  server.on("stream", (stream) => {
    stream.on("error", () => undefined);
    stream.respond({ ":status": 200 });
    stream.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const windowsSeen = async (manager: Http2SessionManager) => {
    t.teardown(() => manager.abort());
    const stream = await manager.request("POST", "/", {}, {});
    stream.end();
    stream.resume();
    await new Promise((resolve) => stream.on("close", resolve));
    const session = sessions.at(-1)!;
    await until("the client's settings and window update arrived", async () => session.remoteSettings.initialWindowSize !== undefined, 5000, 10);
    // The client's WINDOW_UPDATE went out before its request's end, which the server answered.
    return { stream: session.remoteSettings.initialWindowSize, connection: session.state.remoteWindowSize };
  };
  t.deepEqual(await windowsSeen(new WideWindowSessionManager(url, {})), { stream: STREAM_WINDOW_BYTES, connection: CONNECTION_WINDOW_BYTES });
  t.deepEqual(await windowsSeen(new Http2SessionManager(url)), { stream: 65_535, connection: 65_535 });
});

test("control: with HTTP/2's default windows the same server stalls at the first 64 KiB", async (t) => {
  const server = await sendingServer(t);
  const manager = new Http2SessionManager(server.url);
  t.teardown(() => manager.abort());
  await openUnread(manager, 1);
  await sleep(500);
  // The default window (65,535 bytes) less what node:http2 reads into the unread stream's buffer.
  t.true(server.flushed() <= 128 * 1024, `flushed ${server.flushed()} bytes`);
});
