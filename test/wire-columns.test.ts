/**
 * wire-columns.ts: Reserve's answer in columns decoded by hand equals protobuf-es's decode of the
 * same bytes, for the server's own encoding (tokens pre-encoded by wire-ascii.ts), protobuf-es's,
 * unpacked numbers, Unicode and long values; whatever it does not read (the leases form, unknown or
 * merged fields, bad UTF-8, a cut body) it leaves to protobuf-es (undefined).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { LeaseColumnsSchema, ReserveResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { AttributeType } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { decodeReserveResponse } from "../client-sdk/dist/wire-columns.js";
import { decodesAsProtobufEs } from "./helpers/wire-decoding.js";
import { asciiListField, packedUint32Field } from "../client-sdk/dist/wire-ascii.js";

/** LeaseColumns' fields, as create() takes them. */
interface ColumnsInit {
  leaseTokens?: string[];
  keysJson?: string;
  attempts?: number[];
  priorities?: number[];
  leaseExpireTime?: Timestamp;
  keyAttributes?: { name: string; type: AttributeType }[];
}

const tokens = (n: number) => Array.from({ length: n }, (_, i) => `0123456789abcdef0123456789abcdef-${i.toString(36)}`);

const columns = (n: number, over: Partial<ColumnsInit> = {}): ColumnsInit => ({
  leaseTokens: tokens(n),
  keysJson: JSON.stringify(Array.from({ length: n }, (_, i) => ({ id: String(i), name: `sübject ${i} 🧪` }))),
  attempts: Array.from({ length: n }, (_, i) => 1 + (i % 3) * 200),
  priorities: Array.from({ length: n }, (_, i) => (i * 7919) % 70_000),
  leaseExpireTime: timestampFromMs(1_765_000_000_123),
  keyAttributes: [
    { name: "id", type: AttributeType.INT64 },
    { name: "name", type: AttributeType.STRING },
  ],
  ...over,
});

/** Decodes `bytes` both ways and checks they agree, the lists and the keys' text one by one too. */
function agrees(t: import("ava").ExecutionContext, bytes: Uint8Array, label: string): void {
  const both = decodesAsProtobufEs(t, ReserveResponseSchema, decodeReserveResponse, bytes, label);
  if (both === undefined) return;
  const { decoded, reference } = both;
  t.deepEqual(decoded.columns?.leaseTokens, reference.columns?.leaseTokens, `${label}: tokens`);
  t.is(decoded.columns?.keysJson, reference.columns?.keysJson, `${label}: keys`);
  t.deepEqual(decoded.columns?.attempts, reference.columns?.attempts, `${label}: attempts`);
}

test("the server's encoding (tokens as one pre-encoded field) and protobuf-es's decode the same", (t) => {
  for (const n of [1, 2, 1000]) {
    const plain = create(ReserveResponseSchema, { columns: columns(n) });
    agrees(t, toBinary(ReserveResponseSchema, plain), `protobuf-es, ${n} leases`);
    // As job-service.ts sends it: tokens, attempts and priorities pre-encoded (wire-ascii.ts).
    const full = columns(n);
    const server = create(ReserveResponseSchema, { columns: columns(n, { leaseTokens: [], attempts: [], priorities: [] }) });
    server.columns!.$unknown = [
      asciiListField(LeaseColumnsSchema.field.leaseTokens.number, tokens(n))!,
      packedUint32Field(LeaseColumnsSchema.field.attempts.number, full.attempts!)!,
      packedUint32Field(LeaseColumnsSchema.field.priorities.number, full.priorities!)!,
    ];
    agrees(t, toBinary(ReserveResponseSchema, server), `pre-encoded as the server sends them, ${n} leases`);
  }
});

