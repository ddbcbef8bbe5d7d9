/**
 * JobService's server streams (Watch) in the Connect protocol's binary
 * streaming form (https://connectrpc.com/docs/protocol#streaming-rpcs), read
 * straight off the SDK's HTTP/2 session without connect-es's call pipeline.
 *
 * Why: a Watch message went through about a dozen async generators and
 * promise hops in connect-es (envelope splitting, decompression, parsing,
 * end-stream handling, the interceptor chain, the promise client), each a
 * microtask and garbage per message. With 500 watchers in one process during
 * a 20,000-job drain (bench scenario 5), that process used more CPU than the
 * server did, and on a 2-core machine that CPU is taken from the drain.
 *
 * What it keeps: the wire form and its checks as connect-es reads them (HTTP
 * status and content type, the envelope flags, the end-of-stream JSON with
 * its error and trailers, "missing EndStreamResponse"), the error codes of
 * node:http2's failures (h2-errors.ts), the session manager's keep-alive
 * (notifyResponseByteRead), and flow control: a reader that falls behind
 * pauses the HTTP/2 stream, so the stream's receive window, not this
 * process's memory, bounds what waits unread.
 */
import http2 from "node:http2";
import { type DescMessage, type DescMethodServerStreaming, fromBinary, type MessageInitShape, type MessageShape, create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse } from "@connectrpc/connect";
import { codeFromHttpStatus, endStreamFlag, endStreamFromJson } from "@connectrpc/connect/protocol-connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { ENVELOPE_HEADER_BYTES, envelope } from "./envelope.js";
import { fromNodeReason, fromResetCode } from "./h2-errors.js";
import { webHeaders } from "./web-headers.js";

const { NGHTTP2_CANCEL } = http2.constants;

/** An envelope's flag for a compressed message: never asked for here (no accept-encoding is sent). */
const COMPRESSED_FLAG = 0b01;

/** A reader this many messages behind pauses the stream; it resumes below half of it. */
const PAUSE_AT_MESSAGES = 64;

/** One server-streaming call: where it goes and what it sends. */
export interface ServerStreamCall<I extends DescMessage, O extends DescMessage> {
  readonly sessions: Http2SessionManager;
  /** The method's URL path. */
  readonly path: string;
  readonly method: DescMethodServerStreaming<I, O>;
  /** Request headers, the protocol's own included. */
  readonly headers: http2.OutgoingHttpHeaders;
  readonly input: MessageInitShape<I>;
  readonly signal: AbortSignal | undefined;
  /** No deadline when undefined. */
  readonly timeoutMs: number | undefined;
  /** A decoder of the method's messages written by hand: its undefined leaves a message to protobuf-es. */
  readonly decode?: ((body: Uint8Array) => MessageShape<O> | undefined) | undefined;
}

/**
 * Opens the stream; answers once the response headers arrived and passed the checks (as connect-es
 * does), with the messages as an async iterable that throws the stream's error, if any, at its end.
 */
export function serverStream<I extends DescMessage, O extends DescMessage>(call: ServerStreamCall<I, O>): Promise<StreamResponse<I, O>> {
  const reader = new StreamReader<O>(call.method.output, call.decode);
  const body = envelope(0, toBinary(call.method.input, create(call.method.input, call.input)));
  return new Promise<StreamResponse<I, O>>((resolve, reject) => {
    let answered = false;
    const fail = (err: ConnectError) => {
      if (!answered) {
        answered = true;
        reject(err);
      }
      reader.fail(err);
    };
    reader.start(call, fail);
    if (reader.ended) return; // aborted before it began: nothing is sent
    call.sessions.request("POST", call.path, call.headers, {}).then(
      (stream) => {
        if (!reader.attach(stream)) return;
        stream.on("response", (h) => {
          if (reader.ended) return;
          const error = responseError(h);
          if (error !== undefined) {
            fail(error);
            return;
          }
          const header = webHeaders(h);
          reader.header = header;
          answered = true;
          resolve({
            stream: true,
            service: call.method.parent,
            method: call.method,
            header,
            trailer: reader.trailer,
            message: reader,
          });
        });
        stream.on("data", (chunk: Buffer) => {
          call.sessions.notifyResponseByteRead(stream);
          reader.push(chunk);
        });
        // The verdict waits for "close": a connection lost (a server SIGKILLed) also ends the body,
        // before its "error" says why.
        let bodyEnded = false;
        stream.on("end", () => {
          bodyEnded = true;
        });
        stream.on("error", (err) => fail(fromNodeReason(err)));
        stream.on("close", () => {
          if (reader.ended) return;
          const reset = fromResetCode(stream.rstCode);
          if (reset !== undefined) fail(reset);
          else if (bodyEnded && !stream.aborted) reader.end();
          else fail(new ConnectError("the stream closed before its end", Code.Aborted));
        });
        stream.end(body);
      },
      (err: unknown) => fail(fromNodeReason(err)),
    );
  });
}

