/**
 * Hostile input (promise 6, ARCHITECTURE.md) against one live server on MariaDB (the
 * SQLite file when POPULUS_TEST_DIALECTS leaves MySQL out): thousands of
 * requests sent concurrently, of four kinds:
 *
 *  - raw gRPC: random bytes as protobuf bodies in gRPC framing, broken
 *    framing, random authorization headers, over one HTTP/2 connection;
 *  - random JSON over Connect (HTTP/1.1): garbage, truncated JSON, and
 *    objects with each RPC's real field names holding values of random types,
 *    aimed at invalid table names or a decoy table they may change at will;
 *  - hand-made attacks on the tracked tables (SQL fragments and unicode in
 *    table and attribute names, wrong types, oversized and over-deep values,
 *    a valid batch spoiled by one bad key, real lease tokens misused), each
 *    with the exact code it must get;
 *  - valid requests whose values are hostile (SQL fragments, quotes, NUL,
 *    emoji, RTL marks as key values), tracked.
 *
 * Afterwards: the process is alive and healthy, it logged no internal error,
 * every answer was a well-formed gRPC or Connect answer (a result that
 * decodes as the RPC's response, or an error with a code), none was INTERNAL
 * or an HTTP 5xx (a body that does not decode is INVALID_ARGUMENT), and the database
 * holds exactly what the valid requests put there: the keys of the valid
 * refreshes and nothing else, the results of the valid completions, no table
 * made or dropped. The seed is logged; POPULUS_FUZZ_SEED=<n> replays a run.
 */
import http2 from "node:http2";
import { type DescMessage, fromBinary, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import test from "ava";
import BetterSqlite3 from "better-sqlite3";
import mysql from "mysql2/promise";
import { Health, HealthCheckResponse_ServingStatus } from "../client-sdk/dist/gen/grpc/health/v1/health_pb.js";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { JobStatus, type Key } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { preserveByteOrderMarks } from "../server/dist/text-encoding.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { allJobs, allTargets, counts, keys, only, rpcError } from "./helpers/jobs-client.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const DIALECT: Dialect = testDialects().includes("mysql") ? "mysql" : "sqlite";
const ADMIN = "fuzz-admin-token-0123456789abcdef";
const READER = "fuzz-reader-token-0123456789abcdef";

const TARGET = "FuzzTarget"; // tracked: { id: int64, name: string }
const WORK = "FuzzWork"; // tracked: { id: int64 }, leases held by the test
const DECOY = "FuzzDecoy"; // random requests may change it at will

const RAW_GRPC_REQUESTS = 3000;
const RANDOM_JSON_REQUESTS = 3000;
const VALID_REFRESHES = 300;
const IN_FLIGHT = 16;

// ---- a seeded random source, so a failing run can be replayed ----------------

const SEED = Number(process.env.POPULUS_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
let state = SEED >>> 0;
/** mulberry32 */
function random(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let x = state;
  x = Math.imul(x ^ (x >>> 15), x | 1);
  x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
  return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(list: readonly T[]): T => list[int(list.length)] as T;
const chance = (p: number) => random() < p;
function bytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}

/** Valid as string values (and stored literally), invalid as names. */
const HOSTILE_STRINGS = [
  "'; DROP TABLE `~~fuzz_target`; --",
  '" OR "1"="1',
  "1' OR '1'='1",
  "x`); DELETE FROM `fuzz_target`; --",
  "Robert'); DROP TABLE students;--",
  "$.name') = 1 OR ('1",
  "') UNION SELECT key_json FROM `~~fuzz_work` --",
  "\\",
  "\\'",
  "%",
  "_",
  "\u0000",
  "a\u0000'; SELECT 1; --",
  "ünïcødé",
  "日本語テーブル",
  "😀🚀",
  "\u202Eevil",
  "e\u0301",
  "\r\n",
  "\t",
  " ",
  "",
  "NULL",
  "null",
  "__proto__",
  "constructor",
  "a".repeat(1000),
  '{"id":"1"}',
  "$.id",
  "*/",
  "/*",
  "--",
  ";",
  "\uFEFF",
];

/** Invalid as table names and as attribute names: they must never reach SQL. */
const BAD_NAMES = [
  "fuzz_target; DROP TABLE x",
  "x'--",
  "`fuzz_target`",
  '"fuzz_target"',
  "~~fuzz_target",
  "fuzz target",
  "",
  "1abc",
  "ünï",
  "😀",
  "a".repeat(65),
  "x\u0000y",
  "x.y",
  "$.name",
  "x/*",
  "a-b",
  "name') OR 1=1 --",
  "SELECT * FROM t",
];

const INT64 = ["0", "1", "-1", "9223372036854775807", "-9223372036854775808", "4294967296", "9007199254740993", "-42"];

// ---- well-formedness of answers ------------------------------------------------

/** What went wrong, one line per answer that was not a proper gRPC/Connect answer. */
const improper: string[] = [];
/** Codes seen, for the log. */
const seen = new Map<string, number>();
function saw(kind: string): void {
  seen.set(kind, (seen.get(kind) ?? 0) + 1);
}

const METHODS = Object.values(JobService.method);
const methodByPath = new Map(METHODS.map((m) => [`/populus.v1.JobService/${m.name}`, m]));
const HANDLER_INTERNAL = "internal error; the server logged the cause";

/** Runs `tasks` with at most IN_FLIGHT at once. */
async function pool(tasks: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < tasks.length) await (tasks[next++] as () => Promise<void>)();
    }),
  );
}

