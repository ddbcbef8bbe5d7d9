/**
 * The two one-place modules: every domain error's gRPC code (errors.ts), and
 * the canonical key form (key-codec.ts) that both dialects store.
 */
import { createHash } from "node:crypto";
import test from "ava";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { pino } from "pino";
import Database from "better-sqlite3";
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
import { attributesOf, decodeKey, encodeJsonKey, encodeKey, encodeRestriction, type KeyHashScheme } from "../server/dist/key-codec.js";
import { checkServerVersion, checkSqlMode } from "../server/dist/store/mysql/mysql-store.js";
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
  ["SQLite busy past its timeout", new Database.SqliteError("database is locked", "SQLITE_BUSY"), Code.Unavailable],
  ["SQLite busy while another process recovers the WAL", new Database.SqliteError("database is locked", "SQLITE_BUSY_RECOVERY"), Code.Unavailable],
  ["SQLite's WAL lock race", new Database.SqliteError("locking protocol", "SQLITE_PROTOCOL"), Code.Unavailable],
  ["a SQLite fault that asking again does not mend", new Database.SqliteError("database disk image is malformed", "SQLITE_CORRUPT"), Code.Internal],
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
  const encoded = encodeKey(k, attrs, "ordered", "test");
  t.is(encoded.json, '{"ok":true,"session":"2026-11-01","subject_id":"9007199254740993","w":0.5}');
  t.regex(encoded.hash, /^[0-9a-v]{32}$/);
  const back = decodeKey(encoded.json, attrs);
  t.is(back.attributes.subject_id?.kind.value, 9007199254740993n);
  t.is(encodeKey(back, attrs, "ordered", "test").hash, encoded.hash, "the same key always hashes the same");
});

const sha256Hex = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/** The hashes of one-attribute keys `id` of `values`, as Key messages, under `scheme`. */
function hashesOf(kind: "intValue" | "doubleValue" | "stringValue", values: readonly (bigint | number | string)[], scheme: KeyHashScheme) {
  const keys = values.map((value) => key({ id: { case: kind, value } as never }));
  const attrs = attributesOf(keys[0]!, "t");
  return keys.map((k) => encodeKey(k, attrs, scheme, "t"));
}

test("'ordered' key hashes: 12 digits that follow the first attribute's value in order, then 80 bits of the canonical JSON's SHA-256", (t) => {
  const orders: [string, "intValue" | "doubleValue" | "stringValue", (bigint | number | string)[]][] = [
    ["int64", "intValue", [-(2n ** 63n), -(2n ** 53n) - 1n, -1000n, -17n, 0n, 16n, 1000n, 999_999_999_999_999n, 2n ** 53n + 16n, 2n ** 63n - 1n]],
    ["double", "doubleValue", [-1e300, -2.5, -0.5, 0, 1e-300, 0.5, 2.5, 1e300]],
    ["string", "stringValue", ["", "a", "ab", "b", "sub-01", "sub-02", "z", "é", "€", "😀"]],
  ];
  for (const [type, kind, values] of orders) {
    const hashes = hashesOf(kind, values, "ordered");
    for (const [i, h] of hashes.entries()) {
      t.regex(h.hash, /^[0-9a-v]{32}$/, `${type} ${String(values[i])}`);
      t.is(h.hash.slice(12), sha256Hex(h.json).slice(0, 20), `${type} ${String(values[i])}: the rest is the SHA-256's first 80 bits`);
      if (i > 0) t.true(hashes[i - 1]!.hash.slice(0, 12) < h.hash.slice(0, 12), `${type}: ${String(values[i - 1])} before ${String(values[i])}`);
    }
  }
  // Within 16 of each other, int64 values share their 60 bits: neighbours land together.
  const [a, b] = hashesOf("intValue", [32n, 47n], "ordered");
  t.is(a!.hash.slice(0, 12), b!.hash.slice(0, 12));
  t.not(a!.hash, b!.hash);
  t.is(hashesOf("intValue", [1n], "ordered")[0]!.hash.slice(0, 12), "g00000000000", "1 + 2^63, its top 60 bits in base 32");
  const [negativeZero, zero] = hashesOf("doubleValue", [-0, 0], "ordered");
  t.is(negativeZero!.json, zero!.json);
  t.is(negativeZero!.hash, zero!.hash, "-0 and 0 are one key: one canonical JSON, one hash");
});

test("'sha256' key hashes (tables declared before 'ordered') are the first 128 bits of the canonical JSON's SHA-256, as they always were", (t) => {
  for (const h of hashesOf("stringValue", ["a", "sub-01", "é"], "sha256")) t.is(h.hash, sha256Hex(h.json).slice(0, 32));
  t.is(hashesOf("intValue", [7n], "sha256")[0]!.hash, sha256Hex('{"id":"7"}').slice(0, 32));
});

test("a key in columns (keys_json) hashes as the same key sent as a Key message, under either scheme", (t) => {
  const k = key({
    subject_id: { case: "intValue", value: -42n },
    session: { case: "stringValue", value: "2026-11-01" },
    ok: { case: "boolValue", value: false },
    w: { case: "doubleValue", value: -0.25 },
  });
  const attrs = attributesOf(k, "t");
  for (const scheme of ["sha256", "ordered"] as const) {
    const column = encodeJsonKey({ subject_id: "-42", session: "2026-11-01", ok: false, w: -0.25 }, attrs, scheme, "t");
    t.deepEqual(column, encodeKey(k, attrs, scheme, "t"), scheme);
  }
});

test("a key that does not match the table's attributes is InvalidKeyError naming both", (t) => {
  const attrs = attributesOf(key({ id: { case: "intValue", value: 1n } }), "t");
  const err = t.throws(() => encodeKey(key({ id: { case: "stringValue", value: "1" } }), attrs, "ordered", "Refresh key #2"), { instanceOf: InvalidKeyError });
  t.is(err?.message, "Refresh key #2: key { id: string } does not match the table's key attributes { id: int64 }");
  t.throws(
    () => encodeKey(key({ id: { case: "doubleValue", value: Number.NaN } }), attributesOf(key({ id: { case: "doubleValue", value: 1 } }), "t"), "ordered", "k"),
    {
      instanceOf: InvalidKeyError,
      message: 'k: attribute "id" is NaN; double values must be finite',
    },
  );
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

test("a MySQL server whose sql_mode turns backslash escapes off is refused with one clear line", (t) => {
  t.throws(() => checkSqlMode("STRICT_TRANS_TABLES,no_backslash_escapes"), {
    message: "the database's sql_mode includes NO_BACKSLASH_ESCAPES: Populus escapes values with backslashes; remove it from the server's sql_mode",
  });
  t.notThrows(() => checkSqlMode("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"));
  t.notThrows(() => checkSqlMode(""));
});