/**
 * The messages of one stream as they arrive, for one reader: a queue that pauses the HTTP/2 stream
 * when it grows, the envelopes split out of the bytes, and the error that ends it.
 */
class StreamReader<O extends DescMessage> implements AsyncIterable<MessageShape<O>> {
  readonly trailer = new Headers();
  /** The response's headers, once they came: an error the server ends the stream with carries them too (as connect-es gives it). */
  header: Headers | undefined;
  /** The HTTP/2 stream ended (or failed): nothing more arrives. */
  ended = false;
  readonly #schema: O;
  readonly #decode: ((body: Uint8Array) => MessageShape<O> | undefined) | undefined;
  /** Decoded messages not yet read; those before #head were read (their slots cleared). */
  readonly #queue: (MessageShape<O> | undefined)[] = [];
  #head = 0;
  /** Bytes of an envelope not yet whole, kept as they came: joined once the envelope is complete. */
  readonly #partial: Buffer[] = [];
  #partialBytes = 0;
  #endStreamSeen = false;
  /** The error the server ended the stream with: thrown once the stream has closed, as its normal end. */
  #serverError: ConnectError | undefined;
  #error: ConnectError | undefined;
  #wake: (() => void) | undefined;
  #stream: http2.ClientHttp2Stream | undefined;
  #paused = false;
  #cleanup: () => void = () => undefined;
  #iterated = false;
  /** The caller gave up (abort, deadline): messages still queued are not delivered. */
  #dropQueued = false;

  constructor(schema: O, decode: ((body: Uint8Array) => MessageShape<O> | undefined) | undefined) {
    this.#schema = schema;
    this.#decode = decode;
  }

  /** Wires the caller's signal and deadline to `fail`; done once, before the request. */
  start(call: { signal: AbortSignal | undefined; timeoutMs: number | undefined }, fail: (err: ConnectError) => void): void {
    const { signal, timeoutMs } = call;
    // The caller gave up: CANCELED whatever the signal's reason (a ConnectError reason is kept).
    const giveUp = (err: ConnectError) => {
      this.#dropQueued = true;
      fail(err);
    };
    const onAbort = () => giveUp(ConnectError.from(signal?.reason, Code.Canceled));
    const timer =
      timeoutMs === undefined ? undefined : setTimeout(() => giveUp(new ConnectError("the call timed out", Code.DeadlineExceeded)), Math.max(0, timeoutMs));
    this.#cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    };
    if (signal?.aborted === true) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  }

  /** Takes the stream the request opened; false (and the stream cancelled) when the call is already over. */
  attach(stream: http2.ClientHttp2Stream): boolean {
    this.#stream = stream;
    if (!this.ended) return true;
    stream.on("error", () => undefined); // the call is over; a session torn down meanwhile must not throw
    stream.close(NGHTTP2_CANCEL);
    return false;
  }

