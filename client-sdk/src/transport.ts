/**
 * The SDK's transport: JobService's unary calls in the Connect protocol's
 * binary form (https://connectrpc.com/docs/protocol#unary-request), sent on
 * connect-node's HTTP/2 session manager without connect-es's call pipeline;
 * its server streams (Watch) the same way, in server-stream.ts. JobService has
 * no client or bidirectional streams.
 *
 * Why: on the 2-core dev machine a no-op unary call through connect-es cost
 * the client 620 µs of CPU, against 200 µs for the same request on bare
 * node:http2. The pipeline's linked abort signals, async iterables, web
 * Headers and a ConnectError built at each stream's close were most of it. A
 * one-key refresh is one call, and so is an idle worker's pass.
 *
 * What is kept from connect-es: the message codecs (protobuf-es), the session
 * manager (connecting, keep-alive pings, GOAWAY), the error JSON and HTTP
 * status mapping (@connectrpc/connect/protocol-connect), and its error codes
 * for what node:http2 reports (connectErrorFromNodeReason and
 * connectErrorFromH2ResetCode, which connect-node does not export).
 */
import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { codeFromHttpStatus, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { fromNodeReason, fromResetCode, nodeErrorCodes } from "./h2-errors.js";
import { serverStream } from "./server-stream.js";

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;

/** Where and how the calls go. */
export interface TransportOptions {
  /** The server's base URL; its path (if any) prefixes each method's. */
  readonly baseUrl: string;
  /** The connection the calls and the streams share. */
  readonly sessionManager: Http2SessionManager;
  /** Sent as `Authorization: Bearer …` on every call. */
  readonly token: string | undefined;
  /**
   * Decoders of answers and of stream messages by their message type, used before protobuf-es's:
   * one answers undefined for what it does not read, and protobuf-es decodes that instead
   * (wire-columns.ts, wire-watch.ts).
   */
  readonly decoders?: ReadonlyMap<DescMessage, (body: Uint8Array) => unknown>;
}

/** One call's answer as it came off the wire. */
interface RawAnswer {
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** The SDK's Transport for JobService (see the module comment). */
export function createTransport(options: TransportOptions): Transport {
  const basePath = new URL(options.baseUrl).pathname.replace(/\/$/, "");
  const commonHeaders: http2.OutgoingHttpHeaders = {
    "connect-protocol-version": "1",
    "user-agent": "populus-sdk",
    ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
  };
  const fixedHeaders: http2.OutgoingHttpHeaders = { "content-type": "application/proto", ...commonHeaders };
  const streamHeaders: http2.OutgoingHttpHeaders = { "content-type": "application/connect+proto", ...commonHeaders };
  /**
   * A call's headers: the caller's first, then the protocol's own over them (as connect-es sets
   * them), and the deadline, when there is one.
   */
  const callHeaders = (fixed: http2.OutgoingHttpHeaders, header: ConstructorParameters<typeof Headers>[0] | undefined, deadlineMs: number | undefined) => {
    const headers: http2.OutgoingHttpHeaders = {};
    if (header !== undefined) {
      new Headers(header).forEach((value, name) => {
        headers[name] = value;
      });
    }
    Object.assign(headers, fixed);
    if (deadlineMs !== undefined) headers["connect-timeout-ms"] = String(Math.ceil(deadlineMs));
    return headers;
  };
  return {
    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      const body = toBinary(method.input, create(method.input, input));
      // As connect-es: no timeout, or one of 0 or less, is no deadline.
      const deadlineMs = timeoutMs === undefined || timeoutMs <= 0 ? undefined : timeoutMs;
      const headers = callHeaders(fixedHeaders, header, deadlineMs);
      const answer = await exchange(options.sessionManager, `${basePath}/${method.parent.typeName}/${method.name}`, headers, body, signal, deadlineMs);
      if (answer.status !== 200) throw answerError(answer, errorMetadata(answer.headers));
      const contentType = String(answer.headers["content-type"] ?? "");
      if (contentType !== "application/proto") {
        throw new ConnectError(`unexpected response content type "${contentType}" for ${method.name}`, Code.Unknown, errorMetadata(answer.headers));
      }
      const decoded = options.decoders?.get(method.output)?.(answer.body) as MessageShape<O> | undefined;
      return new UnaryAnswer(method, answer.headers, decoded ?? fromBinary(method.output, answer.body));
    },
    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: ConstructorParameters<typeof Headers>[0] | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
    ): Promise<StreamResponse<I, O>> {
      if (method.methodKind !== "server_streaming") {
        throw new ConnectError(`${method.name}: the SDK's transport sends server streams only, not ${method.methodKind}`, Code.Unimplemented);
      }
      // A server stream's request is one message (connect-es's promise client passes it as an iterable of one).
      let message: MessageInitShape<I> | undefined;
      for await (const m of input) {
        if (message !== undefined) throw new ConnectError(`${method.name}: a server stream takes one request message`, Code.InvalidArgument);
        message = m;
      }
      if (message === undefined) throw new ConnectError(`${method.name}: a server stream takes one request message`, Code.InvalidArgument);
      const deadlineMs = timeoutMs === undefined || timeoutMs <= 0 ? undefined : timeoutMs;
      return serverStream({
        sessions: options.sessionManager,
        path: `${basePath}/${method.parent.typeName}/${method.name}`,
        method,
        headers: callHeaders(streamHeaders, header, deadlineMs),
        input: message,
        signal,
        timeoutMs: deadlineMs,
        decode: options.decoders?.get(method.output) as ((body: Uint8Array) => MessageShape<O> | undefined) | undefined,
      });
    },
  };
}

