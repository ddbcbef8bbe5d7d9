/**
 * An HTTP/2 proxy between a client and populus-server that passes every call on and, for the calls
 * a test picks, waits for the server's whole answer and then drops the client's connection instead
 * of passing the answer back: the server did the work, the client never hears of it. That is the
 * fault a request id exists for (a retried call must not do the work twice).
 *
 * Requests are read whole before they go upstream, so it serves unary calls and server streams
 * (every call the SDK makes), not client streams.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";

export interface DroppingProxy {
  /** The URL clients connect to instead of the server's. */
  readonly url: string;
  /** Every request body seen, by path (e.g. "/populus.v1.JobService/Reserve"), in arrival order. */
  readonly bodies: ReadonlyMap<string, readonly Buffer[]>;
  /** Answers the server gave that the client never got. */
  readonly dropped: number;
  close(): Promise<void>;
}

/** Headers as passed on: HTTP/2 pseudo-headers and ordinary ones, no symbols. */
function forwardable(headers: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name !== ":status"));
}

/** `drop(path, nth)` picks the calls to drop: nth counts calls to that path from 1. */
export async function startDroppingProxy(upstreamUrl: string, drop: (path: string, nth: number) => boolean): Promise<DroppingProxy> {
  const upstream = http2.connect(upstreamUrl);
  upstream.on("error", () => undefined);
  const bodies = new Map<string, Buffer[]>();
  let dropped = 0;
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  server.on("stream", (client, headers) => {
    const path = String(headers[":path"]);
    const chunks: Buffer[] = [];
    client.on("data", (c: Buffer) => chunks.push(c));
    client.on("error", () => undefined);
    client.on("end", () => {
      const body = Buffer.concat(chunks);
      const seen = bodies.get(path) ?? [];
      seen.push(body);
      bodies.set(path, seen);
      const dropThis = drop(path, seen.length);
      const call = upstream.request(forwardable(headers));
      call.on("error", () => client.destroy());
      client.on("close", () => call.close());
      call.end(body);
      if (dropThis) {
        // Read the whole answer (so the server finished the call), then cut the client off.
        call.on("data", () => undefined);
        call.on("end", () => {
          dropped++;
          client.session?.destroy();
        });
        return;
      }
      call.on("response", (h) => client.respond(forwardable(h)));
      call.on("data", (c: Buffer) => client.write(c));
      call.on("end", () => client.end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bodies,
    get dropped() {
      return dropped;
    },
    close: async () => {
      upstream.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open client sessions would hold close() until they end.
        for (const s of sessions) s.destroy();
      });
    },
  };
}
