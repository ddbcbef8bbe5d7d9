/**
 * Reserve's answer in columns (ReserveResponse.columns), decoded by hand (wire-reader.ts says
 * why): the per-job fields (a lease token, an attempt and a priority each) in one short loop, and
 * the tokens' text from one native decode of the bytes that hold them.
 *
 * Measured: in a 20,000-job drain by four fresh worker processes, protobuf-es's decode of these
 * answers was compiled by TurboFan in every process (--trace-opt: its readMessage 13-23 ms per
 * compile, twice, its list reader 13), about 55 ms of CPU each; the workers' CPU went from 32-34
 * to 20-27 ticks with this decoder.
 *
 * Anything this does not expect (the `leases` form, a field it does not know, a field repeated
 * where protobuf merges, a varint past 32 bits, text that is not UTF-8) answers undefined, and the
 * caller decodes with protobuf-es instead, which gives the canonical message or the canonical
 * error. The two are pinned equal by test/wire-columns.test.ts.
 *
 * @internal Not part of the public API.
 */
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { LeaseColumns, ReserveResponse } from "./gen/populus/v1/job_service_pb.js";
import type { KeyAttribute } from "./gen/populus/v1/types_pb.js";
import { decodeKeyAttribute, decodeTimestamp, LEN, stringsAt, tagOf, utf8At, VARINT, WireReader } from "./wire-reader.js";

/** ReserveResponse.columns, and LeaseColumns' fields. */
const COLUMNS = tagOf(2, LEN);
const TOKEN = tagOf(1, LEN);
const KEYS_JSON = tagOf(2, LEN);
const ATTEMPTS_PACKED = tagOf(3, LEN);
const ATTEMPT = tagOf(3, VARINT);
const PRIORITIES_PACKED = tagOf(4, LEN);
const PRIORITY = tagOf(4, VARINT);
const LEASE_EXPIRE_TIME = tagOf(5, LEN);
const KEY_ATTRIBUTE = tagOf(6, LEN);

/** The ReserveResponse in `buf`, or undefined when it is not one this reads (decode it with protobuf-es). */
export function decodeReserveResponse(buf: Uint8Array): ReserveResponse | undefined {
  const reader = new WireReader(buf, 0, buf.length);
  let columns: LeaseColumns | undefined;
  while (reader.pos < reader.end) {
    // Only the columns, once: a second occurrence would merge into the first.
    if (reader.varint32() !== COLUMNS || columns !== undefined) return undefined;
    const end = reader.delimited();
    if (end < 0) return undefined;
    columns = decodeColumns(buf, reader.pos, end);
    if (columns === undefined) return undefined;
    reader.pos = end;
  }
  return { $typeName: "populus.v1.ReserveResponse", leases: [], columns };
}

/** LeaseColumns from buf[start, end), or undefined. */
function decodeColumns(buf: Uint8Array, start: number, end: number): LeaseColumns | undefined {
  const fields: ColumnFields = { tokenSpans: [], attempts: [], priorities: [], others: [] };
  if (!scanColumns(new WireReader(buf, start, end), fields)) return undefined;
  let keysJson = "";
  let leaseExpireTime: Timestamp | undefined;
  const keyAttributes: KeyAttribute[] = [];
  const { others } = fields;
  for (let i = 0; i < others.length; i += 3) {
    const tag = others[i];
    const bytes = buf.subarray(others[i + 1], others[i + 2]);
    if (tag === KEYS_JSON) {
      const text = utf8At(bytes, 0, bytes.length);
      if (text === undefined) return undefined;
      keysJson = text;
      continue;
    }
    // A submessage not read here (undefined): the whole answer goes to protobuf-es, for its canonical message or error.
    const reader = new WireReader(bytes, 0, bytes.length);
    if (tag !== LEASE_EXPIRE_TIME) {
      const attribute = decodeKeyAttribute(reader);
      if (attribute === undefined) return undefined;
      keyAttributes.push(attribute);
    } else if (leaseExpireTime === undefined) {
      leaseExpireTime = decodeTimestamp(reader);
      if (leaseExpireTime === undefined) return undefined;
    } else return undefined; // a second one merges into the first
  }
  const leaseTokens = stringsAt(buf, fields.tokenSpans);
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
 * compiles it: it calls nothing but the reader, and the rare fields are decoded after it, outside
 * it (with them inside, the compile took protobuf-es's decoder in with it).
 */
function scanColumns(reader: WireReader, fields: ColumnFields): boolean {
  while (reader.pos < reader.end) {
    const tag = reader.varint32();
    if (tag === ATTEMPT || tag === PRIORITY) {
      const value = reader.varint32();
      if (value < 0) return false;
      (tag === ATTEMPT ? fields.attempts : fields.priorities).push(value);
      continue;
    }
    const to = reader.delimited();
    if (to < 0) return false;
    if (tag === TOKEN) fields.tokenSpans.push(reader.pos, to);
    else if (tag === ATTEMPTS_PACKED || tag === PRIORITIES_PACKED) {
      const list = tag === ATTEMPTS_PACKED ? fields.attempts : fields.priorities;
      const values = new WireReader(reader.buf, reader.pos, to);
      while (values.pos < to) {
        const value = values.varint32();
        if (value < 0) return false;
        list.push(value);
      }
    } else if (tag === KEYS_JSON || tag === LEASE_EXPIRE_TIME || tag === KEY_ATTRIBUTE) fields.others.push(tag, reader.pos, to);
    else return false;
    reader.pos = to;
  }
  return true;
}