let db: TestDatabase;
let server: ServerProcess;

test.before(async () => {
  // This process decodes the server's answers with protobuf-es too: without this, a key value
  // starting with U+FEFF would lose it here, on the way back, however right the server stored it.
  preserveByteOrderMarks();
  db = await createTestDatabase(DIALECT);
  server = await startServer({ database: db.url, env: { POPULUS_TOKENS: `admin:${ADMIN},reader:${READER}`, POPULUS_TOKENS_FILE: undefined } });
});

test.after.always(async () => {
  if (server !== undefined) await server.stop();
  await db?.drop();
});

const asAdmin: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${ADMIN}`);
  return next(req);
};

/** The tables the database holds, read directly (not through the server). */
async function databaseTables(): Promise<{ tables: string[]; targetJobs: number }> {
  if (db.dialect === "mysql") {
    const c = await mysql.createConnection({ uri: db.url });
    try {
      const [rows] = await c.query("SHOW TABLES");
      const tables = (rows as Record<string, string>[]).map((r) => Object.values(r)[0] as string).sort();
      const [n] = await c.query("SELECT COUNT(*) AS n FROM `~~fuzz_target`");
      return { tables, targetJobs: Number((n as { n: number }[])[0]?.n) };
    } finally {
      await c.end();
    }
  }
  const file = db.url.replace(/^sqlite:/, "");
  const sqlite = new BetterSqlite3(file, { readonly: true });
  try {
    const tables = (sqlite.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name).sort();
    const n = (sqlite.prepare('SELECT COUNT(*) AS n FROM "~~fuzz_target"').get() as { n: number }).n;
    return { tables, targetJobs: n };
  } finally {
    sqlite.close();
  }
}

function authHeader(): string | undefined {
  const r = int(10);
  if (r < 7) return `Bearer ${ADMIN}`;
  if (r === 7) return undefined;
  if (r === 8) return `Bearer ${READER}`;
  return pick([
    `Bearer ${bytes(8).toString("base64")}`,
    "Basic Zm9vOmJhcg==",
    "Bearer",
    `Bearer ${ADMIN} ${ADMIN}`,
    "bearer\u0000x",
    `Bearer ${"A".repeat(4000)}`,
  ]);
}

// ---- raw gRPC: random protobuf bodies and broken framing -----------------------

function envelope(payload: Buffer, flags = 0, declared = payload.length): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(declared >>> 0, 1);
  return Buffer.concat([head, payload]);
}

function rawGrpcBody(): Buffer {
  switch (int(8)) {
    case 0:
      return envelope(bytes(int(8)), 1); // compressed flag without grpc-encoding
    case 1:
      return envelope(bytes(int(40)), 0, int(1000) + 41); // declares more than it sends
    case 2:
      return envelope(Buffer.alloc(0), 0, 0xffffffff); // declares 4 GiB
    case 3:
      return bytes(int(5)); // not even an envelope header
    case 4:
      return Buffer.concat([envelope(bytes(int(20))), envelope(bytes(int(20)))]); // two messages for a unary call
    default:
      return envelope(bytes(int(300)));
  }
}

function rawGrpcPath(): string {
  const r = int(20);
  if (r < 16) return `/populus.v1.JobService/${pick(METHODS).name}`;
  if (r === 16) return "/grpc.health.v1.Health/Check";
  if (r === 17) return "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces.
  if (r === 18) return `/populus.v1.JobService/${pick(BAD_NAMES)}`.replace(/[\u0000-\u001f\u007f]/g, "x");
  return "/populus.v1.Nope/Refresh";
}

function rawGrpcCall(session: http2.ClientHttp2Session): Promise<void> {
  const path = rawGrpcPath();
  const body = rawGrpcBody();
  const headers: http2.OutgoingHttpHeaders = {
    ":method": "POST",
    ":path": encodeURI(path),
    "content-type": "application/grpc",
    te: "trailers",
    "grpc-timeout": "10S",
  };
  const auth = authHeader();
  if (auth !== undefined && !auth.includes("\u0000")) headers.authorization = auth;
  return new Promise((resolve) => {
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    let data = Buffer.alloc(0);
    const where = `gRPC ${path} (${body.length} bytes)`;
    const stream = session.request(headers);
    stream.on("response", (h) => (response = h));
    stream.on("trailers", (h) => (trailers = h));
    stream.on("data", (d: Buffer) => (data = Buffer.concat([data, d])));
    stream.on("error", () => undefined); // judged on close
    stream.on("close", () => {
      const status = Number(response[":status"]);
      const known = methodByPath.has(path) || path.startsWith("/grpc.");
      if (status === 404 && !known) {
        saw("gRPC HTTP 404 (unknown path)");
        return resolve();
      }
      const raw = trailers["grpc-status"] ?? response["grpc-status"];
      const code = Number(raw);
      if (status !== 200 || raw === undefined || !Number.isInteger(code) || code < 0 || code > 16) {
        improper.push(`${where}: HTTP ${status}, grpc-status ${String(raw)}`);
        return resolve();
      }
      saw(`gRPC ${code === 0 ? "OK" : Code[code]}`);
      const message = decodeURIComponent(String(trailers["grpc-message"] ?? response["grpc-message"] ?? ""));
      if (code === Code.Internal && message === HANDLER_INTERNAL) improper.push(`${where}: a handler failed (INTERNAL): see the server log`);
      else if (code === Code.Internal) improper.push(`${where}: INTERNAL for a client's mistake: ${message.slice(0, 120)}`);
      if (code !== 0 && message === "") improper.push(`${where}: ${Code[code]} without a message`);
      const method = methodByPath.get(path);
      if (code === 0 && method !== undefined && method.methodKind === "unary") {
        // A result must be one envelope holding the RPC's response message.
        const length = data.length >= 5 ? data.readUInt32BE(1) : -1;
        if (length !== data.length - 5) improper.push(`${where}: OK with a malformed body of ${data.length} bytes`);
        else {
          try {
            fromBinary(method.output, data.subarray(5));
          } catch (err) {
            improper.push(`${where}: OK, but the body is not a ${method.output.typeName}: ${String(err)}`);
          }
        }
      }
      resolve();
    });
    stream.end(body);
  });
}

