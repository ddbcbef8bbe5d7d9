/**
 * The Connect protocol's enveloped message (https://connectrpc.com/docs/protocol#streaming-rpcs):
 * one flags byte, the data's length as a big-endian uint32, the data. Written by the SDK's server
 * streams (their request) and by the server's Watch fast path and undecodable-bodies.ts.
 */

/** The flags byte and the length before an envelope's data. */
export const ENVELOPE_HEADER_BYTES = 5;

/** `data` in an envelope flagged `flags`. */
export function envelope(flags: number, data: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(ENVELOPE_HEADER_BYTES + data.byteLength);
  bytes[0] = flags;
  bytes.writeUInt32BE(data.byteLength, 1);
  bytes.set(data, ENVELOPE_HEADER_BYTES);
  return bytes;
}
