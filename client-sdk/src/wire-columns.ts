/**
 * Reserve's answer in columns (ReserveResponse.columns), decoded by hand: the per-job fields
 * (a lease token and an attempt and priority each) in one short loop, and every token's text cut
 * from one native Latin-1 decode of the bytes that hold them.
 *
 * Why: protobuf-es reads a message with one generic loop over its fields, and a repeated string
 * is a field per value, so a batch of a thousand leases ran that loop and its list reader a
 * thousand times per Reserve. That made them hot in every fresh worker process, and V8 compiled
 * them with TurboFan: about 55 ms of CPU per process (--trace-opt; readMessage alone 13-23 ms
 * per compile, compiled twice) on top of its make loop, which in a 20,000-job drain by four
 * fresh processes was a tenth of the whole machine's CPU, spent again by every new process.
 *
 * Anything this does not expect (the `leases` form, a field it does not know, a field repeated
 * where protobuf merges, a varint past 32 bits, text that is not UTF-8) answers undefined, and the
 * caller decodes with protobuf-es instead, which gives the canonical message or the canonical
 * error. The two are pinned equal by test/wire-columns.test.ts.
 *
 * @internal Not part of the public API.
 */
import { isAscii } from "node:buffer";
import { fromBinary } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { LeaseColumns, ReserveResponse } from "./gen/populus/v1/job_service_pb.js";
import { type KeyAttribute, KeyAttributeSchema } from "./gen/populus/v1/types_pb.js";

const VARINT = 0;
const LEN = 2;

/** ReserveResponse.columns, LeaseColumns' fields, as tags (field number and wire type). */
const COLUMNS = (2 << 3) | LEN;
const TOKEN = (1 << 3) | LEN;
const KEYS_JSON = (2 << 3) | LEN;
const ATTEMPTS_PACKED = (3 << 3) | LEN;
const ATTEMPT = (3 << 3) | VARINT;
const PRIORITIES_PACKED = (4 << 3) | LEN;
const PRIORITY = (4 << 3) | VARINT;
const LEASE_EXPIRE_TIME = (5 << 3) | LEN;
const KEY_ATTRIBUTE = (6 << 3) | LEN;

/** Strict, as protobuf-es reads a proto3 string: invalid UTF-8 is an error, not U+FFFD. */
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Where the varint last read by varint32 ended. */
let after = 0;

/** The varint of at most 32 bits at `pos` (its end in `after`), or -1: past `end`, or wider than 32 bits. */
function varint32(buf: Uint8Array, pos: number, end: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 5 && pos < end; i++) {
    const b = buf[pos++] as number;
    value += (b & 0x7f) * scale;
    if (b < 0x80) {
      after = pos;
      return value <= 0xffffffff ? value : -1;
    }
    scale *= 128;
  }
  return -1;
}

/** The ReserveResponse in `buf`, or undefined when it is not one this reads (decode it with protobuf-es). */
export function decodeReserveResponse(buf: Uint8Array): ReserveResponse | undefined {
  let columns: LeaseColumns | undefined;
  let pos = 0;
  while (pos < buf.length) {
    // Only the columns, once: a second occurrence would merge into the first.
    if (varint32(buf, pos, buf.length) !== COLUMNS || columns !== undefined) return undefined;
    const length = varint32(buf, after, buf.length);
    const start = after;
    if (length < 0 || start + length > buf.length) return undefined;
    columns = decodeColumns(buf, start, start + length);
    if (columns === undefined) return undefined;
    pos = start + length;
  }
  return { $typeName: "populus.v1.ReserveResponse", leases: [], columns };
}