// ---- random JSON over Connect ---------------------------------------------------

function randomTable(): string {
  // Never a tracked table: the decoy, or a name the server must refuse.
  return chance(0.5) ? DECOY : pick(BAD_NAMES);
}

function randomScalar(): JsonValue {
  return pick<() => JsonValue>([
    () => null,
    () => chance(0.5),
    () => pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 4294967296, -0, 255, 256, 1e21]),
    () => pick(HOSTILE_STRINGS),
    () => pick(INT64),
    () => pick(["NaN", "Infinity", "-Infinity", "1e400", "0x10", "12abc", "9223372036854775808", "-5s", "1.5s", "99999999999s", "s"]),
    () => pick(["JOB_STATUS_PENDING", "JOB_STATUS_ERROR", "JOB_STATUS_BOGUS", 99, "1"]),
  ])();
}

function randomJson(depth = 0): JsonValue {
  if (depth > 3 || chance(0.5)) return randomScalar();
  if (chance(0.5)) return Array.from({ length: int(4) }, () => randomJson(depth + 1));
  const o: Record<string, JsonValue> = {};
  for (let i = int(4); i > 0; i--) o[pick([...HOSTILE_STRINGS, "table", "keys", "attributes", "intValue"])] = randomJson(depth + 1);
  return o;
}

