/**
 * Refuses a Watch call with RESOURCE_EXHAUSTED at the HTTP layer, before connect-es takes it, when
 * the replica already serves as many Watch streams as it may (limits.ts). connect-es builds its
 * per-call state (the request as a web request, a context with its headers and abort signals, the
 * body and response streams, the interceptors' closures) before any interceptor can refuse the
 * call: about 60 KB a call, so a burst of 5,000 Watch calls over the cap took the server to
 * 355-364 MB, most of it for calls that were refused (bench scenario 8).
 *
 * The refusal is written as each protocol writes an error at the start of a server stream:
 * - Connect (application/connect+proto, +json): HTTP 200 and an end-of-stream message whose
 *   JSON carries the error (https://connectrpc.com/docs/protocol#error-end-stream);
 * - gRPC and gRPC-Web (application/grpc, grpc-web and their +proto, +json forms): a
 *   trailers-only response, grpc-status 8 and the percent-encoded grpc-message in the headers.
 *
 * Any other request (another method, GET, another content type, gRPC-Web as text) is left to
 * connect-es, whose interceptor refuses it all the same (limits.ts).
 */
import type { IncomingHttpHeaders } from "node:http";
import type { ServerHttp2Stream } from "node:http2";

/** What is used of a request, HTTP/1.1 or HTTP/2 (node's compatibility API). */
interface CallRequest {
  readonly method?: string;
  readonly url?: string;
  readonly headers: IncomingHttpHeaders;
  resume(): unknown;
}

/** What is used of a response: an HTTP/2 one also has its stream. */
interface CallResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: Uint8Array): unknown;
  readonly stream?: ServerHttp2Stream;
}

/** The path of JobService.Watch. */
const WATCH_PATH = "/populus.v1.JobService/Watch";

const CONNECT_STREAM = /^application\/connect\+(proto|json)$/;
const GRPC = /^application\/grpc(-web)?(\+(proto|json))?$/;

/** gRPC's RESOURCE_EXHAUSTED. */
const GRPC_RESOURCE_EXHAUSTED = "8";

/**
 * Answers `req` with RESOURCE_EXHAUSTED and `message` when it is a Watch call of a protocol
 * written here; false (nothing written) otherwise.
 */
export function refuseWatchCall(req: CallRequest, res: CallResponse, message: string): boolean {
  if (req.method !== "POST" || req.url !== WATCH_PATH) return false;
  const contentType =
    String(req.headers["content-type"] ?? "")
      .split(";")[0]
      ?.trim()
      .toLowerCase() ?? "";
  if (CONNECT_STREAM.test(contentType)) {
    const end = Buffer.from(JSON.stringify({ error: { code: "resource_exhausted", message } }));
    // An envelope: one flags byte (0b10: end of stream), the length, the JSON.
    const envelope = Buffer.alloc(5 + end.length);
    envelope[0] = 0b10;
    envelope.writeUInt32BE(end.length, 1);
    end.copy(envelope, 5);
    res.writeHead(200, { "content-type": contentType });
    res.end(envelope);
  } else if (GRPC.test(contentType) && res.stream !== undefined) {
    // gRPC needs HTTP/2; a trailers-only response is one HEADERS frame that ends the stream.
    res.stream.respond(
      { ":status": 200, "content-type": contentType, "grpc-status": GRPC_RESOURCE_EXHAUSTED, "grpc-message": encodeURIComponent(message) },
      { endStream: true },
    );
  } else {
    return false;
  }
  // The request body (the WatchRequest) is not read.
  req.resume();
  return true;
}
