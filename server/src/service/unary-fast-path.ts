/**
 * JobService's unary calls in the Connect protocol's plain binary form over HTTP/2 (what the SDK's
 * transport.ts sends: POST, `application/proto`, no compression), answered here instead of
 * through connect-es's handler pipeline. Everything else (gRPC, gRPC-Web, JSON, GET, compressed
 * bodies, HTTP/1.1, Watch, health, reflection) still goes to connect-node's adapter, and so does
 * any request this path is unsure of.
 *
 * Why: connect-es's pipeline cost this server about 400 µs of CPU per call on the 2-core dev
 * machine, against 130-180 µs for the same request on bare node:http2: web Headers, async
 * iterables, linked abort signals and two DOMExceptions (each with a stack) per call. An idle
 * worker's pass and a one-key refresh are one call each, so that was most of their cost.
 *
 * The call itself runs as connect-es runs it: a HandlerContext with the same fields and signal
 * (callContext), the same interceptors in the same order (metrics, auth, limits, error mapping), the same
 * implementation, the Connect protocol's error JSON and HTTP status (protocol-connect), the same
 * readMaxBytes and timeout rules, and a body that does not decode answered INVALID_ARGUMENT as
 * undecodable-bodies.ts answers it.
 */
import type http from "node:http";
import http2 from "node:http2";
import { create, type DescMessage, type DescMethod, type DescMethodUnary, type DescService, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
  type StreamRequest,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes, parseTimeout } from "@connectrpc/connect/protocol-connect";
import type { Logger } from "pino";
import { whenShutDown } from "./shutdown-fanout.js";
import { undecodableBodyMessage } from "./undecodable-bodies.js";
import { webHeaders } from "@populus/sdk/web-headers";

type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** Whatever response object the listener was given (connect-node's type for it differs in `write`'s callback only). */
type NodeResponse = object;
type AnyUnary = DescMethodUnary<DescMessage, DescMessage>;
type UnaryFn = (req: UnaryRequest) => Promise<UnaryResponse>;

/** What a fast path needs: the same pieces connectNodeAdapter is given. */
export interface FastPathOptions<S extends DescService> {
  readonly service: S;
  readonly implementation: ServiceImpl<S>;
  /** Outermost first, as connectNodeAdapter takes them. */
  readonly interceptors: readonly Interceptor[];
  readonly readMaxBytes: number;
  readonly contextValues: (req: NodeRequest) => ContextValues;
  readonly shutdownSignal: AbortSignal;
  /** Where a failure outside the call's own error handling is logged (its stream is then reset). */
  readonly logger: Logger;
  /**
   * Decoders of requests by their message type, tried before protobuf-es's: one answers undefined
   * for what it does not read, and protobuf-es decodes that instead (wire-complete.ts).
   */
  readonly decoders?: ReadonlyMap<DescMessage, (bytes: Uint8Array) => unknown>;
}

/** connect-es's maxTimeoutMs default: no limit. */
const MAX_TIMEOUT_MS = Number.MAX_SAFE_INTEGER;
/** The longest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The reason a call's context is aborted with once it has been answered (no DOMException per call). */
export const CALL_ENDED = new ConnectError("the call has ended", Code.Canceled);

/**
 * A request listener's first step: answers a plain binary Connect unary call to `service` and
 * says true, or says false (and touches nothing) for any other request.
 */
export function unaryFastPath<S extends DescService>(options: FastPathOptions<S>): (req: NodeRequest, res: NodeResponse) => boolean {
  const methods = new Map<string, FastMethod>();
  for (const method of options.service.methods) {
    if (method.methodKind !== "unary") continue;
    const impl = (options.implementation as Record<string, unknown>)[method.localName];
    if (typeof impl === "function")
      methods.set(`/${options.service.typeName}/${method.name}`, { method: method as AnyUnary, impl: impl.bind(options.implementation) });
  }
  return (req, res) => {
    if (req.httpVersionMajor !== 2 || req.method !== "POST") return false;
    const target = methods.get(req.url ?? "");
    if (target === undefined) return false;
    const timeout = plainConnectCall(req.headers, "application/proto", "content-encoding");
    if (timeout === null) return false;
    const response = res as http2.Http2ServerResponse;
    answer(req as http2.Http2ServerRequest, response, target, timeout.timeoutMs, options).catch(failedOutside(options.logger, response, target.method.name));
    return true;
  };
}

/**
 * Whether a request is the Connect protocol's plain form a fast path takes: `contentType`, no
 * compression in `encodingHeader`, protocol version 1 (or none) and a valid timeout, which it
 * answers; null for any other request.
 */
export function plainConnectCall(h: http2.IncomingHttpHeaders, contentType: string, encodingHeader: string): { timeoutMs: number | undefined } | null {
  if (h["content-type"] !== contentType) return null;
  const encoding = h[encodingHeader];
  if (encoding !== undefined && encoding !== "identity") return null;
  const version = h["connect-protocol-version"];
  if (version !== undefined && version !== "1") return null;
  const timeout = parseTimeout((h["connect-timeout-ms"] as string | undefined) ?? null, MAX_TIMEOUT_MS);
  return timeout.error === undefined ? { timeoutMs: timeout.timeoutMs } : null;
}