/**
 * Sends one request body and reads the whole answer. The caller's abort ends the stream with
 * CANCEL and rejects CANCELED; a timeout rejects DEADLINE_EXCEEDED; what node:http2 reports is
 * mapped as connect-node maps it, so retries (retry.ts) see the codes they always saw.
 */
function exchange(
  sessions: Http2SessionManager,
  path: string,
  headers: http2.OutgoingHttpHeaders,
  body: Uint8Array,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
): Promise<RawAnswer> {
  return new Promise<RawAnswer>((resolve, reject) => {
    let stream: http2.ClientHttp2Stream | undefined;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    // The caller gave up: CANCELED whatever the signal's reason (a ConnectError reason is kept), so
    // the stream is reset with CANCEL and retry.ts, which sees the signal aborted, does not retry.
    const onAbort = () => fail(ConnectError.from(signal?.reason, Code.Canceled));
    const finish = () => {
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    function fail(err: ConnectError): void {
      if (settled) return;
      finish();
      if (stream !== undefined && !stream.closed) stream.close(err.code === Code.Canceled ? NGHTTP2_CANCEL : NGHTTP2_INTERNAL_ERROR);
      reject(err);
    }
    if (signal?.aborted === true) {
      onAbort();
      return;
    }
    signal?.addEventListener("abort", onAbort, { once: true });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => fail(new ConnectError("the call timed out", Code.DeadlineExceeded)), Math.max(0, timeoutMs));
    }
    sessions.request("POST", path, headers, {}).then(
      (s) => {
        stream = s;
        if (settled) {
          s.on("error", () => undefined); // the call is over; a session torn down meanwhile must not throw
          s.close(NGHTTP2_CANCEL);
          return;
        }
        let status = 0;
        let responseHeaders: http2.IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        s.on("response", (h) => {
          status = Number(h[":status"] ?? 0);
          responseHeaders = h;
        });
        s.on("data", (chunk: Buffer) => {
          chunks.push(chunk);
          sessions.notifyResponseByteRead(s);
        });
        s.on("end", () => {
          if (settled) return;
          // Ended with no answer at all: the server (or a proxy) went away mid-call, as a reset would say.
          if (status === 0) {
            fail(fromResetCode(s.rstCode) ?? new ConnectError("the stream ended without an answer", Code.Aborted));
            return;
          }
          finish();
          resolve({ status, headers: responseHeaders, body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks) });
        });
        s.on("error", (err) => {
          // The server answered (an error) and closed before the whole body was written: its answer decides.
          if (s.writableEnded && nodeErrorCodes(err).includes("ERR_STREAM_WRITE_AFTER_END")) return;
          fail(fromNodeReason(err));
        });
        s.on("close", () => {
          if (!settled) fail(fromResetCode(s.rstCode) ?? new ConnectError("the stream closed before its answer ended", Code.Aborted));
        });
        s.end(body);
      },
      (err: unknown) => fail(fromNodeReason(err)),
    );
  });
}

/** A unary call's answer; its headers become web Headers only when read (the SDK never reads them, and each cost a few µs). */
class UnaryAnswer<I extends DescMessage, O extends DescMessage> implements UnaryResponse<I, O> {
  readonly stream = false;
  readonly service: DescMethodUnary<I, O>["parent"];
  #split: { header: Headers; trailer: Headers } | undefined;

  constructor(
    readonly method: DescMethodUnary<I, O>,
    private readonly incoming: http2.IncomingHttpHeaders,
    readonly message: UnaryResponse<I, O>["message"],
  ) {
    this.service = method.parent;
  }

  get header(): Headers {
    this.#split ??= splitTrailers(this.incoming);
    return this.#split.header;
  }

  get trailer(): Headers {
    this.#split ??= splitTrailers(this.incoming);
    return this.#split.trailer;
  }
}

/** A non-200 answer's error: the Connect error JSON when it has one, else the code of its HTTP status. */
function answerError(answer: RawAnswer, header: Headers): ConnectError {
  const fallback = new ConnectError(`HTTP ${answer.status}`, codeFromHttpStatus(answer.status), header);
  if (!String(answer.headers["content-type"] ?? "").startsWith("application/json")) return fallback;
  return errorFromJsonBytes(answer.body, header, fallback);
}

/** An error answer's metadata: its headers and its trailers together, as connect-es gives them. */
function errorMetadata(incoming: http2.IncomingHttpHeaders): Headers {
  const { header, trailer } = splitTrailers(incoming);
  trailer.forEach((value, name) => {
    header.append(name, value);
  });
  return header;
}

/** A unary answer's headers, and its trailers (sent as `trailer-` headers in the Connect protocol). */
function splitTrailers(incoming: http2.IncomingHttpHeaders): { header: Headers; trailer: Headers } {
  const header = new Headers();
  const trailer = new Headers();
  for (const [name, value] of Object.entries(incoming)) {
    if (name.startsWith(":") || value === undefined) continue;
    const values = Array.isArray(value) ? value : [String(value)];
    for (const v of values) {
      if (name.startsWith("trailer-")) trailer.append(name.slice("trailer-".length), v);
      else header.append(name, v);
    }
  }
  return { header, trailer };
}
