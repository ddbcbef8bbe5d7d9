/**
 * wire-watch.ts: Watch's messages decoded by hand equal protobuf-es's decode of the same bytes, for
 * what the server sends (protobuf-es's encoding: a snapshot, counts, event groups with their key
 * attributes), fields in another order, Unicode and the largest exact counts; whatever it does not
 * read (the ungrouped events, unknown or repeated fields, numbers past 2^53, negative values, bad
 * UTF-8, a cut body) it leaves to protobuf-es (undefined).
 */
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import { JobEventGroupSchema, WatchResponseSchema } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { AttributeType, JobStatus, type ProgressSchema } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { decodeWatchResponse } from "../client-sdk/dist/wire-watch.js";
import { decodesAsProtobufEs } from "./helpers/wire-decoding.js";

type Init = MessageInitShape<typeof WatchResponseSchema>;

const encode = (init: Init) => toBinary(WatchResponseSchema, create(WatchResponseSchema, init));

const progress = (over: Partial<MessageInitShape<typeof ProgressSchema>> = {}) => ({
  table: "session_analysis",
  pending: 1_234n,
  reserved: 16n,
  success: 0n,
  error: 3n,
  ignore: 1n,
  target: 20_000n,
  remaining: 1_250n,
  ...over,
});

const group = (over: Partial<MessageInitShape<typeof JobEventGroupSchema>> = {}): MessageInitShape<typeof JobEventGroupSchema> => ({
  keysJson: JSON.stringify([
    { subject: "1", session: "2026-12-07" },
    { subject: "2", session: "2026-12-08" },
  ]),
  status: JobStatus.RESERVED,
  time: timestampFromMs(1_765_000_000_123),
  workerId: "node-3/1234",
  committed: false,
  errorMessages: [],
  ...over,
});

const attributes = [
  { name: "subject", type: AttributeType.INT64 },
  { name: "session", type: AttributeType.STRING },
];

test("what the server sends decodes as protobuf-es decodes it: a snapshot, counts alone, event groups with their key attributes", (t) => {
  const messages: [string, Init][] = [
    ["an empty message", {}],
    ["a snapshot (counts-only streams get these)", { cursor: "918273", progress: progress() }],
    ["zero counts", { cursor: "1", progress: progress({ pending: 0n, reserved: 0n, error: 0n, ignore: 0n, target: 0n, remaining: 0n }) }],
    [
      "event groups of every kind",
      {
        cursor: "918274",
        progress: progress(),
        eventGroups: [
          group(),
          group({ status: JobStatus.UNSPECIFIED, committed: true, workerId: "" }),
          group({ status: JobStatus.ERROR, errorMessages: ["ZeroDivisionError: division by zero", "ünïcode 🧪 failure"] }),
          group({ status: JobStatus.PENDING, time: timestampFromMs(0), keysJson: "[]" }),
        ],
        keyAttributes: attributes,
      },
    ],
    ["catch-up: groups without counts", { cursor: "5", eventGroups: [group({ status: JobStatus.IGNORE })], keyAttributes: attributes }],
    ["the largest exact counts", { cursor: "9007199254740991", progress: progress({ target: 2n ** 53n - 1n, pending: 2n ** 32n }) }],
    ["a long key list", { cursor: "7", eventGroups: [group({ keysJson: JSON.stringify(Array.from({ length: 5_000 }, (_, i) => ({ id: String(i) }))) })] }],
  ];
  for (const [label, init] of messages) decodesAsProtobufEs(t, WatchResponseSchema, decodeWatchResponse, encode(init), label);
});

test("fields in another order than protobuf-es writes them decode the same", (t) => {
  // The message's fields, each encoded alone, concatenated backwards: key attributes, groups, progress, cursor.
  const parts = [
    encode({ keyAttributes: attributes }),
    encode({ eventGroups: [group(), group({ committed: true })] }),
    encode({ progress: progress() }),
    encode({ cursor: "42" }),
  ];
  const bytes = Uint8Array.from(parts.flatMap((p) => [...p]));
  decodesAsProtobufEs(t, WatchResponseSchema, decodeWatchResponse, bytes, "reversed");
  // A group's fields backwards too: its error messages first, then the rest.
  const groupFields = [
    toBinary(JobEventGroupSchema, create(JobEventGroupSchema, { errorMessages: ["a", "b"] })),
    toBinary(JobEventGroupSchema, create(JobEventGroupSchema, { time: timestampFromMs(1_000) })),
    toBinary(JobEventGroupSchema, create(JobEventGroupSchema, { keysJson: "[]", status: JobStatus.ERROR })),
  ].flatMap((p) => [...p]);
  decodesAsProtobufEs(t, WatchResponseSchema, decodeWatchResponse, Uint8Array.from([(4 << 3) | 2, groupFields.length, ...groupFields]), "a group backwards");
});

test("what it does not read is left to protobuf-es: ungrouped events, unknown and repeated fields, wide or negative numbers, bad UTF-8, a cut body", (t) => {
  const ungrouped = encode({ cursor: "1", events: [{ status: JobStatus.RESERVED, workerId: "w" }] });
  t.is(decodeWatchResponse(ungrouped), undefined, "the ungrouped events form");
  t.is(fromBinary(WatchResponseSchema, ungrouped).events.length, 1);
  const snapshot = encode({ cursor: "1", progress: progress() });
  t.is(decodeWatchResponse(Uint8Array.from([...snapshot, ...snapshot])), undefined, "the fields twice (protobuf keeps the last cursor, merges the counts)");
  t.is(decodeWatchResponse(Uint8Array.from([...snapshot, 15 << 3, 1])), undefined, "an unknown field");
  const withUnknownCount = create(WatchResponseSchema, { progress: progress() });
  withUnknownCount.progress!.$unknown = [{ no: 9, wireType: 0, data: Uint8Array.from([1]) }];
  t.is(decodeWatchResponse(toBinary(WatchResponseSchema, withUnknownCount)), undefined, "an unknown field in the counts");
  t.is(decodeWatchResponse(encode({ progress: progress({ target: 2n ** 53n }) })), undefined, "a count past 2^53");
  t.is(decodeWatchResponse(encode({ eventGroups: [group({ time: { seconds: -1n, nanos: 0 } })] })), undefined, "a time before 1970");
  t.is(decodeWatchResponse(encode({ eventGroups: [group({ status: -1 as JobStatus })] })), undefined, "a negative status");
  const badUtf8 = Uint8Array.from([(1 << 3) | 2, 2, 0xc3, 0x28]);
  t.is(decodeWatchResponse(badUtf8), undefined, "a cursor that is not UTF-8");
  t.throws(() => fromBinary(WatchResponseSchema, badUtf8), undefined, "protobuf-es then gives the error");
  const full = encode({ cursor: "1", progress: progress(), eventGroups: [group()], keyAttributes: attributes });
  for (const cut of [1, 3, 10, 40]) t.is(decodeWatchResponse(full.subarray(0, full.length - cut)), undefined, `cut ${cut} bytes short`);
});