  /** Bytes off the wire: the whole envelopes in them go to the queue, a partial one waits for the rest. */
  push(chunk: Buffer): void {
    if (this.ended) return;
    let bytes = chunk;
    if (this.#partialBytes > 0) {
      // A large message comes in many chunks: they are joined once, when it is whole, not at each chunk.
      this.#partial.push(chunk);
      this.#partialBytes += chunk.length;
      const head = this.#partialBytes >= ENVELOPE_HEADER_BYTES ? Buffer.concat(this.#partial, ENVELOPE_HEADER_BYTES) : undefined;
      if (head === undefined || this.#partialBytes < ENVELOPE_HEADER_BYTES + head.readUInt32BE(1)) return;
      bytes = Buffer.concat(this.#partial, this.#partialBytes);
      this.#partial.length = 0;
      this.#partialBytes = 0;
    }
    try {
      while (bytes.length >= ENVELOPE_HEADER_BYTES) {
        const end = ENVELOPE_HEADER_BYTES + bytes.readUInt32BE(1);
        if (bytes.length < end) break;
        this.#envelope(bytes[0] as number, bytes.subarray(ENVELOPE_HEADER_BYTES, end));
        bytes = bytes.subarray(end);
      }
    } catch (err) {
      this.fail(err instanceof ConnectError ? err : new ConnectError(`a message of the stream did not decode: ${String(err)}`, Code.Internal));
      return;
    }
    if (bytes.length > 0) {
      this.#partial.push(bytes);
      this.#partialBytes = bytes.length;
    }
    if (!this.#paused && this.#queue.length - this.#head >= PAUSE_AT_MESSAGES) {
      this.#paused = true;
      this.#stream?.pause();
    }
    this.#wake?.();
  }

  /** The HTTP/2 stream ended: whatever the envelopes said decides whether that was the stream's right end. */
  end(): void {
    if (this.ended) return;
    if (this.#partialBytes > 0) this.fail(new ConnectError("protocol error: the stream ended inside a message", Code.InvalidArgument));
    else if (!this.#endStreamSeen) this.fail(new ConnectError("protocol error: missing EndStreamResponse", Code.InvalidArgument));
    else this.#finish(this.#serverError);
  }

  /** Ends the stream with `err` (the first one counts), after the messages already queued. */
  fail(err: ConnectError): void {
    if (this.ended) return;
    this.#finish(err);
    const stream = this.#stream;
    if (stream !== undefined && !stream.closed) stream.close(err.code === Code.Canceled ? NGHTTP2_CANCEL : http2.constants.NGHTTP2_INTERNAL_ERROR);
  }

  #finish(err: ConnectError | undefined): void {
    this.ended = true;
    this.#error = err;
    this.#cleanup();
    this.#wake?.();
  }

  #envelope(flags: number, data: Buffer): void {
    if ((flags & endStreamFlag) === endStreamFlag) {
      if (this.#endStreamSeen) throw new ConnectError("protocol error: received extra EndStreamResponse", Code.InvalidArgument);
      this.#endStreamSeen = true;
      const { error, metadata } = endStreamFromJson(data);
      if (error !== undefined) {
        this.header?.forEach((value, key) => {
          error.metadata.append(key, value);
        });
        // Not a reason to reset the stream: the server ended it, and its close ends this read.
        this.#serverError = error;
        return;
      }
      metadata.forEach((value, key) => {
        this.trailer.set(key, value);
      });
      return;
    }
    if (this.#endStreamSeen) throw new ConnectError("protocol error: received extra message after EndStreamResponse", Code.InvalidArgument);
    if ((flags & COMPRESSED_FLAG) === COMPRESSED_FLAG)
      throw new ConnectError("received a compressed message, but no compression was negotiated", Code.Internal);
    this.#queue.push(this.#decode?.(data) ?? fromBinary(this.#schema, data));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<MessageShape<O>, void, undefined> {
    if (this.#iterated) throw new ConnectError("a stream's messages can be read once", Code.Internal);
    this.#iterated = true;
    try {
      for (;;) {
        if (this.#head < this.#queue.length && !this.#dropQueued) {
          const message = this.#queue[this.#head] as MessageShape<O>;
          this.#queue[this.#head++] = undefined;
          // Read slots go once the queue empties, or once they are most of it: a reader that stays a
          // few messages behind for hours never empties it.
          if (this.#head === this.#queue.length) {
            this.#queue.length = 0;
            this.#head = 0;
          } else if (this.#head >= PAUSE_AT_MESSAGES && this.#head * 2 >= this.#queue.length) {
            this.#queue.splice(0, this.#head);
            this.#head = 0;
          }
          if (this.#paused && this.#queue.length - this.#head < PAUSE_AT_MESSAGES / 2) {
            this.#paused = false;
            this.#stream?.resume();
          }
          yield message;
          continue;
        }
        if (this.ended) {
          if (this.#error !== undefined) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
    } finally {
      // The reader stopped early (break, return, a throw in its loop): the server's stream is cancelled.
      if (!this.ended) this.fail(new ConnectError("the reader stopped reading", Code.Canceled));
    }
  }
}

/** The response headers' verdict, as connect-es's validateResponse gives it for a binary stream; undefined when they are fine. */
function responseError(h: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): ConnectError | undefined {
  const status = Number(h[":status"] ?? 0);
  if (status !== 200) return new ConnectError(`HTTP ${status}`, codeFromHttpStatus(status), webHeaders(h));
  const contentType = String(h["content-type"] ?? "");
  if (!/^application\/connect\+proto(?:;.*)?$/i.test(contentType)) {
    const known = /^application\/(?:connect\+)?(?:proto|json)(?:;.*)?$/i.test(contentType);
    return new ConnectError(`unsupported content type ${contentType}`, known ? Code.Internal : Code.Unknown, webHeaders(h));
  }
  const encoding = h["connect-content-encoding"];
  if (encoding !== undefined && String(encoding).toLowerCase() !== "identity") {
    return new ConnectError(`the server sent a compression the client did not accept: ${String(encoding)}`, Code.Internal, webHeaders(h));
  }
  return undefined;
}
