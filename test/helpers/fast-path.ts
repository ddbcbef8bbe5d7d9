/**
 * For the fast-path tests (unary-fast-path.test.ts, watch-fast-path.test.ts): a fast path on its
 * own, behind a bare HTTP/2 server that answers 418 for every request it leaves; interceptors
 * that record the order they run in; and a POST over HTTP/1.1, which connect-es answers.
 */
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { createContextValues, type Interceptor } from "@connectrpc/connect";
import { pino } from "pino";
import { JobService } from "../../client-sdk/dist/gen/populus/v1/job_service_pb.js";

/** The bare server's URL; it closes when the test ends. */
export async function behindBareServer(
  t: { teardown(fn: () => Promise<void>): void },
  fast: (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => boolean,
): Promise<string> {
  const bare = http2.createServer((req, res) => {
    if (fast(req, res)) return;
    res.writeHead(418);
    res.end();
  });
  await new Promise<void>((resolve) => bare.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((resolve) => bare.close(() => resolve())));
  return `http://127.0.0.1:${(bare.address() as net.AddressInfo).port}`;
}

/** An interceptor that pushes "<name> in" and "<name> out" to `order` around the call. */
export function recordingInterceptor(order: string[], name: string): Interceptor {
  return (next) => async (req) => {
    order.push(`${name} in`);
    const res = await next(req);
    order.push(`${name} out`);
    return res;
  };
}

export interface Http1Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

/** One POST over HTTP/1.1 (never the fast paths, which take HTTP/2 only), answered with its status, content type and body. */
export function postHttp1(url: string, headers: http.OutgoingHttpHeaders, body: Uint8Array): Promise<Http1Answer> {
  return new Promise<Http1Answer>((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers: { ...headers, "content-length": body.byteLength } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    // A server that answers and closes while a large body is still going up fails the socket
    // with EPIPE after the answer has been read: the answer is what counts.
    req.on("socket", (socket) => socket.on("error", () => undefined));
    req.end(body);
  });
}

/** A fast path's options for JobService with `implementation`, behind two interceptors that record into `order`. */
export function aloneOptions(implementation: object, order: string[]) {
  return {
    service: JobService,
    implementation: implementation as never,
    interceptors: [recordingInterceptor(order, "outer"), recordingInterceptor(order, "inner")],
    readMaxBytes: 1 << 20,
    contextValues: () => createContextValues(),
    shutdownSignal: new AbortController().signal,
    logger: pino({ level: "silent" }),
  };
}
