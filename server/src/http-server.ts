/**
 * One TCP port for every protocol: gRPC needs HTTP/2, while an operator's
 * `curl` (Connect JSON) and browsers (gRPC-Web) speak HTTP/1.1. Node's
 * plaintext http2 server accepts only prior-knowledge HTTP/2, so each new
 * connection is sniffed: the HTTP/2 client preface ("PRI * HTTP/2.0") goes to
 * the http2 server, anything else to the http1 server. Both run the same
 * request handler.
 *
 * With TLS the same two servers sit behind a TLS listener, and ALPN (agreed
 * during the handshake) decides instead of sniffing: "h2" goes to the http2
 * server, "http/1.1" or no ALPN to the http1 server. Plaintext is refused
 * there: its bytes are not a TLS ClientHello, so the handshake fails.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "pino";

type RequestHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

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

/**
 * Memory (MB) one HTTP/2 connection may hold in buffered frames before new
 * streams on it are refused with ENHANCE_YOUR_CALM. Node's default, 10 MB,
 * is below one request of the largest accepted size (16 MiB, limits.ts): a
 * client's other calls on the connection of a large request would be refused
 * while it is read. 64 MB leaves room for a few at once, and still bounds a connection.
 */
const H2_SESSION_MEMORY_MB = 64;

/** A client that opens a TCP connection and never completes the TLS handshake is dropped after this long. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The server's certificate (chain) and private key, PEM. */
export interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** Starts listening; rejects with the listen error (e.g. EADDRINUSE). */
export async function listen(options: {
  host: string;
  port: number;
  handler: RequestHandler;
  logger: Logger;
  /** Serve TLS (HTTP/2 and HTTP/1.1 by ALPN) instead of plaintext. */
  tls?: TlsFiles;
}): Promise<ListeningServer> {
  const { handler, logger } = options;
  const h1 = http.createServer(handler as http.RequestListener);
  // Connect's own keep-alive pings are not needed: clients drive liveness.
  const h2 = http2.createServer({ maxSessionMemory: H2_SESSION_MEMORY_MB }, handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
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

  /** Tracks a connection for close(); its protocol is set once decided. */
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      inFlight.delete(socket);
      protocolOf.delete(socket);
    });
    socket.on("error", (err) => logger.debug({ err }, "socket error"));
  };
  /** Hands a connection to the server of its protocol. */
  const dispatch = (socket: net.Socket, protocol: "h1" | "h2") => {
    protocolOf.set(socket, protocol);
    if (protocol === "h1") inFlight.set(socket, new Set());
    (protocol === "h2" ? h2 : h1).emit("connection", socket);
  };
  /** TCP connections still in the TLS handshake, by remote address and port: not in `sockets` yet, so close() ends them itself. */
  const handshaking = new Map<string, net.Socket>();
  const peerOf = (socket: net.Socket) => `${socket.remoteAddress}|${socket.remotePort}`;

  const sniff = (socket: net.Socket) => {
    track(socket);
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, HTTP2_PREFACE.length);
      const isHttp2 = head.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n));
      if (isHttp2 && head.length < HTTP2_PREFACE.length) return; // need more bytes to decide
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      dispatch(socket, isHttp2 ? "h2" : "h1");
      process.nextTick(() => socket.resume());
    };
    socket.on("data", onData);
  };

  let tcp: net.Server;
  if (options.tls === undefined) {
    tcp = net.createServer(sniff);
  } else {
    const secure = tls.createServer(
      { cert: options.tls.cert, key: options.tls.key, ALPNProtocols: ["h2", "http/1.1"], handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS },
      (socket) => {
        track(socket);
        dispatch(socket, socket.alpnProtocol === "h2" ? "h2" : "h1");
      },
    );
    secure.on("connection", (raw: net.Socket) => {
      const peer = peerOf(raw);
      handshaking.set(peer, raw);
      raw.once("close", () => {
        if (handshaking.get(peer) === raw) handshaking.delete(peer);
      });
    });
    // From here on the TLS socket is tracked (track() above); its TCP socket closes with it.
    secure.on("secureConnection", (socket: tls.TLSSocket) => handshaking.delete(peerOf(socket)));
    // A plaintext client, a bad certificate on the client's side, a port scanner: not ours to log loudly.
    secure.on("tlsClientError", (err) => logger.debug({ err }, "TLS handshake failed"));
    tcp = secure;
  }

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
      for (const raw of handshaking.values()) raw.destroy(); // nothing is in flight before the handshake
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
