/**
 * One TCP port for every protocol: gRPC needs HTTP/2, while an operator's
 * `curl` (Connect JSON) and browsers (gRPC-Web) speak HTTP/1.1. Node's
 * plaintext http2 server accepts only prior-knowledge HTTP/2, so each new
 * connection is sniffed: the HTTP/2 client preface ("PRI * HTTP/2.0") goes to
 * the http2 server, anything else to the http1 server. Both run the same
 * request handler.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { Logger } from "pino";

type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** A listening server on one port, with a graceful close. */
export interface ListeningServer {
  /** The port actually bound (differs from the requested one when that was 0). */
  readonly port: number;
  /** The host bound. */
  readonly host: string;
  /**
   * Stops accepting connections, lets in-flight requests finish for up to
   * graceMs, then destroys whatever is still open.
   */
  close(graceMs: number): Promise<void>;
}

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0");

/** Starts listening; rejects with the listen error (e.g. EADDRINUSE). */
export async function listen(options: {
  host: string;
  port: number;
  handler: RequestHandler;
  logger: Logger;
}): Promise<ListeningServer> {
  const { handler, logger } = options;
  const h1 = http.createServer(handler as http.RequestListener);
  // Connect's own keep-alive pings are not needed: clients drive liveness.
  const h2 = http2.createServer({}, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  /** Which server each sniffed socket went to; absent while its first bytes are awaited. */
  const protocolOf = new Map<net.Socket, "h1" | "h2">();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  h2.on("sessionError", (err) => logger.debug({ err }, "http2 session error"));
  h1.on("clientError", (err, socket) => {
    logger.debug({ err }, "http1 client error");
    socket.destroy();
  });

  // HTTP/1.1 requests in flight per socket. h1 never listens itself (sockets
  // reach it through emit("connection")), and Node's http.Server tracks
  // connections only for servers that listen, so h1.closeIdleConnections()
  // sees none: an idle keep-alive socket then held SIGTERM until the 5 s
  // keep-alive timeout (measured 6.0 s; test/server-start.test.ts pins the fix).
  const inFlight = new Map<net.Socket, Set<http.ServerResponse>>();
  let closing = false;
  /** Ends a socket once its last response is written (destroySoon flushes first; destroy() would drop it). */
  const closeWhenIdle = (socket: net.Socket) => {
    const responses = inFlight.get(socket);
    if (responses === undefined || responses.size === 0) {
      socket.destroySoon();
      return;
    }
    // Responses not started yet say "Connection: close", so the client does not reuse the socket.
    for (const res of responses) if (!res.headersSent) res.shouldKeepAlive = false;
  };
  h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    const responses = inFlight.get(socket) ?? new Set<http.ServerResponse>();
    inFlight.set(socket, responses.add(res));
    if (closing) res.shouldKeepAlive = false;
    res.once("close", () => {
      responses.delete(res);
      if (closing) closeWhenIdle(socket);
    });
  });

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      inFlight.delete(socket);
      protocolOf.delete(socket);
    });
    socket.on("error", (err) => logger.debug({ err }, "socket error"));
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, HTTP2_PREFACE.length);
      const isHttp2 = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (isHttp2 && head.length < HTTP2_PREFACE.length) return; // need more bytes to decide
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      protocolOf.set(socket, isHttp2 ? "h2" : "h1");
      if (!isHttp2) inFlight.set(socket, new Set());
      (isHttp2 ? h2 : h1).emit("connection", socket);
      process.nextTick(() => socket.resume());
    };
    socket.on("data", onData);
  });

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port, options.host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;

  return {
    port: address.port,
    host: options.host,
    async close(graceMs: number) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      closing = true;
      for (const session of sessions) session.close(); // GOAWAY: in-flight streams may finish
      for (const socket of sockets) {
        const protocol = protocolOf.get(socket);
        // Not sniffed yet (no byte sent): nothing is in flight on it.
        if (protocol === undefined) socket.destroy();
        // HTTP/1.1: idle sockets close now, busy ones after their last response (the "request" listener above).
        else if (protocol === "h1") closeWhenIdle(socket);
      }
      const deadline = setTimeout(() => {
        for (const session of sessions) session.destroy();
        for (const socket of sockets) socket.destroy();
      }, graceMs);
      deadline.unref();
      await closed;
      clearTimeout(deadline);
    },
  };
}