test("an empty answer, empty columns, long and Unicode tokens, and large numbers", (t) => {
  agrees(t, new Uint8Array(0), "no leases");
  agrees(t, toBinary(ReserveResponseSchema, create(ReserveResponseSchema, { columns: {} })), "columns with no fields");
  const odd = ["x".repeat(127), "y".repeat(128), "z".repeat(20_000), "tökén-ü", "🧪", ""];
  agrees(t, toBinary(ReserveResponseSchema, create(ReserveResponseSchema, { columns: columns(odd.length, { leaseTokens: odd }) })), "odd tokens");
  const big = [0, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
  agrees(
    t,
    toBinary(ReserveResponseSchema, create(ReserveResponseSchema, { columns: columns(big.length, { attempts: big, priorities: [...big].reverse() }) })),
    "uint32 edges",
  );
});

test("attempts and priorities unpacked (one varint field each, as a proto2 writer may send them) decode the same", (t) => {
  const packed = toBinary(LeaseColumnsSchema, create(LeaseColumnsSchema, columns(0, { keysJson: "[]", leaseTokens: ["a", "b"] })));
  // LeaseColumns: its fields as protobuf-es wrote them, then attempts 1, 300 and priority 5 unpacked.
  const unpacked = Uint8Array.from([...packed, 3 << 3, 1, 3 << 3, 0xac, 0x02, 4 << 3, 5]);
  const response = Uint8Array.from([(2 << 3) | 2, ...varint(unpacked.length), ...unpacked]);
  agrees(t, response, "unpacked");
  t.deepEqual(decodeReserveResponse(response)?.columns?.attempts, [1, 300]);
  t.deepEqual(decodeReserveResponse(response)?.columns?.priorities, [5]);
});

test("what it does not read is left to protobuf-es: the leases form, unknown and merged fields, bad UTF-8, a cut or overlong body", (t) => {
  const leases = toBinary(ReserveResponseSchema, create(ReserveResponseSchema, { leases: [{ leaseToken: "t", attempt: 1 }] }));
  t.is(decodeReserveResponse(leases), undefined, "the leases form");
  const withUnknown = create(ReserveResponseSchema, { columns: columns(2) });
  withUnknown.columns!.$unknown = [{ no: 15, wireType: 0, data: Uint8Array.from([1]) }];
  t.is(decodeReserveResponse(toBinary(ReserveResponseSchema, withUnknown)), undefined, "an unknown field in the columns");
  const once = toBinary(ReserveResponseSchema, create(ReserveResponseSchema, { columns: columns(2) }));
  t.is(decodeReserveResponse(Uint8Array.from([...once, ...once])), undefined, "the columns twice (protobuf merges them)");
  const badUtf8 = Uint8Array.from([(2 << 3) | 2, 4, (2 << 3) | 2, 2, 0xc3, 0x28]);
  t.is(decodeReserveResponse(badUtf8), undefined, "keys_json that is not UTF-8");
  t.throws(() => fromBinary(ReserveResponseSchema, badUtf8), undefined, "protobuf-es then gives the error");
  t.is(decodeReserveResponse(once.subarray(0, once.length - 3)), undefined, "a body cut short");
  const wide = Uint8Array.from([(2 << 3) | 2, 7, 3 << 3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
  t.is(decodeReserveResponse(wide), undefined, "a varint wider than 32 bits");
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return out;
}

test("a lease expiry or key attribute that protobuf-es cannot read leaves the whole answer to it, and its error", (t) => {
  // LeaseColumns with a lease_expire_time (field 5) whose seconds varint is cut short.
  const badTimestamp = Uint8Array.from([(2 << 3) | 2, 4, (5 << 3) | 2, 2, 1 << 3, 0x80]);
  t.is(decodeReserveResponse(badTimestamp), undefined);
  t.throws(() => fromBinary(ReserveResponseSchema, badTimestamp));
  // A key_attributes entry (field 6) whose name (field 1) runs past its end.
  const badAttribute = Uint8Array.from([(2 << 3) | 2, 4, (6 << 3) | 2, 2, (1 << 3) | 2, 5]);
  t.is(decodeReserveResponse(badAttribute), undefined);
  t.throws(() => fromBinary(ReserveResponseSchema, badAttribute));
});
