/**
 * What the messages decoded by hand share (Reserve's answer in columns and Watch's messages here,
 * wire-columns.ts and wire-watch.ts; Complete's request in columns on the server): a reader of
 * protobuf's binary wire format that knows varints of up to 32 (or 53) bits and length-delimited
 * fields, and answers -1 for anything else, so that its caller leaves the message to protobuf-es;
 * the strings of a repeated field, decoded in one native call when they are ASCII (lease tokens
 * always are); and the submessages both SDK decoders meet (Timestamp, KeyAttribute).
 *
 * Why by hand: protobuf-es reads a message with one generic loop over its fields, and a repeated
 * string is a field per value, so a thousand lease tokens ran that loop a thousand times per call,
 * and a fresh process compiled it with TurboFan (tens of ms of CPU) before it had done much else.
 *
 * @internal Not part of the public API.
 */
import { isAscii } from "node:buffer";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { AttributeType, KeyAttribute } from "./gen/populus/v1/types_pb.js";

/** Wire types. */
export const VARINT = 0;
export const LEN = 2;

/** A field's tag: its number and wire type. */
export function tagOf(fieldNo: number, wireType: number): number {
  return (fieldNo << 3) | wireType;
}

/** Strict, as protobuf-es reads a proto3 string: invalid UTF-8 is an error, not U+FFFD. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A position in the bytes of one message. */
export class WireReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** The varint at pos (at most 32 bits), stepping past it; -1 when it runs past the end or is wider. */
  varint32(): number {
    return this.#varint(5, 0xffffffff);
  }

  /**
   * The varint at pos as a number, stepping past it; -1 when it runs past the end or exceeds 2^53 - 1
   * (a uint64 count or an int64 time read exactly, or left to protobuf-es: negative int64 and enum
   * values are ten bytes wide).
   */
  varint53(): number {
    return this.#varint(8, Number.MAX_SAFE_INTEGER);
  }

  /** The varint at pos in at most `maxBytes` bytes and at most `max`, stepping past it; -1 otherwise. */
  #varint(maxBytes: number, max: number): number {
    const buf = this.buf;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < maxBytes && this.pos < this.end; i++) {
      const b = buf[this.pos++] as number;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value <= max ? value : -1;
      scale *= 128;
    }
    return -1;
  }

  /** The length-delimited UTF-8 text at pos, stepping past it; undefined when it is not whole or not UTF-8. */
  text(): string | undefined {
    const end = this.delimited();
    if (end < 0) return undefined;
    const value = utf8At(this.buf, this.pos, end);
    this.pos = end;
    return value;
  }

  /** Reads a length-delimited value's length: pos is then at its first byte, and this answers its end; -1 when it runs past the end. */
  delimited(): number {
    const length = this.varint32();
    if (length < 0) return -1;
    const to = this.pos + length;
    return to <= this.end ? to : -1;
  }
}

/** buf[from, to) as UTF-8 text; undefined when it is not UTF-8. */
export function utf8At(buf: Uint8Array, from: number, to: number): string | undefined {
  try {
    return utf8.decode(buf.subarray(from, to));
  } catch {
    return undefined;
  }
}

/**
 * The strings at `spans` (each one's start and end in buf, in order). When the bytes from the first
 * to the last are ASCII (a run of tokens with their tags and short lengths between them), one
 * Latin-1 decode of that run and a slice per string; otherwise each is decoded as UTF-8. Undefined
 * when one is not UTF-8.
 */
export function stringsAt(buf: Uint8Array, spans: readonly number[]): string[] | undefined {
  const count = spans.length / 2;
  const strings = new Array<string>(count);
  if (count === 0) return strings;
  const first = spans[0] as number;
  const run = buf.subarray(first, spans[spans.length - 1]);
  if (isAscii(run)) {
    const text = Buffer.from(run.buffer, run.byteOffset, run.length).toString("latin1");
    for (let i = 0; i < count; i++) strings[i] = text.slice((spans[2 * i] as number) - first, (spans[2 * i + 1] as number) - first);
    return strings;
  }
  for (let i = 0; i < count; i++) {
    const s = utf8At(buf, spans[2 * i] as number, spans[2 * i + 1] as number);
    if (s === undefined) return undefined;
    strings[i] = s;
  }
  return strings;
}

/** Timestamp's and KeyAttribute's fields. */
const SECONDS = tagOf(1, VARINT);
const NANOS = tagOf(2, VARINT);
const NAME = tagOf(1, LEN);
const TYPE = tagOf(2, VARINT);

/**
 * The Timestamp in the reader's bytes (a submessage both hand decoders meet), or undefined for what
 * protobuf-es must read: a field repeated or unknown, negative seconds or nanos (ten bytes wide).
 */
export function decodeTimestamp(reader: WireReader): Timestamp | undefined {
  let seconds = 0;
  let nanos = 0;
  let seen = 0;
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    if ((tag !== SECONDS && tag !== NANOS) || seen & (1 << (tag >>> 3))) return undefined;
    seen |= 1 << (tag >>> 3);
    const n = reader.varint53();
    if (n < 0 || (tag === NANOS && n > 0x7fffffff)) return undefined;
    if (tag === SECONDS) seconds = n;
    else nanos = n;
  }
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos };
}

/** The KeyAttribute in the reader's bytes, or undefined for what protobuf-es must read (as decodeTimestamp). */
export function decodeKeyAttribute(reader: WireReader): KeyAttribute | undefined {
  const attribute: KeyAttribute = { $typeName: "populus.v1.KeyAttribute", name: "", type: 0 };
  let seen = 0;
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    if ((tag !== NAME && tag !== TYPE) || seen & (1 << (tag >>> 3))) return undefined;
    seen |= 1 << (tag >>> 3);
    if (tag === NAME) {
      const name = reader.text();
      if (name === undefined) return undefined;
      attribute.name = name;
    } else {
      const type = reader.varint53();
      if (type < 0 || type > 0x7fffffff) return undefined;
      attribute.type = type as AttributeType;
    }
  }
  return attribute;
}
