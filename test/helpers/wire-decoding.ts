/**
 * For the decoders written by hand (wire-columns.ts, wire-watch.ts, wire-complete.ts): checks one against
 * protobuf-es on the same bytes.
 */
import { type DescMessage, equals, fromBinary, type MessageShape } from "@bufbuild/protobuf";
import type { ExecutionContext } from "ava";

/**
 * Decodes `bytes` with `decode` and with protobuf-es, and checks that the two messages are equal;
 * the hand decode must not fall back (answer undefined). Answers both for the caller's own checks.
 */
export function decodesAsProtobufEs<D extends DescMessage>(
  t: ExecutionContext,
  schema: D,
  decode: (bytes: Uint8Array) => MessageShape<D> | undefined,
  bytes: Uint8Array,
  label: string,
): { decoded: MessageShape<D>; reference: MessageShape<D> } | undefined {
  const reference = fromBinary(schema, bytes);
  const decoded = decode(bytes);
  if (decoded === undefined) {
    t.fail(`${label}: fell back to protobuf-es`);
    return undefined;
  }
  t.true(equals(schema, decoded, reference), label);
  return { decoded, reference };
}
