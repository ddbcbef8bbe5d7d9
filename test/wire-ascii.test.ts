/**
 * wire-ascii.ts: a repeated string field pre-encoded as an unknown field decodes to exactly the
 * values given, for short and long values (a length of two varint bytes) and for the fields of
 * the messages that use it; a value that is not printable ASCII is left to protobuf-es.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { CompleteRequestSchema, LeaseColumnsSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { asciiListField, packedUint32Field } from "../client-sdk/dist/wire-ascii.js";

const TOKENS = [
  "a",
  "0123456789abcdef0123456789abcdef-2n9c",
  "~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
  "x".repeat(127),
  "y".repeat(128),
  "z".repeat(20_000),
  " spaces are ASCII too ",
];

test("CompleteRequest.lease_tokens pre-encoded decodes to the same tokens, beside the other fields", (t) => {
  const field = asciiListField(CompleteRequestSchema.field.leaseTokens.number, TOKENS);
  t.truthy(field);
  const request = create(CompleteRequestSchema, { table: "T", resultsJson: "[{}]", keepCompleted: true });
  request.$unknown = [field!];
  const decoded = fromBinary(CompleteRequestSchema, toBinary(CompleteRequestSchema, request));
  t.deepEqual(decoded.leaseTokens, TOKENS);
  t.is(decoded.table, "T");
  t.is(decoded.resultsJson, "[{}]");
  t.true(decoded.keepCompleted);
  t.deepEqual(decoded.$unknown, undefined, "nothing is left over as unknown");
  const plain = toBinary(CompleteRequestSchema, create(CompleteRequestSchema, { table: "T", resultsJson: "[{}]", keepCompleted: true, leaseTokens: TOKENS }));
  t.is(toBinary(CompleteRequestSchema, request).length, plain.length, "as many bytes as protobuf-es writes for the field");
});

test("LeaseColumns.lease_tokens pre-encoded decodes to the same tokens", (t) => {
  const columns = create(LeaseColumnsSchema, { keysJson: "[]", attempts: [1, 2] });
  columns.$unknown = [asciiListField(LeaseColumnsSchema.field.leaseTokens.number, TOKENS.slice(0, 2))!];
  const decoded = fromBinary(LeaseColumnsSchema, toBinary(LeaseColumnsSchema, columns));
  t.deepEqual(decoded.leaseTokens, TOKENS.slice(0, 2));
  t.deepEqual(decoded.attempts, [1, 2]);
});

test("no values, a value that is not printable ASCII, or a field number past 15: left to protobuf-es (undefined)", (t) => {
  t.is(asciiListField(4, []), undefined);
  t.is(asciiListField(4, ["ok", "ünïcode"]), undefined);
  t.is(asciiListField(4, ["ok", "tab\there"]), undefined);
  t.is(asciiListField(16, ["ok"]), undefined);
  t.is(asciiListField(0, ["ok"]), undefined);
});

test("packed uint32s pre-encoded decode to the same values, from 0 to 2^32 - 1, beside the other fields; anything else is left to protobuf-es", (t) => {
  const values = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 21, 2 ** 28, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, ...Array.from({ length: 1000 }, (_, i) => i % 3)];
  const columns = create(LeaseColumnsSchema, { keysJson: "[]" });
  columns.$unknown = [
    packedUint32Field(LeaseColumnsSchema.field.attempts.number, values)!,
    packedUint32Field(LeaseColumnsSchema.field.priorities.number, [5, 70_000])!,
  ];
  const bytes = toBinary(LeaseColumnsSchema, columns);
  const decoded = fromBinary(LeaseColumnsSchema, bytes);
  t.deepEqual(decoded.attempts, values);
  t.deepEqual(decoded.priorities, [5, 70_000]);
  t.is(decoded.keysJson, "[]");
  const plain = toBinary(LeaseColumnsSchema, create(LeaseColumnsSchema, { keysJson: "[]", attempts: values, priorities: [5, 70_000] }));
  t.is(bytes.length, plain.length, "as many bytes as protobuf-es writes for the fields");
  t.is(packedUint32Field(3, []), undefined);
  t.is(packedUint32Field(3, [1, -1]), undefined);
  t.is(packedUint32Field(3, [1, 2 ** 32]), undefined);
  t.is(packedUint32Field(3, [1.5]), undefined);
  t.is(packedUint32Field(16, [1]), undefined);
});
