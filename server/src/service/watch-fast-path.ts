/**
 * Watch in the Connect protocol's binary streaming form over HTTP/2 (what the SDK's watch() and
 * populate's progress send: POST, `application/connect+proto`, no compression), answered here
 * instead of through connect-es's handler pipeline. JSON, gRPC, gRPC-Web, HTTP/1.1 (the web
 * console) and any request this path is unsure of still go to connect-node's adapter.
 *
 * Why: every message of every stream went through connect-es's chain of async iterables
 * (serialise, envelope, join, catch, write: a promise each) and was serialised again per watcher.
 * With 500 watchers of a table that was about 220 µs of this server's CPU per message delivered
 * (`.tmp`-style driver: 760 messages a second took 16-18% of a core), and the garbage it made was
 * the largest part of the server's GC in bench scenario 5. Here a message is turned into its
 * envelope once, whoever watches (watch-responses.ts hands every watcher of a form the same
 * response object), and each stream writes those bytes.
 *
 * The stream itself runs as connect-es runs it (handler-factory.js, createStreamHandler): the
 * same context and interceptors (unary-fast-path.ts's callContext), the same implementation, the
 * response header sent with the first bytes, and every end, error or not, an end-of-stream
 * envelope with the error (if any) and the trailers as metadata, on HTTP 200. A request body that
 * does not decode is INVALID_ARGUMENT, as undecodable-bodies.ts answers it.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { type DescMessage, type DescMethodServerStreaming, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { createEndStreamSerialization, endStreamFlag } from "@connectrpc/connect/protocol-connect";
import { ENVELOPE_HEADER_BYTES, envelope } from "@populus/sdk/envelope";
import {
  CALL_ENDED,
  callContext,
  copyHeaders,
  type FastPathOptions,
  failedOutside,
  implementationContext,
  plainConnectCall,
  readBody,
  requestFields,
} from "./unary-fast-path.js";
import { COMPRESSED_UNNAMED_MESSAGE, undecodableBodyMessage } from "./undecodable-bodies.js";

type AnyServerStreaming = DescMethodServerStreaming<DescMessage, DescMessage>;
type StreamFn = (req: StreamRequest) => Promise<StreamResponse>;

const CONTENT_TYPE = "application/connect+proto";
const endStream = createEndStreamSerialization(undefined);

/** Each response message's envelope, made once: the hub gives every watcher of a form the same message object. */
const envelopes = new WeakMap<object, Buffer>();

/**
 * A request listener's first step: answers a binary Connect stream of `methodName` (a server
 * stream of `service`) over HTTP/2 and says true, or says false (and touches nothing) for any
 * other request.
 */
export function watchFastPath<S extends DescService>(
  options: FastPathOptions<S>,
  methodName: string,
): (req: http.IncomingMessage | http2.Http2ServerRequest, res: object) => boolean {
  const method = options.service.methods.find((m) => m.name === methodName);
  const impl = method === undefined ? undefined : (options.implementation as Record<string, unknown>)[method.localName];
  if (method?.methodKind !== "server_streaming" || typeof impl !== "function")
    throw new Error(`${methodName} is not a server stream of ${options.service.typeName}`);
  const target = { method: method as AnyServerStreaming, impl: impl.bind(options.implementation) as StreamImpl };
  const path = `/${options.service.typeName}/${method.name}`;
  return (req, res) => {
    if (req.httpVersionMajor !== 2 || req.method !== "POST" || req.url !== path) return false;
    const timeout = plainConnectCall(req.headers, CONTENT_TYPE, "connect-content-encoding");
    if (timeout === null) return false;
    const response = res as http2.Http2ServerResponse;
    serve(req as http2.Http2ServerRequest, response, target, timeout.timeoutMs, options).catch(failedOutside(options.logger, response, method.name));
    return true;
  };
}

type StreamImpl = (message: unknown, ctx: HandlerContext) => AsyncIterable<unknown>;

/** The implementation behind the interceptors, as connect-es's transformInvokeImplementation builds it for a server stream. */
function intercepted(method: AnyServerStreaming, impl: StreamImpl, ctx: HandlerContext, interceptors: readonly Interceptor[]): StreamFn {
  let next: StreamFn = async (req) => {
    let input: unknown;
    for await (const m of req.message) input = m;
    return {
      stream: true,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: impl(input, implementationContext(ctx, req)) as never,
    };
  };
  for (let i = interceptors.length - 1; i >= 0; i--) next = (interceptors[i] as Interceptor)(next as never) as StreamFn;
  return next;
}