/** LeaseColumns from buf[start, end), or undefined. */
function decodeColumns(buf: Uint8Array, start: number, end: number): LeaseColumns | undefined {
  const fields: ColumnFields = { tokenSpans: [], attempts: [], priorities: [], others: [] };
  if (!scanColumns(buf, start, end, fields)) return undefined;
  let keysJson = "";
  let leaseExpireTime: Timestamp | undefined;
  const keyAttributes: KeyAttribute[] = [];
  const { others } = fields;
  for (let i = 0; i < others.length; i += 3) {
    const bytes = buf.subarray(others[i + 1], others[i + 2]);
    switch (others[i]) {
      case KEYS_JSON:
        try {
          keysJson = utf8.decode(bytes);
        } catch {
          return undefined;
        }
        break;
      case LEASE_EXPIRE_TIME:
        if (leaseExpireTime !== undefined) return undefined;
        leaseExpireTime = fromBinary(TimestampSchema, bytes);
        break;
      default:
        keyAttributes.push(fromBinary(KeyAttributeSchema, bytes));
    }
  }
  const leaseTokens = tokensOf(buf, fields.tokenSpans);
  if (leaseTokens === undefined) return undefined;
  const { attempts, priorities } = fields;
  return { $typeName: "populus.v1.LeaseColumns", leaseTokens, keysJson, attempts, priorities, leaseExpireTime, keyAttributes };
}

/** LeaseColumns' fields as scanColumns finds them. */
interface ColumnFields {
  /** Each token's start and end in buf, in order. */
  readonly tokenSpans: number[];
  readonly attempts: number[];
  readonly priorities: number[];
  /** The other fields (keys_json, lease_expire_time, key_attributes): tag, start and end of each. */
  readonly others: number[];
}

/**
 * Walks LeaseColumns' fields; false on one it does not read. The loop runs once per job, so V8
 * compiles it: it calls nothing but varint32, and the rare fields are decoded after it, outside it
 * (with them inside, the compile took protobuf-es's decoder in with it).
 */
function scanColumns(buf: Uint8Array, start: number, end: number, fields: ColumnFields): boolean {
  let pos = start;
  while (pos < end) {
    const tag = varint32(buf, pos, end);
    if (tag < 0) return false;
    pos = after;
    if (tag === ATTEMPT || tag === PRIORITY) {
      const value = varint32(buf, pos, end);
      if (value < 0) return false;
      (tag === ATTEMPT ? fields.attempts : fields.priorities).push(value);
      pos = after;
      continue;
    }
    const length = varint32(buf, pos, end);
    const from = after;
    const to = from + length;
    if (length < 0 || to > end) return false;
    if (tag === TOKEN) fields.tokenSpans.push(from, to);
    else if (tag === ATTEMPTS_PACKED || tag === PRIORITIES_PACKED) {
      const list = tag === ATTEMPTS_PACKED ? fields.attempts : fields.priorities;
      for (let at = from; at < to; at = after) {
        const value = varint32(buf, at, to);
        if (value < 0) return false;
        list.push(value);
      }
    } else if (tag === KEYS_JSON || tag === LEASE_EXPIRE_TIME || tag === KEY_ATTRIBUTE) fields.others.push(tag, from, to);
    else return false;
    pos = to;
  }
  return true;
}

/**
 * The tokens at `spans`. The server writes them as one run of fields, ASCII: then one Latin-1
 * decode of the whole run and a slice per token. Otherwise each is decoded as UTF-8.
 */
function tokensOf(buf: Uint8Array, spans: readonly number[]): string[] | undefined {
  const count = spans.length / 2;
  const tokens = new Array<string>(count);
  if (count === 0) return tokens;
  const first = spans[0] as number;
  const last = spans[spans.length - 1] as number;
  const run = buf.subarray(first, last);
  if (isAscii(run)) {
    const text = Buffer.from(run.buffer, run.byteOffset, run.length).toString("latin1");
    for (let i = 0; i < count; i++) tokens[i] = text.slice((spans[2 * i] as number) - first, (spans[2 * i + 1] as number) - first);
    return tokens;
  }
  try {
    for (let i = 0; i < count; i++) tokens[i] = utf8.decode(buf.subarray(spans[2 * i], spans[2 * i + 1]));
  } catch {
    return undefined;
  }
  return tokens;
}