function randomKeyJson(): JsonValue {
  if (chance(0.2)) return randomJson();
  const attributes: Record<string, JsonValue> = {};
  for (let i = int(3) + 1; i > 0; i--) {
    const name = chance(0.5) ? "id" : pick([...BAD_NAMES, ...HOSTILE_STRINGS]);
    const kind = pick(["intValue", "stringValue", "doubleValue", "boolValue", "nullValue", pick(HOSTILE_STRINGS)]);
    attributes[name] = chance(0.8) ? { [kind]: randomScalar() } : randomJson(2);
  }
  return { attributes };
}

/** An object with the request's real field names (JSON names) holding values of random types. */
function fieldAwareRequest(input: DescMessage): Record<string, JsonValue> {
  const o: Record<string, JsonValue> = {};
  for (const f of input.fields) {
    if (!chance(0.7)) continue;
    if (f.name === "table") o[f.jsonName] = chance(0.9) ? randomTable() : randomScalar();
    else if (f.name === "keys" || f.name === "restriction") o[f.jsonName] = chance(0.7) ? Array.from({ length: int(4) }, randomKeyJson) : randomJson();
    else if (f.name === "lease_tokens" || f.name === "lease_token") o[f.jsonName] = chance(0.5) ? [pick(HOSTILE_STRINGS)] : randomScalar();
    else o[f.jsonName] = chance(0.7) ? randomScalar() : randomJson(1);
  }
  if (chance(0.2)) o[pick(HOSTILE_STRINGS)] = randomJson(1); // an unknown field
  return o;
}

function randomJsonBody(input: DescMessage): string {
  switch (int(6)) {
    case 0:
      return JSON.stringify(randomJson());
    case 1:
      return JSON.stringify(fieldAwareRequest(input)).slice(0, int(40)); // truncated
    case 2:
      return bytes(int(50)).toString("latin1");
    default:
      return JSON.stringify(fieldAwareRequest(input));
  }
}

const CONNECT_CODES = new Set([
  "canceled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
]);

async function randomJsonCall(baseUrl: string): Promise<void> {
  const method = pick(METHODS);
  const body = randomJsonBody(method.input);
  const headers: Record<string, string> = {
    "content-type": chance(0.95) ? "application/json" : pick(["text/plain", "application/proto", "application/json; charset=latin1"]),
    "connect-timeout-ms": "3000",
  };
  const auth = authHeader();
  if (auth !== undefined && !auth.includes("\u0000")) headers.authorization = auth;
  const where = `Connect ${method.name} ${body.slice(0, 120)}`;
  let res: Response;
  try {
    res = await fetch(`${baseUrl}/populus.v1.JobService/${method.name}`, { method: "POST", headers, body });
  } catch (err) {
    improper.push(`${where}: no HTTP answer: ${String(err)}`);
    return;
  }
  if (res.status === 200 && headers["content-type"] === "application/proto") {
    // The binary Connect protocol: the body is the response message itself.
    saw("Connect OK (binary)");
    try {
      fromBinary(method.output, new Uint8Array(await res.arrayBuffer()));
    } catch (err) {
      improper.push(`${where}: 200, but the body is not a ${method.output.typeName}: ${String(err)}`);
    }
    return;
  }
  const text = await res.text();
  // 415: a content type this RPC does not take (also every unary POST to the streaming Watch).
  if (res.status === 415 && (headers["content-type"] !== "application/json" || method.methodKind !== "unary")) {
    saw("Connect HTTP 415");
    return;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    improper.push(`${where}: HTTP ${res.status} with a body that is not JSON: ${text.slice(0, 80)}`);
    return;
  }
  if (res.status === 200) {
    saw("Connect OK");
    try {
      fromJson(method.output, json as JsonValue);
    } catch (err) {
      improper.push(`${where}: 200, but the body is not a ${method.output.typeName}: ${String(err)}`);
    }
    return;
  }
  const error = json as { code?: unknown; message?: unknown };
  if (typeof error.code !== "string" || !CONNECT_CODES.has(error.code)) {
    improper.push(`${where}: HTTP ${res.status} without a Connect error code: ${text.slice(0, 80)}`);
    return;
  }
  saw(`Connect ${error.code}`);
  if (error.code === "internal" && error.message === HANDLER_INTERNAL) improper.push(`${where}: a handler failed (INTERNAL): see the server log`);
  else if (error.code === "internal" || res.status >= 500)
    improper.push(`${where}: HTTP ${res.status} ${String(error.code)} for a client's mistake: ${String(error.message).slice(0, 120)}`);
}