/** A call's failure outside its own error handling: logged, and its stream reset. */
export function failedOutside(logger: Logger, res: http2.Http2ServerResponse, rpc: string): (err: unknown) => void {
  return (err) => {
    logger.error({ err, rpc }, "a call failed outside its handler");
    if (!res.stream.destroyed) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  };
}

/** A unary method and its implementation (bound to the service object). */
interface FastMethod {
  readonly method: AnyUnary;
  readonly impl: (message: unknown, ctx: HandlerContext) => unknown;
}

/**
 * One call's implementation behind the interceptors, as connect-es's invokeUnaryImplementation
 * builds it for each call: the implementation sees the context with the request's header, signal
 * and values as the interceptors left them.
 */
function intercepted(target: FastMethod, ctx: HandlerContext, interceptors: readonly Interceptor[]): UnaryFn {
  const { method, impl } = target;
  let next: UnaryFn = async (req) => {
    const output = await impl(req.message, implementationContext(ctx, req));
    return {
      stream: false,
      service: method.parent,
      method,
      header: ctx.responseHeader,
      trailer: ctx.responseTrailer,
      message: create(method.output, output as never),
    };
  };
  for (let i = interceptors.length - 1; i >= 0; i--) next = (interceptors[i] as Interceptor)(next as never) as UnaryFn;
  return next;
}

