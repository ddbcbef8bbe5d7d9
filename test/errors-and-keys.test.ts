/**
 * The two one-place modules: every domain error's gRPC code (errors.ts), and
 * the canonical key form (key-codec.ts) that both dialects store.
 */
import test from "ava";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import { KeySchema, LeaseLostDetailSchema, ValueSchema } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import {
  ContentionError,
  CursorExpiredError,
  DatabaseUnavailableError,
  InvalidKeyError,
  InvalidRequestError,
  LeaseLostError,
  LimitExceededError,
  ServiceNotFoundError,
  TableNotFoundError,
  toConnectError,
} from "../server/dist/errors.js";
import { attributesOf, decodeKey, encodeKey, encodeRestriction } from "../server/dist/key-codec.js";
import { checkServerVersion } from "../server/dist/store/mysql/mysql-store.js";
import { parseTableName } from "../server/dist/table-name.js";
import { truncateErrorMessage } from "../server/dist/store/store.js";

const silent = pino({ level: "silent" });

const cases: [string, unknown, Code][] = [
  ["InvalidRequestError", new InvalidRequestError("bad"), Code.InvalidArgument],
  ["InvalidKeyError", new InvalidKeyError("bad key"), Code.InvalidArgument],
  ["TableNotFoundError", new TableNotFoundError("Nope"), Code.NotFound],
  ["ServiceNotFoundError", new ServiceNotFoundError("x"), Code.NotFound],
  ["LeaseLostError", new LeaseLostError(["a-1"]), Code.FailedPrecondition],
  ["LimitExceededError", new LimitExceededError("too many"), Code.ResourceExhausted],
  ["CursorExpiredError", new CursorExpiredError("old"), Code.OutOfRange],
  ["ContentionError", new ContentionError("deadlock"), Code.Aborted],
  ["DatabaseUnavailableError", new DatabaseUnavailableError("down"), Code.Unavailable],
  ["mysql2 ECONNREFUSED", Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), Code.Unavailable],
  ["TypeORM-wrapped lost connection", Object.assign(new Error("q"), { driverError: { code: "PROTOCOL_CONNECTION_LOST" } }), Code.Unavailable],
  ["anything else", new Error("SELECT * FROM secret failed"), Code.Internal],
];

for (const [name, err, code] of cases) {
  test(`toConnectError: ${name} → ${Code[code]}`, (t) => {
    const mapped = toConnectError(err, "Refresh", silent);
    t.true(mapped instanceof ConnectError);
    t.is(mapped.code, code);
  });
}

test("toConnectError never shows driver or SQL text for INTERNAL and UNAVAILABLE", (t) => {
  t.is(toConnectError(new Error("SELECT * FROM secret failed"), "Refresh", silent).rawMessage, "internal error; the server logged the cause");
  t.is(
    toConnectError(Object.assign(new Error("connect ECONNREFUSED 10.0.0.1"), { code: "ECONNREFUSED" }), "Reserve", silent).rawMessage,
    "the database is unavailable; retry shortly",
  );
});

test("a lost lease carries the tokens as a LeaseLostDetail", (t) => {
  const mapped = toConnectError(new LeaseLostError(["t-1", "t-2"]), "Complete", silent);
  t.is(mapped.rawMessage, "2 leases no longer held (expired and reassigned, released or deleted): t-1, t-2; nothing was written");
  t.deepEqual(
    mapped.findDetails(LeaseLostDetailSchema).map((d) => d.leaseTokens),
    [["t-1", "t-2"]],
  );
});

const key = (
  attributes: Record<
    string,
    | { case: "intValue"; value: bigint }
    | { case: "stringValue"; value: string }
    | { case: "doubleValue"; value: number }
    | { case: "boolValue"; value: boolean }
  >,
) => create(KeySchema, { attributes: Object.fromEntries(Object.entries(attributes).map(([k, kind]) => [k, { kind }])) });

test("keys are canonical: sorted names, int64 exact as decimal strings, and round-trip", (t) => {
  const k = key({
    subject_id: { case: "intValue", value: 9007199254740993n },
    session: { case: "stringValue", value: "2026-11-01" },
    ok: { case: "boolValue", value: true },
    w: { case: "doubleValue", value: 0.5 },
  });
  const attrs = attributesOf(k, "test");
  t.deepEqual(
    attrs.map((a) => `${a.name}:${a.type}`),
    ["ok:bool", "session:string", "subject_id:int64", "w:double"],
  );
  const encoded = encodeKey(k, attrs, "test");
  t.is(encoded.json, '{"ok":true,"session":"2026-11-01","subject_id":"9007199254740993","w":0.5}');
  t.regex(encoded.hash, /^[0-9a-f]{32}$/);
  const back = decodeKey(encoded.json, attrs);
  t.is(back.attributes.subject_id?.kind.value, 9007199254740993n);
  t.is(encodeKey(back, attrs, "test").hash, encoded.hash, "the same key always hashes the same");
});

test("a key that does not match the table's attributes is InvalidKeyError naming both", (t) => {
  const attrs = attributesOf(key({ id: { case: "intValue", value: 1n } }), "t");
  const err = t.throws(() => encodeKey(key({ id: { case: "stringValue", value: "1" } }), attrs, "Refresh key #2"), { instanceOf: InvalidKeyError });
  t.is(err?.message, "Refresh key #2: key { id: string } does not match the table's key attributes { id: int64 }");
  t.throws(() => encodeKey(key({ id: { case: "doubleValue", value: Number.NaN } }), attributesOf(key({ id: { case: "doubleValue", value: 1 } }), "t"), "k"), {
    instanceOf: InvalidKeyError,
    message: 'k: attribute "id" is NaN; double values must be finite',
  });
  t.throws(() => encodeRestriction({ nope: create(ValueSchema, { kind: { case: "intValue", value: 1n } }) }, attrs, "Reserve restriction"), {
    instanceOf: InvalidKeyError,
    message: 'Reserve restriction: restriction names "nope", which is not a key attribute of { id: int64 }',
  });
});

test("table names: snake_case storage and a clear refusal", (t) => {
  t.deepEqual(parseTableName("ProcessedData"), { display: "ProcessedData", stored: "processed_data" });
  t.is(parseTableName("HTTPLog2").stored, "http_log2");
  t.is(parseTableName("processed_data").stored, "processed_data");
  t.throws(() => parseTableName("x; DROP TABLE y"), { instanceOf: InvalidRequestError, message: /is not a valid name/ });
  t.throws(() => parseTableName("A".repeat(65)), { instanceOf: InvalidRequestError });
});

test("error messages are cut to 2047 characters ending in ...truncated", (t) => {
  const cut = truncateErrorMessage("x".repeat(5000));
  t.is(cut.length, 2047);
  t.true(cut.endsWith("...truncated"));
  t.is(truncateErrorMessage("short"), "short");
});

test("servers without SKIP LOCKED are refused with one clear line", (t) => {
  t.throws(() => checkServerVersion("10.5.23-MariaDB"), {
    message: "MariaDB 10.5.23-MariaDB is too old: Populus needs MariaDB 10.6 or newer (SELECT ... SKIP LOCKED)",
  });
  t.throws(() => checkServerVersion("5.7.44"), { message: "MySQL 5.7.44 is too old: Populus needs MySQL 8.0 or newer (SELECT ... SKIP LOCKED)" });
  t.notThrows(() => checkServerVersion("10.11.19-MariaDB-0+deb12u1"));
  t.notThrows(() => checkServerVersion("8.0.36"));
});
