/**
 * One HTTP/2 POST over cleartext on a session of its own, answered with everything the server
 * sent: for tests that check the bytes of an answer rather than what a client library makes of it.
 */
import http2 from "node:http2";

export interface RawAnswer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

export async function postHttp2(baseUrl: string, path: string, headers: http2.OutgoingHttpHeaders, body: Uint8Array): Promise<RawAnswer> {
  const session = http2.connect(baseUrl);
  // A server that answers and closes while the body is still going up (a body over its limit)
  // fails the session's socket with EPIPE: the answer, or the stream's own error, is what counts.
  session.on("error", () => undefined);
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, ...headers });
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on("response", (h) => {
        responseHeaders = h;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("error", reject);
      stream.on("close", () => resolve({ status: Number(responseHeaders[":status"]), headers: responseHeaders, trailers, body: Buffer.concat(chunks) }));
      stream.end(body);
    });
  } finally {
    session.close();
  }
}
