/**
 * A request body that does not decode is the client's mistake: INVALID_ARGUMENT (HTTP 400 over
 * Connect), never INTERNAL. connect-es answers INTERNAL, from inside its protocol handlers and
 * before any interceptor runs, for a protobuf binary body it cannot parse ("parse binary: …";
 * JSON bodies it already answers INVALID_ARGUMENT) and for an envelope flagged compressed in a
 * request that names no compression. So the router's handlers are wrapped, and those answers are
 * rewritten in each protocol's own form:
 *
 * - Connect unary: the error is the JSON body of a non-200 answer;
 * - Connect streaming (Watch): the error is in the end-of-stream envelope (flag 0x02);
 * - gRPC: the error is in the trailers (grpc-status, grpc-message);
 * - gRPC-web: the trailers are the last envelope of the body (flag 0x80).
 *
 * Every other answer, INTERNAL ones included, passes unchanged.
 */
import type { ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { ENVELOPE_HEADER_BYTES, envelope } from "@populus/sdk/envelope";

/** How connect-es's binary serialization starts the message of a body it cannot parse. */
const PARSE_BINARY = "parse binary: ";
/** connect-es's message for an envelope flagged compressed in a request that names no compression. */
const COMPRESSED_UNNAMED = "received compressed envelope, but do not know how to decompress";
const GRPC_INTERNAL = "13";
const GRPC_INVALID_ARGUMENT = "3";
const CONNECT_END_STREAM = 0x02;
const GRPC_WEB_TRAILER = 0x80;

/** Rewraps every handler of `router` (call it after the last service is registered). */
export function answerUndecodableBodiesAsInvalid(router: ConnectRouter): void {
  const handlers = router.handlers as UniversalHandler[];
  for (let i = 0; i < handlers.length; i++) {
    const handler = handlers[i] as UniversalHandler;
    const messageType = handler.method.input.typeName;
    const wrapped = async (req: UniversalServerRequest) => rewrite(await handler(req), contentType(req), messageType);
    handlers[i] = Object.assign(wrapped, handler);
  }
}

function contentType(req: UniversalServerRequest): string {
  return (req.header.get("content-type") ?? "").toLowerCase();
}

/** The message of the rewritten error, or undefined when `message` is not connect-es's parse failure. */
function invalidMessage(message: unknown, messageType: string): string | undefined {
  if (message === COMPRESSED_UNNAMED) return COMPRESSED_UNNAMED_MESSAGE;
  if (typeof message !== "string" || !message.startsWith(PARSE_BINARY)) return undefined;
  return undecodableBodyMessage(message.slice(PARSE_BINARY.length), messageType);
}

/** INVALID_ARGUMENT's message for an envelope flagged compressed in a request that names no compression. */
export const COMPRESSED_UNNAMED_MESSAGE = "a message of the request body is flagged compressed, but the request names no compression (grpc-encoding)";

/** INVALID_ARGUMENT's message for a body that did not decode as `messageType`; `reason` is the decoder's. */
export function undecodableBodyMessage(reason: string, messageType: string): string {
  return `the request body did not decode as a ${messageType} message in protobuf binary (${reason})`;
}

async function rewrite(res: UniversalServerResponse, type: string, messageType: string): Promise<UniversalServerResponse> {
  if (type.startsWith("application/grpc-web")) return { ...res, body: mapEnvelopes(res.body, GRPC_WEB_TRAILER, (data) => grpcWebTrailer(data, messageType)) };
  if (type.startsWith("application/grpc")) {
    // The trailers are set while the body is read, or already before the answer when nothing was sent.
    fixGrpcTrailer(res.trailer, messageType);
    return { ...res, body: afterLast(res.body, () => fixGrpcTrailer(res.trailer, messageType)) };
  }
  if (type.startsWith("application/connect+"))
    return { ...res, body: mapEnvelopes(res.body, CONNECT_END_STREAM, (data) => connectEndStream(data, messageType)) };
  if (res.status < 400 || res.body === undefined) return res;
  return connectUnaryError(res, messageType);
}

function fixGrpcTrailer(trailer: Headers | undefined, messageType: string): void {
  if (trailer?.get("grpc-status") !== GRPC_INTERNAL) return;
  const message = invalidMessage(decodeURIComponent(trailer.get("grpc-message") ?? ""), messageType);
  if (message === undefined) return;
  trailer.set("grpc-status", GRPC_INVALID_ARGUMENT);
  trailer.set("grpc-message", encodeURIComponent(message));
}

/** A Connect unary error answer, read whole (it is one small JSON object) and rewritten when it is a parse failure. */
async function connectUnaryError(res: UniversalServerResponse, messageType: string): Promise<UniversalServerResponse> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  let bytes = Buffer.concat(chunks);
  let status = res.status;
  const error = parseJson(bytes) as { code?: string; message?: string } | undefined;
  const message = error?.code === "internal" ? invalidMessage(error.message, messageType) : undefined;
  if (message !== undefined) {
    bytes = Buffer.from(JSON.stringify({ ...error, code: "invalid_argument", message }));
    status = 400;
    res.header?.set("content-length", String(bytes.byteLength));
  }
  return { ...res, status, body: oneChunk(bytes) };
}

function connectEndStream(data: Uint8Array, messageType: string): Uint8Array | undefined {
  const end = parseJson(data) as { error?: { code?: string; message?: string } } | undefined;
  const message = end?.error?.code === "internal" ? invalidMessage(end.error.message, messageType) : undefined;
  if (end === undefined || message === undefined) return undefined;
  return Buffer.from(JSON.stringify({ ...end, error: { ...end.error, code: "invalid_argument", message } }));
}

function grpcWebTrailer(data: Uint8Array, messageType: string): Uint8Array | undefined {
  const trailer = new Headers();
  for (const line of Buffer.from(data).toString("utf8").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailer.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  if (trailer.get("grpc-status") !== GRPC_INTERNAL) return undefined;
  fixGrpcTrailer(trailer, messageType);
  if (trailer.get("grpc-status") === GRPC_INTERNAL) return undefined;
  let text = "";
  for (const [key, value] of trailer) text += `${key}: ${value}\r\n`;
  return Buffer.from(text);
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown;
  } catch {
    return undefined;
  }
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** The body, calling `done` once it has been read to its end. */
async function* afterLast(body: UniversalServerResponse["body"], done: () => void): AsyncIterable<Uint8Array> {
  if (body !== undefined) yield* body as AsyncIterable<Uint8Array>;
  done();
}

/**
 * The body with each chunk that is one whole envelope flagged `flag` passed through `map` (its new
 * data, or undefined to keep it). connect-es writes each envelope as one chunk; a chunk that is
 * not exactly one envelope passes unchanged.
 */
async function* mapEnvelopes(
  body: UniversalServerResponse["body"],
  flag: number,
  map: (data: Uint8Array) => Uint8Array | undefined,
): AsyncIterable<Uint8Array> {
  if (body === undefined) return;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    const whole =
      chunk.byteLength >= ENVELOPE_HEADER_BYTES &&
      chunk[0] === flag &&
      Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).readUInt32BE(1) === chunk.byteLength - ENVELOPE_HEADER_BYTES;
    const data = whole ? map(chunk.subarray(ENVELOPE_HEADER_BYTES)) : undefined;
    if (data === undefined) {
      yield chunk;
      continue;
    }
    yield envelope(flag, data);
  }
}