async function serve<S extends DescService>(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  target: { method: AnyServerStreaming; impl: StreamImpl },
  timeoutMs: number | undefined,
  options: FastPathOptions<S>,
): Promise<void> {
  const { method } = target;
  const ctx = callContext(req, method, timeoutMs, options, CONTENT_TYPE);
  const onClose = () => ctx.end(new ConnectError("the client ended the call", Code.Canceled));
  req.once("close", onClose);
  let headerSent = false;
  /** Commits the response header with the first bytes, as connect-es does: the implementation may set headers until then. */
  const send = (bytes: Uint8Array): boolean => {
    if (!headerSent) {
      headerSent = true;
      const headers: http2.OutgoingHttpHeaders = {};
      ctx.responseHeader.forEach((value, key) => {
        headers[key] = value;
      });
      res.writeHead(200, headers);
    }
    return res.write(bytes);
  };
  let failure: ConnectError | undefined;
  try {
    const message = requestMessage(req, method, options.readMaxBytes);
    const request: StreamRequest = Object.assign(requestFields(ctx, options.service), { stream: true as const, method, message });
    const response = await intercepted(method, target.impl, ctx, options.interceptors)(request);
    copyHeaders(response.header, ctx.responseHeader);
    for await (const message of response.message) {
      if (res.stream.destroyed) break;
      if (!send(envelopeOf(method, message as object))) await drained(res, ctx.signal);
    }
    // After the stream, as connect-es copies them: the implementation may add trailers until its last message.
    copyHeaders(response.trailer, ctx.responseTrailer);
  } catch (err) {
    failure = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
    ctx.end(failure);
  } finally {
    ctx.end(CALL_ENDED);
    req.off("close", onClose);
  }
  if (res.stream.destroyed || res.writableEnded) return;
  const end = endStream.serialize({ metadata: ctx.responseTrailer, ...(failure === undefined ? {} : { error: failure }) });
  send(envelope(endStreamFlag, end));
  res.end();
}

/** The request's one message; a body that is not exactly one uncompressed envelope, or does not decode, is INVALID_ARGUMENT. */
function decodeRequest(body: Uint8Array, method: AnyServerStreaming, readMaxBytes: number): unknown {
  const invalid = (reason: string) => new ConnectError(undecodableBodyMessage(reason, method.input.typeName), Code.InvalidArgument);
  if (body.length < ENVELOPE_HEADER_BYTES) throw invalid(`${body.length} bytes is shorter than an envelope`);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const flags = view.getUint8(0);
  const length = view.getUint32(1);
  if (length > readMaxBytes) throw new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
  if ((flags & 1) !== 0) throw new ConnectError(COMPRESSED_UNNAMED_MESSAGE, Code.InvalidArgument);
  if (flags !== 0) throw invalid(`envelope flags ${flags}: a request sends one message and no end of stream`);
  if (body.length !== ENVELOPE_HEADER_BYTES + length)
    throw invalid(`the envelope promised ${length} bytes and the body holds ${body.length - ENVELOPE_HEADER_BYTES}`);
  try {
    return fromBinary(method.input, body.subarray(ENVELOPE_HEADER_BYTES));
  } catch (err) {
    throw invalid(err instanceof Error ? err.message : String(err));
  }
}

/**
 * The request's message, read and decoded only when the innermost handler asks for it, as
 * connect-es parses its request stream: interceptors run first, so a caller without a token is
 * UNAUTHENTICATED whatever its body holds, and a bad body's INVALID_ARGUMENT passes through them
 * (metrics count it, error mapping sees it).
 */
async function* requestMessage(req: http2.Http2ServerRequest, method: AnyServerStreaming, readMaxBytes: number): AsyncIterable<never> {
  yield decodeRequest(await readBody(req, readMaxBytes), method, readMaxBytes) as never;
}

function envelopeOf(method: AnyServerStreaming, message: object): Buffer {
  let bytes = envelopes.get(message);
  if (bytes === undefined) {
    let data: Uint8Array;
    try {
      data = toBinary(method.output, message as never);
    } catch (err) {
      throw new ConnectError(`serialize binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
    bytes = envelope(0, data);
    envelopes.set(message, bytes);
  }
  return bytes;
}

/** Waits until the stream takes more (a slow reader: the hub's queue bounds what waits for it meanwhile), or the call ends. */
function drained(res: http2.Http2ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
    signal.addEventListener("abort", done);
    if (signal.aborted) done();
  });
}
