/**
 * server/src/service/wire-complete.ts: Complete's request in columns decoded by hand equals
 * protobuf-es's decode of the same bytes, for the SDK's encoding (tokens pre-encoded by
 * wire-ascii.ts) and protobuf-es's, Unicode and long values; whatever it does not read
 * (completions with Structs, unknown fields, bad UTF-8, a cut body) it leaves to protobuf-es.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import test from "ava";
import { CompleteRequestSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { asciiListField } from "../client-sdk/dist/wire-ascii.js";
import { decodeCompleteRequest } from "../server/dist/service/wire-complete.js";
import { decodesAsProtobufEs } from "./helpers/wire-decoding.js";

const tokens = (n: number) => Array.from({ length: n }, (_, i) => `0123456789abcdef0123456789abcdef-${i.toString(36)}`);
const results = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => ({ n: i, note: `ré ${i} 🧪` })));

function agrees(t: import("ava").ExecutionContext, bytes: Uint8Array, label: string): void {
  const both = decodesAsProtobufEs(t, CompleteRequestSchema, decodeCompleteRequest, bytes, label);
  if (both === undefined) return;
  const { decoded, reference } = both;
  t.deepEqual(
    [decoded.table, decoded.keepCompleted, decoded.leaseTokens, decoded.resultsJson],
    [reference.table, reference.keepCompleted, reference.leaseTokens, reference.resultsJson],
    label,
  );
}

test("the SDK's encoding (tokens as one pre-encoded field) and protobuf-es's decode the same", (t) => {
  for (const n of [1, 2, 1000]) {
    for (const keepCompleted of [false, true]) {
      const plain = create(CompleteRequestSchema, { table: "Sessions", keepCompleted, leaseTokens: tokens(n), resultsJson: results(n) });
      agrees(t, toBinary(CompleteRequestSchema, plain), `protobuf-es, ${n} results, keepCompleted ${keepCompleted}`);
      const sdk = create(CompleteRequestSchema, { table: "Sessions", keepCompleted, resultsJson: results(n) });
      sdk.$unknown = [asciiListField(CompleteRequestSchema.field.leaseTokens.number, tokens(n))!];
      agrees(t, toBinary(CompleteRequestSchema, sdk), `tokens pre-encoded, ${n} results, keepCompleted ${keepCompleted}`);
    }
  }
});

test("an empty request, Unicode and long tokens and table names, and a bool written as a wide varint", (t) => {
  agrees(t, new Uint8Array(0), "empty");
  const odd = ["x".repeat(127), "y".repeat(128), "z".repeat(20_000), "tökén-ü", "🧪", ""];
  agrees(
    t,
    toBinary(CompleteRequestSchema, create(CompleteRequestSchema, { table: "Tâble", leaseTokens: odd, resultsJson: results(odd.length) })),
    "odd tokens",
  );
  // keep_completed = 2, in two varint bytes: still true.
  const wideBool = Uint8Array.from([3 << 3, 0x82, 0x00]);
  agrees(t, wideBool, "a bool of 2 in two bytes");
  t.true(decodeCompleteRequest(wideBool)?.keepCompleted);
});

test("what it does not read is left to protobuf-es: completions with Structs, unknown fields, bad UTF-8, a cut body", (t) => {
  const structs = toBinary(CompleteRequestSchema, create(CompleteRequestSchema, { table: "T", completions: [{ leaseToken: "a", result: {} }] }));
  t.is(decodeCompleteRequest(structs), undefined, "completions");
  const unknown = create(CompleteRequestSchema, { table: "T" });
  unknown.$unknown = [{ no: 15, wireType: 0, data: Uint8Array.from([1]) }];
  t.is(decodeCompleteRequest(toBinary(CompleteRequestSchema, unknown)), undefined, "an unknown field");
  const badUtf8 = Uint8Array.from([(1 << 3) | 2, 2, 0xc3, 0x28]);
  t.is(decodeCompleteRequest(badUtf8), undefined, "a table name that is not UTF-8");
  t.throws(() => fromBinary(CompleteRequestSchema, badUtf8), undefined, "protobuf-es then gives the error");
  const badToken = Uint8Array.from([(4 << 3) | 2, 1, 0x41, (4 << 3) | 2, 2, 0xc3, 0x28]);
  t.is(decodeCompleteRequest(badToken), undefined, "a token that is not UTF-8");
  const whole = toBinary(CompleteRequestSchema, create(CompleteRequestSchema, { table: "T", leaseTokens: tokens(3), resultsJson: results(3) }));
  t.is(decodeCompleteRequest(whole.subarray(0, whole.length - 2)), undefined, "a body cut short");
});