// ---- the test --------------------------------------------------------------------

/** { id, name } as the test tracks it: the key's canonical identity. */
const identity = (id: string, name: string) => JSON.stringify([id, name]);
function identityOf(k: Key | undefined): string {
  const id = k?.attributes.id?.kind;
  const name = k?.attributes.name?.kind;
  if (id?.case !== "intValue" || name?.case !== "stringValue") throw new Error("a FuzzTarget job without { id: int64, name: string }");
  return identity(id.value.toString(), name.value);
}

function targetKey(id: string, name: string) {
  return { attributes: { id: { kind: { case: "intValue" as const, value: BigInt(id) } }, name: { kind: { case: "stringValue" as const, value: name } } } };
}

// Serial, so that no other test of this file adds tables while this one compares the database's tables.
test.serial(`${DIALECT}: thousands of hostile requests: the server stays up, answers each properly, and stores exactly the valid ones`, async (t) => {
  t.timeout(120_000);
  t.log(`seed ${SEED} (replay with POPULUS_FUZZ_SEED=${SEED})`);
  const started = Date.now();
  // Node's default of 10 MB per HTTP/2 session would refuse new calls on this connection (ENHANCE_YOUR_CALM)
  // while the attacks' multi-MiB requests are being sent.
  const client = createClient(
    JobService,
    createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [asAdmin], nodeOptions: { maxSessionMemory: 64 } }),
  );

  // The tracked tables and the decoy, and leases on WORK held by the test.
  const expected = new Set<string>();
  await client.refresh({ table: TARGET, keys: [targetKey("0", "seed")] });
  expected.add(identity("0", "seed"));
  await client.refresh({ table: WORK, keys: keys(1, 21) });
  const { leases } = await client.reserve({ table: WORK, maxJobs: 10 });
  t.is(leases.length, 10);
  const validLeases = leases.slice(0, 5);
  const attackedLeases = leases.slice(5);
  await client.refresh({ table: DECOY, keys: keys(1, 50) });
  // Attribute names that are also Object.prototype's: a key without them must not find the prototype's.
  const protoKey = (n: bigint) => ({
    attributes: { constructor: { kind: { case: "intValue" as const, value: n } }, toString: { kind: { case: "stringValue" as const, value: "s" } } },
  });
  await client.refresh({ table: "FuzzProto", keys: [protoKey(1n)] });
  const tablesBefore = await databaseTables();

  const tasks: (() => Promise<void>)[] = [];

  // Valid requests with hostile values, tracked.
  for (let i = 0; i < VALID_REFRESHES; i++) {
    const batch = Array.from({ length: int(20) + 1 }, () => [pick(INT64), pick(HOSTILE_STRINGS)] as const);
    tasks.push(async () => {
      await client.refresh({ table: TARGET, keys: batch.map(([id, name]) => targetKey(id, name)) });
      for (const [id, name] of batch) expected.add(identity(id, name));
    });
  }
  const results = new Map<string, unknown>();
  validLeases.forEach((lease, i) => {
    const result: JsonObject = { note: HOSTILE_STRINGS[i] ?? "", nested: { list: [1, "two", null, true], text: pick(HOSTILE_STRINGS) } };
    tasks.push(async () => {
      t.is((await client.complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken, result }] })).committed, 1n);
      results.set(String(lease.key?.attributes.id?.kind.value), result);
    });
  });

  // Hand-made attacks on the tracked tables, each with the code it must get.
  /** "released none": a Release of a well-formed but unknown lease token is answered as lost, and releases nothing. */
  type Expected = Code | "released none";
  const attacks: [string, () => Promise<unknown>, Expected][] = [];
  const attack = (what: string, call: () => Promise<unknown>, code: Expected) => attacks.push([what, call, code]);
  for (const bad of BAD_NAMES) {
    attack(`Refresh table ${JSON.stringify(bad)}`, () => client.refresh({ table: bad, keys: [targetKey("1", "x")] }), Code.InvalidArgument);
    attack(`DeleteJobs table ${JSON.stringify(bad)}`, () => client.deleteJobs({ table: bad, statuses: [JobStatus.PENDING] }), Code.InvalidArgument);
    attack(`DeleteTargets table ${JSON.stringify(bad)}`, () => client.deleteTargets({ table: bad, all: true }), Code.InvalidArgument);
    attack(`GetProgress table ${JSON.stringify(bad)}`, () => client.getProgress({ table: bad }), Code.InvalidArgument);
    attack(
      `Complete a real lease on table ${JSON.stringify(bad)}`,
      () => client.complete({ table: bad, completions: [{ leaseToken: attackedLeases[0]?.leaseToken as string }] }),
      Code.InvalidArgument,
    );
    const badKey = { attributes: { id: { kind: { case: "intValue" as const, value: 1n } }, [bad]: { kind: { case: "stringValue" as const, value: "x" } } } };
    attack(`Refresh attribute ${JSON.stringify(bad)}`, () => client.refresh({ table: TARGET, keys: [badKey] }), Code.InvalidArgument);
    attack(`Ignore attribute ${JSON.stringify(bad)}`, () => client.ignore({ table: TARGET, keys: [badKey] }), Code.InvalidArgument);
    attack(
      `ListJobs restricted on attribute ${JSON.stringify(bad)}`,
      () => client.listJobs({ table: TARGET, restriction: { [bad]: { kind: { case: "stringValue", value: "x" } } } }),
      Code.InvalidArgument,
    );
    attack(
      `Reserve restricted on attribute ${JSON.stringify(bad)}`,
      () => client.reserve({ table: WORK, maxJobs: 5, restriction: { [bad]: { kind: { case: "intValue", value: 1n } } } }),
      Code.InvalidArgument,
    );
  }
  for (const s of HOSTILE_STRINGS) {
    // A valid batch spoiled by its last key must add none of it (no partial writes).
    const spoiled = [
      targetKey("777", `never-${s}`),
      { attributes: { id: { kind: { case: "stringValue" as const, value: s } }, name: { kind: { case: "stringValue" as const, value: s } } } },
    ];
    attack(
      `Refresh with a wrongly typed last key (${JSON.stringify(s).slice(0, 30)})`,
      () => client.refresh({ table: TARGET, keys: spoiled }),
      Code.InvalidArgument,
    );
    // Lease tokens are printable ASCII, at most 64 characters: anything else is refused before the store.
    const tokenLike = /^[\x21-\x7e]{1,64}$/.test(s);
    attack(
      `Complete with lease token ${JSON.stringify(s).slice(0, 30)}`,
      () => client.complete({ table: WORK, completions: [{ leaseToken: s }] }),
      tokenLike ? Code.FailedPrecondition : Code.InvalidArgument,
    );
    attack(
      `Fail with lease token ${JSON.stringify(s).slice(0, 30)}`,
      () => client.fail({ table: WORK, leaseToken: s, errorMessage: s, errorStack: s }),
      tokenLike ? Code.FailedPrecondition : Code.InvalidArgument,
    );
    attack(
      `Release lease token ${JSON.stringify(s).slice(0, 30)}`,
      () => client.release({ table: WORK, leaseTokens: [s] }),
      tokenLike ? "released none" : Code.InvalidArgument,
    );
    attack(
      `Watch cursor ${JSON.stringify(s).slice(0, 30)}`,
      async () => {
        for await (const _ of client.watch({ table: TARGET, cursor: s || "x" })) break;
      },
      Code.InvalidArgument,
    );
    attack(`ListJobs page token ${JSON.stringify(s).slice(0, 30)}`, () => client.listJobs({ table: TARGET, pageToken: s || "x" }), Code.InvalidArgument);
  }
  const nested = (depth: number): JsonObject => (depth <= 1 ? { leaf: 1 } : { deeper: nested(depth - 1) });
  for (const lease of attackedLeases) {
    attack(
      "Complete a real lease with a result nested 33 deep",
      () => client.complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken, result: nested(33) }] }),
      Code.InvalidArgument,
    );
    // Deeper than protobuf-es decodes (100 message levels): refused by the decoder, before any handler.
    attack(
      "Complete a real lease with a result nested 60 deep",
      () => client.complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken, result: nested(60) }] }),
      Code.InvalidArgument,
    );
    attack(
      "Complete a real lease with a 5 MiB result",
      () => client.complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken, result: { blob: "x".repeat(5 * 1024 * 1024) } }] }),
      Code.InvalidArgument,
    );
    attack(
      "Complete a real lease on the wrong table",
      () => client.complete({ table: TARGET, completions: [{ leaseToken: lease.leaseToken }] }),
      Code.FailedPrecondition,
    );
    attack(
      "Fail a real lease on a table never declared",
      () => client.fail({ table: "NeverDeclared", leaseToken: lease.leaseToken, errorMessage: "x" }),
      Code.NotFound,
    );
    attack(
      "Complete a real lease twice in one call",
      () => client.complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken }, { leaseToken: lease.leaseToken }] }),
      Code.InvalidArgument,
    );
    attack(
      "Complete a real lease as a reader",
      () =>
        createClient(
          JobService,
          createGrpcTransport({
            baseUrl: server.url,
            interceptors: [
              (next) => (req) => {
                req.header.set("authorization", `Bearer ${READER}`);
                return next(req);
              },
            ],
          }),
        ).complete({ table: WORK, completions: [{ leaseToken: lease.leaseToken }] }),
      Code.PermissionDenied,
    );
  }
  const intValue = (value: bigint) => ({ kind: { case: "intValue" as const, value } });
  attack(
    "Refresh a { constructor, toString } table with other attributes",
    () => client.refresh({ table: "FuzzProto", keys: [{ attributes: { a: intValue(1n), b: intValue(2n) } }] }),
    Code.InvalidArgument,
  );
  attack(
    "Ignore on a { constructor, toString } table with one attribute",
    () => client.ignore({ table: "FuzzProto", keys: [{ attributes: { valueOf: intValue(1n) } }] }),
    Code.InvalidArgument,
  );
  attack(
    "Refresh with a __proto__ attribute",
    () => client.refresh({ table: TARGET, keys: [{ attributes: { id: intValue(1n), __proto__: { kind: { case: "stringValue", value: "x" } } } }] }),
    Code.InvalidArgument,
  );
  attack(
    "Refresh with 33 attributes",
    () =>
      client.refresh({
        table: TARGET,
        keys: [{ attributes: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`a${i}`, { kind: { case: "boolValue" as const, value: true } }])) }],
      }),
    Code.InvalidArgument,
  );
  attack("Refresh with a 5 KB name", () => client.refresh({ table: TARGET, keys: [targetKey("1", "n".repeat(5000))] }), Code.InvalidArgument);
  attack("Refresh with priority 256", () => client.refresh({ table: TARGET, keys: [targetKey("1", "p")], priority: 256 }), Code.InvalidArgument);
  attack("Refresh with a negative delay", () => client.refresh({ table: TARGET, keys: [targetKey("1", "d")], delay: { seconds: -5n } }), Code.InvalidArgument);
  attack(
    "Refresh with 10,001 keys",
    () => client.refresh({ table: TARGET, keys: Array.from({ length: 10_001 }, (_, i) => targetKey(String(i), "many")) }),
    Code.ResourceExhausted,
  );
  attack("DeleteTargets with a key of the wrong attributes", () => client.deleteTargets({ table: WORK, keys: [targetKey("1", "x")] }), Code.InvalidArgument);
  attack("Reserve 1,001 jobs", () => client.reserve({ table: WORK, maxJobs: 1001 }), Code.InvalidArgument);
  for (const [what, call, code] of attacks) {
    tasks.push(async () => {
      if (code === "released none") {
        const res = (await call()) as { released: bigint; lostLeaseTokens: string[] };
        t.is(res.released, 0n, what);
        t.is(res.lostLeaseTokens.length, 1, what);
        return;
      }
      const err = await rpcError(call()).catch((e: unknown) => {
        throw new Error(`${what}: ${String(e)}`);
      });
      saw(`attack ${Code[err.code]}`);
      t.is(Code[err.code], Code[code], `${what}: ${err.rawMessage.slice(0, 200)}`);
      if (what.endsWith("nested 60 deep")) t.regex(err.rawMessage, /did not decode as a populus\.v1\.CompleteRequest message.*maximum recursion depth/, what);
      t.not(err.rawMessage, HANDLER_INTERNAL, what);
    });
  }

  // Raw gRPC and random JSON.
  const session = http2.connect(server.url);
  session.on("error", (err) => improper.push(`the HTTP/2 connection failed: ${String(err)}`));
  for (let i = 0; i < RAW_GRPC_REQUESTS; i++) tasks.push(() => rawGrpcCall(session));
  for (let i = 0; i < RANDOM_JSON_REQUESTS; i++) tasks.push(() => randomJsonCall(server.url));

  // Shuffled, so every kind runs alongside every other.
  for (let i = tasks.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [tasks[i], tasks[j]] = [tasks[j] as () => Promise<void>, tasks[i] as () => Promise<void>];
  }
  await pool(tasks);
  session.close();
  t.log(
    `${tasks.length} requests in ${((Date.now() - started) / 1000).toFixed(1)} s: ${[...seen]
      .sort()
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}`,
  );

  // Every answer was proper.
  t.deepEqual(improper.slice(0, 20), [], `${improper.length} improper answers`);

  // Alive, healthy, and nothing failed inside a handler.
  t.is(server.process.exitCode, null, "the server process is alive");
  const health = await createClient(Health, createGrpcTransport({ baseUrl: server.url })).check({ service: "" });
  t.is(health.status, HealthCheckResponse_ServingStatus.SERVING);
  const errors = server.logs.filter((l) => /"level":(50|60)/.test(l));
  t.deepEqual(errors.slice(0, 5), [], "no error logged");

  // Exactly the valid refreshes' keys, nothing from the attacks.
  const jobs = await allJobs(client, TARGET);
  const stored = new Set(jobs.map((j) => identityOf(j.key)));
  t.deepEqual([...stored].filter((k) => !expected.has(k)).sort(), [], "stored, but never sent in a valid refresh");
  t.deepEqual([...expected].filter((k) => !stored.has(k)).sort(), [], "sent in a valid refresh, but not stored");
  t.is(jobs.length, expected.size, "no key twice");
  t.deepEqual(await counts(client, TARGET), only({ pending: expected.size, remaining: expected.size }));
  // Restrictions whose values are SQL fragments match exactly the keys with that value.
  for (const s of HOSTILE_STRINGS) {
    const { jobs: matched } = await client.listJobs({ table: TARGET, restriction: { name: { kind: { case: "stringValue", value: s } } }, pageSize: 1000 });
    t.deepEqual(
      matched.map((j) => identityOf(j.key)).sort(),
      [...expected].filter((e) => (JSON.parse(e) as [string, string])[1] === s).sort(),
      `restriction name = ${JSON.stringify(s).slice(0, 40)}`,
    );
  }

  // WORK: the valid completions committed with their results; the attacked leases still held.
  const rows = await allTargets(client, WORK);
  const byId = (entries: [string, unknown][]) => entries.sort(([a], [b]) => (a < b ? -1 : 1));
  t.deepEqual(byId(rows.map((r) => [String(r.key?.attributes.id?.kind.value), r.result])), byId([...results]));
  t.deepEqual(await counts(client, WORK), only({ pending: 10, reserved: 5, target: 5, remaining: 15 }));
  t.deepEqual(await counts(client, "FuzzProto"), only({ pending: 1, remaining: 1 }));
  const held = await allJobs(client, WORK, [JobStatus.RESERVED]);
  t.deepEqual(held.map((j) => String(j.key?.attributes.id?.kind.value)).sort(), attackedLeases.map((l) => String(l.key?.attributes.id?.kind.value)).sort());

  // The database, read directly: no table made or dropped, the jobs table holds exactly the tracked keys.
  const after = await databaseTables();
  t.deepEqual(after.tables, tablesBefore.tables);
  t.is(after.targetJobs, expected.size);
});

/**
 * A restriction matches a string value exactly: MySQL/MariaDB text collations
 * pad spaces ("a" = "a "), so the store compares restriction values as bytes.
 */
test.serial(`${DIALECT}: a restriction on a string matches it exactly, trailing spaces included`, async (t) => {
  const client = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [asAdmin] }));
  const names = ["", " ", "a", "a ", "a  ", " a"];
  await client.refresh({ table: "FuzzPad", keys: names.map((n, i) => targetKey(String(i), n)) });
  for (const [i, n] of names.entries()) {
    const { jobs } = await client.listJobs({ table: "FuzzPad", restriction: { name: { kind: { case: "stringValue", value: n } } } });
    t.deepEqual(
      jobs.map((j) => identityOf(j.key)),
      [identity(String(i), n)],
      `restriction name = ${JSON.stringify(n)}`,
    );
  }
});
