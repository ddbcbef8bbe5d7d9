/**
 * Repeated fields encoded in one step, each as an unknown field of its message: strings of
 * printable ASCII (lease tokens, asciiListField) and packed uint32s (a Reserve answer's attempts
 * and priorities, packedUint32Field). protobuf-es writes an unknown field verbatim (its tag, then
 * its data), so the message goes on the wire exactly as if the field were set, with none of the
 * per-value work.
 *
 * protobuf-es encodes each string of a repeated field on its own (a TextEncoder call, a length,
 * a chunk), about 1.3 µs a value when warm and several times that in a fresh process: for the
 * thousand lease tokens of a batch, more than the rest of a Complete request or a Reserve answer
 * together. Here the field is one JS string (each value with its tag and length, as Latin-1
 * characters) turned into bytes by one native call; a packed list is written straight into one
 * array.
 *
 * The receiver decodes the field as usual. JSON codecs skip unknown fields: use this for binary
 * encodings only. The decoded message's field stays empty on the sender's side, and a message
 * holding it must not also set the field.
 *
 * @internal Not part of the public API.
 */
import type { UnknownField } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";

/** Characters other than printable ASCII (space to tilde): a value with one is left to protobuf-es. */
const NOT_PRINTABLE_ASCII = /[^ -~]/;

/** A varint as Latin-1 characters, one per byte. */
function varintChars(n: number): string {
  let out = "";
  while (n > 0x7f) {
    out += String.fromCharCode((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  return out + String.fromCharCode(n);
}

/**
 * `values` as repeated string field `fieldNo` (1-15), ready for the message's `$unknown`; undefined
 * when there are none, or when a value is not printable ASCII (then set the field as usual).
 */
export function asciiListField(fieldNo: number, values: readonly string[]): UnknownField | undefined {
  if (values.length === 0 || fieldNo < 1 || fieldNo > 15) return undefined;
  if (NOT_PRINTABLE_ASCII.test(values.join(""))) return undefined;
  const tag = String.fromCharCode((fieldNo << 3) | WireType.LengthDelimited);
  const entries = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as string;
    entries[i] = varintChars(v.length) + v;
  }
  // The unknown field's own tag is written before its data: the data starts with the first value's length.
  return { no: fieldNo, wireType: WireType.LengthDelimited, data: Buffer.from(entries.join(tag), "latin1") };
}

/** Bytes of `n` as a varint. */
function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/**
 * `values` (each an integer from 0 to 2^32 - 1) as packed repeated uint32 field `fieldNo` (1-15),
 * ready for the message's `$unknown`: its length, then each value's varint, written into one array.
 * protobuf-es writes a packed list value by value through its generic writer, which a fresh server
 * compiled with TurboFan during its first drain. Undefined when there are none, or one is not such
 * an integer (then set the field as usual).
 */
export function packedUint32Field(fieldNo: number, values: readonly number[]): UnknownField | undefined {
  if (values.length === 0 || fieldNo < 1 || fieldNo > 15) return undefined;
  let size = 0;
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) return undefined;
    size += varintSize(v);
  }
  const data = new Uint8Array(varintSize(size) + size);
  let at = putVarint(data, 0, size);
  for (const v of values) at = putVarint(data, at, v);
  return { no: fieldNo, wireType: WireType.LengthDelimited, data };
}

/** Writes `n` (0 to 2^32 - 1) as a varint into `data` at `at`; answers where it ends. */
function putVarint(data: Uint8Array, at: number, n: number): number {
  while (n > 0x7f) {
    data[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  data[at++] = n;
  return at;
}