async function answer<S extends DescService>(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  target: FastMethod,
  timeoutMs: number | undefined,
  options: FastPathOptions<S>,
): Promise<void> {
  const method = target.method;
  const ctx = callContext(req, method, timeoutMs, options, "application/proto");
  // The call's signal aborts when the client goes away before its answer, when the server shuts
  // down, or at the deadline; otherwise only once it is answered, with a reason made once. The
  // listener goes before the answer is written, so a close it hears is the client's reset (whose
  // stream reads writableEnded once destroyed: not a sign of an answer).
  const stream = res.stream;
  const onClose = () => ctx.end(new ConnectError("the client ended the call", Code.Canceled));
  req.once("close", onClose);
  let status = 200;
  let body: Uint8Array;
  try {
    const bytes = await readBody(req, options.readMaxBytes);
    let message: unknown;
    try {
      message = options.decoders?.get(method.input)?.(bytes) ?? fromBinary(method.input, bytes);
    } catch (err) {
      throw new ConnectError(undecodableBodyMessage(err instanceof Error ? err.message : String(err), method.input.typeName), Code.InvalidArgument);
    }
    const request: UnaryRequest = Object.assign(requestFields(ctx, options.service), { stream: false as const, method, message: message as never });
    const response = await intercepted(target, ctx, options.interceptors)(request);
    copyHeaders(response.header, ctx.responseHeader);
    copyHeaders(response.trailer, ctx.responseTrailer);
    try {
      body = toBinary(method.output, response.message);
    } catch (err) {
      throw new ConnectError(`serialize binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
    }
  } catch (err) {
    const error = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
    ctx.end(error);
    status = codeToHttpStatus(error.code);
    ctx.responseHeader.set("content-type", "application/json");
    error.metadata.forEach((value, key) => {
      ctx.responseHeader.set(key, value);
    });
    body = errorToJsonBytes(error, {});
  } finally {
    ctx.end(CALL_ENDED);
  }
  req.off("close", onClose);
  if (stream.destroyed || stream.headersSent) return;
  const headers: http2.OutgoingHttpHeaders = { ":status": status };
  ctx.responseHeader.forEach((value, key) => {
    headers[key] = value;
  });
  ctx.responseTrailer.forEach((value, key) => {
    headers[`trailer-${key}`] = value;
  });
  headers["content-length"] = body.byteLength;
  // On the stream itself, not through the compatibility response: that one always waits for
  // trailers (res.addTrailers), and with none its stream ended in an empty DATA frame of its own,
  // one more write here and one more wake-up and read for the client, on every call. Ended in the
  // same tick as its one write, the body's DATA frame carries END_STREAM. respond() adds the Date
  // header, as the compatibility response did.
  stream.respond(headers);
  stream.end(body);
}

/**
 * A call's HandlerContext, as createHandlerContext makes it but with one AbortController instead of
 * three (its own, a deadline's and the request's, linked): each cost about 10 µs here. The signal
 * and the request's web Headers are made when first read, which most calls never do (Reserve and
 * Watch do): the two were about a sixteenth of the server's CPU for a keyless refresh. `end` aborts the
 * signal (once; a signal made after that is born aborted) and lets go of the shutdown signal and
 * the deadline timer.
 */
export function callContext<S extends DescService>(
  req: http2.Http2ServerRequest,
  method: DescMethod,
  timeoutMs: number | undefined,
  options: FastPathOptions<S>,
  contentType: string,
): HandlerContext & { end(reason: unknown): void } {
  // The fields that may throw (contextValues is the server's) come before the timer and the
  // shutdown listener, so a throw leaves nothing registered.
  const values = options.contextValues(req);
  let controller: AbortController | undefined;
  let ended = false;
  let endReason: unknown;
  let requestHeader: Headers | undefined;
  const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  let letGoOfShutdown: (() => void) | undefined;
  const timedOut = () => end(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  // setTimeout fires at once past 2^31-1 ms; a deadline that far (the header allows ten digits, 115 days) is no deadline for a timer.
  const timer = timeoutMs === undefined || timeoutMs <= 0 || timeoutMs > MAX_TIMER_MS ? undefined : setTimeout(timedOut, timeoutMs);
  function end(reason: unknown): void {
    if (ended) return;
    ended = true;
    endReason = reason;
    if (timer !== undefined) clearTimeout(timer);
    letGoOfShutdown?.();
    controller?.abort(reason);
  }
  if (timeoutMs !== undefined && timeoutMs <= 0 && !options.shutdownSignal.aborted) timedOut();
  else letGoOfShutdown = whenShutDown(options.shutdownSignal, end);
  return {
    service: method.parent,
    method,
    protocolName: "connect",
    requestMethod: "POST",
    url: `${req.headers[":scheme"] ?? "http"}://${req.headers[":authority"] ?? "localhost"}${req.url}`,
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    get signal(): AbortSignal {
      if (controller === undefined) {
        controller = new AbortController();
        if (ended) controller.abort(endReason);
      }
      return controller.signal;
    },
    get requestHeader(): Headers {
      requestHeader ??= webHeaders(req.headers);
      return requestHeader;
    },
    responseHeader: new Headers({ "content-type": contentType }),
    responseTrailer: new Headers(),
    values,
    end,
  };
}

/**
 * The context the implementation sees, unary or stream: the call's, with the request's header,
 * signal and values as the interceptors left them (as connect-es's invoke*Implementation gives
 * it). The request's signal and header are read through, not copied, so that a signal or header
 * nobody reads is never made. A class, not Object.create with property descriptors: that made a
 * dictionary-mode object per call, 3% of the server's CPU in a one-key refresh's profile.
 */
export function implementationContext(ctx: HandlerContext, req: UnaryRequest | StreamRequest): HandlerContext {
  return new ImplementationContext(ctx, req);
}

class ImplementationContext implements HandlerContext {
  /** The call's own function (it uses no `this`), so that it may be called detached, as connect-es's is. */
  readonly timeoutMs: () => number | undefined;

  constructor(
    private readonly ctx: HandlerContext,
    private readonly req: UnaryRequest | StreamRequest,
  ) {
    this.timeoutMs = ctx.timeoutMs;
  }

  get service() {
    return this.req.service;
  }
  get values() {
    return this.req.contextValues;
  }
  get signal() {
    return this.req.signal;
  }
  get requestHeader() {
    return this.req.header;
  }
  get method() {
    return this.ctx.method;
  }
  get protocolName() {
    return this.ctx.protocolName;
  }
  get requestMethod() {
    return this.ctx.requestMethod;
  }
  get url() {
    return this.ctx.url;
  }
  get responseHeader() {
    return this.ctx.responseHeader;
  }
  get responseTrailer() {
    return this.ctx.responseTrailer;
  }
}

/** What an interceptor's request takes from the call's context, unary or stream. */
export function requestFields(ctx: HandlerContext, service: DescService) {
  // Getters: the call's signal and header are made only if someone reads them (callContext). Add
  // fields with Object.assign, not a spread, which would read them.
  return {
    service,
    requestMethod: "POST",
    url: ctx.url,
    get signal() {
      return ctx.signal;
    },
    get header() {
      return ctx.requestHeader;
    },
    contextValues: ctx.values,
  } as const;
}

/** A client that reset its stream before the end of its request body: the call is Canceled. */
const endedMidBody = () => new ConnectError("the client ended the call before the end of its request body", Code.Canceled);

/** The whole request body; RESOURCE_EXHAUSTED past readMaxBytes, as connect-es says it. */
export function readBody(req: http2.Http2ServerRequest, readMaxBytes: number): Promise<Uint8Array> {
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > readMaxBytes) {
    return Promise.reject(new ConnectError(`message size ${declared} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
  }
  // A stream reset before the body is read (Watch reads it inside the interceptors, which may await
  // I/O first) has closed already: its "close" will not come again.
  if (req.stream.closed || req.stream.destroyed) {
    return Promise.reject(endedMidBody());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > readMaxBytes) {
        cleanup();
        req.resume(); // drain the rest unread
        reject(new ConnectError(`message size is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      // A reset mid-body ends the stream with what came so far (node pushes its end on RST_STREAM):
      // a prefix that happens to decode must not run as if it were the whole request.
      if (req.stream.aborted) {
        reject(endedMidBody());
        return;
      }
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(new ConnectError(`the request body could not be read: ${err.message}`, Code.Aborted));
    };
    // A stream reset mid-body that nothing reads on closes with neither "end" nor "error": without
    // this the call would wait forever.
    const onClose = () => {
      cleanup();
      reject(endedMidBody());
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** What invokeUnaryImplementation does with headers an interceptor answered: they become the call's. */
export function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const key of [...to.keys()]) to.delete(key);
  from.forEach((value, key) => {
    to.set(key, value);
  });
}
