/**
 * What node:http2 reports, as the Connect error codes connect-node gives it (its
 * connectErrorFromNodeReason and connectErrorFromH2ResetCode, which it does not export), so that
 * retries (retry.ts) and Watch's reconnects (watch.ts) see the codes they always saw. Shared by the
 * SDK's unary calls and its server streams (transport.ts, server-stream.ts).
 */
import http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";

/** The `code` of each error in a cause chain (ECONNRESET, ERR_HTTP2_GOAWAY_SESSION, …). */
export function nodeErrorCodes(reason: unknown): string[] {
  const codes: string[] = [];
  for (let e = reason, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
  }
  return codes;
}

/** connect-node's connectErrorFromNodeReason: a reset or refused connection is ABORTED or UNAVAILABLE, so it is retried. */
export function fromNodeReason(reason: unknown): ConnectError {
  const codes = nodeErrorCodes(reason);
  let code = Code.Internal;
  if (codes.includes("ERR_STREAM_WRITE_AFTER_END")) code = Code.Aborted;
  else if (codes.some((c) => c === "ERR_STREAM_DESTROYED" || c === "ERR_HTTP2_INVALID_STREAM" || c === "ECONNRESET")) code = Code.Aborted;
  else if (codes.some((c) => c === "ETIMEDOUT" || c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "ECONNREFUSED")) code = Code.Unavailable;
  const err = ConnectError.from(reason, code);
  if (err !== reason) err.cause = reason;
  return err;
}

/** connect-node's connectErrorFromH2ResetCode; undefined for a stream that closed cleanly (or with a code it leaves unmapped). */
export function fromResetCode(rstCode: number | undefined): ConnectError | undefined {
  if (rstCode === undefined) return undefined;
  const message = `http/2 stream closed with error code 0x${rstCode.toString(16)}`;
  switch (rstCode) {
    case http2.constants.NGHTTP2_PROTOCOL_ERROR:
    case http2.constants.NGHTTP2_INTERNAL_ERROR:
    case http2.constants.NGHTTP2_FLOW_CONTROL_ERROR:
    case http2.constants.NGHTTP2_SETTINGS_TIMEOUT:
    case http2.constants.NGHTTP2_FRAME_SIZE_ERROR:
    case http2.constants.NGHTTP2_COMPRESSION_ERROR:
    case http2.constants.NGHTTP2_CONNECT_ERROR:
      return new ConnectError(message, Code.Internal);
    case http2.constants.NGHTTP2_REFUSED_STREAM:
      return new ConnectError(`${message} (NGHTTP2_REFUSED_STREAM)`, Code.Unavailable);
    case http2.constants.NGHTTP2_CANCEL:
      return new ConnectError(message, Code.Canceled);
    case http2.constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return new ConnectError(message, Code.ResourceExhausted);
    case http2.constants.NGHTTP2_INADEQUATE_SECURITY:
    case http2.constants.NGHTTP2_HTTP_1_1_REQUIRED:
      return new ConnectError(message, Code.PermissionDenied);
    default:
      return undefined;
  }
}
