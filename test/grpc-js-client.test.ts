/**
 * A client in "another language": plain @grpc/grpc-js with the .proto files
 * loaded at run time by @grpc/proto-loader, no generated code, no Connect.
 * It talks gRPC over HTTP/2 (h2c) to a real server on SQLite, the way a
 * Python or Go client would, and checks that the answers are well formed.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { createTestDatabase, type TestDatabase } from "./helpers/databases.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const PROTO_DIR = fileURLToPath(new URL("../proto", import.meta.url));

// keepCase: field names as on the wire (snake_case), as protoc-generated
// clients in other languages see them. longs: String keeps int64 exact.
const definition = protoLoader.loadSync("populus/v1/job_service.proto", {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
type ServiceClientCtor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;
const loaded = grpc.loadPackageDefinition(definition) as unknown as { populus: { v1: { JobService: ServiceClientCtor } } };

/** The untyped dynamic client: each RPC is a callback method, as proto-loader builds it. */
type Unary = (request: object, callback: (err: grpc.ServiceError | null, response: unknown) => void) => void;

function call<T>(client: grpc.Client, rpc: string, request: object): Promise<T> {
  const method = (client as unknown as Record<string, Unary>)[rpc];
  if (method === undefined) throw new Error(`no RPC ${rpc} on the loaded JobService`);
  return new Promise<T>((resolve, reject) => {
    method.call(client, request, (err, response) => (err ? reject(err) : resolve(response as T)));
  });
}

/** Reads a key as the proto-loader object form: { attributes: { name: { kind, <kind>: value } } }. */
interface LoadedValue {
  kind: string;
  [field: string]: unknown;
}
interface LoadedKey {
  attributes: Record<string, LoadedValue>;
}

/** A key with all four attribute kinds; subject_id beyond 2^53 to catch any int64 → double loss. */
function key(subject: string, session: string, weight: number, valid: boolean) {
  return {
    attributes: {
      subject_id: { int_value: subject },
      session: { string_value: session },
      weight: { double_value: weight },
      valid: { bool_value: valid },
    },
  };
}

/** The key in plain form, attributes sorted by name, for comparing what we sent with what came back. */
function plain(k: LoadedKey): string {
  const entries = Object.entries(k.attributes).sort(([a], [b]) => (a < b ? -1 : 1));
  return JSON.stringify(entries.map(([name, v]) => [name, v.kind, v[v.kind]]));
}

/**
 * grpc-js 1.14 decodes grpc-message with decodeURI, which leaves reserved
 * characters (%3B ";", %2C ",", %3A ":") encoded, while connect-node encodes
 * with encodeURIComponent. The gRPC spec (PROTOCOL-HTTP2.md, Status-Message)
 * asks decoders to decode every %XX, as grpc-go, grpc-java and grpcio do; this
 * does so, and is a no-op once grpc-js decodes fully (no message here has "%").
 */
function statusMessage(err: grpc.ServiceError | undefined): string | undefined {
  return err === undefined ? undefined : decodeURIComponent(err.details);
}

const KEYS = [key("9007199254740993", "2026-11-01 ünïcode", 0.1, true), key("-42", "2026-11-02", -1.5e300, false), key("0", "", 3, true)];

let db: TestDatabase;
let server: ServerProcess;
let client: grpc.Client;

test.before(async () => {
  db = await createTestDatabase("sqlite");
  server = await startServer({ database: db.url });
  client = new loaded.populus.v1.JobService(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});

test.after.always(async (t) => {
  client?.close();
  if (server !== undefined) t.is(await server.stop(), 0, "server exits 0 on SIGTERM");
  await db?.drop();
});

test.serial("ListTables on a fresh database answers no tables", async (t) => {
  const res = await call<{ tables: unknown[] }>(client, "ListTables", {});
  t.deepEqual(res, { tables: [] });
});

test.serial("Refresh, Reserve, GetProgress, ListTables over HTTP/2 give well-formed answers", async (t) => {
  const refreshed = await call<Record<string, string>>(client, "Refresh", { table: "GrpcSession", keys: KEYS });
  // A refresh of one call: no more calls to keep in flight, so calls_at_once is unset.
  t.deepEqual(refreshed, { added: "3", removed: "0", orphaned: "0", re_pended: "0", any_pending: true, _any_pending: "any_pending", calls_at_once: 0 });

  const again = await call<Record<string, string>>(client, "Refresh", { table: "GrpcSession", keys: KEYS });
  t.deepEqual(
    again,
    { added: "0", removed: "0", orphaned: "0", re_pended: "0", any_pending: true, _any_pending: "any_pending", calls_at_once: 0 },
    "a second refresh of the same keys adds nothing",
  );

  const before = Date.now();
  const reserved = await call<{ leases: Array<Record<string, unknown>> }>(client, "Reserve", {
    table: "GrpcSession",
    max_jobs: 2,
    worker: { worker_id: "grpc-js:1", host: "node-a", pid: 4242, user: "tester", code_version: "abc123" },
    lease_duration: { seconds: 30, nanos: 0 },
  });
  t.is(reserved.leases.length, 2);
  const sent = KEYS.map((k) => plain(toLoaded(k)));
  const tokens = new Set<string>();
  for (const lease of reserved.leases) {
    t.regex(lease.lease_token as string, /^\S{8,64}$/, "an opaque, non-empty lease token");
    tokens.add(lease.lease_token as string);
    t.is(lease.attempt, 1);
    t.is(lease.priority, 5, "the default priority");
    const expire = lease.lease_expire_time as { seconds: string; nanos: number };
    const expireMs = Number(expire.seconds) * 1000 + expire.nanos / 1e6;
    t.true(expireMs >= before + 29_000 && expireMs <= Date.now() + 31_000, `lease ends ~30 s from now, got ${new Date(expireMs).toISOString()}`);
    // Every attribute comes back with the kind and exact value it was sent with (int64 beyond 2^53 included).
    t.true(sent.includes(plain(lease.key as LoadedKey)), `leased key ${plain(lease.key as LoadedKey)} is one of the keys sent`);
  }
  t.is(tokens.size, 2, "each lease has its own token");
  t.not(JSON.stringify(reserved.leases[0]?.key), JSON.stringify(reserved.leases[1]?.key), "two different keys leased");

  const progress = await call<{ progress: Record<string, string> }>(client, "GetProgress", { table: "GrpcSession" });
  t.deepEqual(progress, {
    progress: { table: "grpc_session", pending: "1", reserved: "2", success: "0", error: "0", ignore: "0", target: "0", remaining: "3" },
  });

  const tables = await call<{ tables: Array<Record<string, unknown>> }>(client, "ListTables", {});
  t.is(tables.tables.length, 1);
  const [info] = tables.tables;
  t.is(info?.name, "grpc_session");
  t.is(info?.display_name, "GrpcSession");
  t.deepEqual(info?.key_attributes, [
    { name: "session", type: "ATTRIBUTE_TYPE_STRING" },
    { name: "subject_id", type: "ATTRIBUTE_TYPE_INT64" },
    { name: "valid", type: "ATTRIBUTE_TYPE_BOOL" },
    { name: "weight", type: "ATTRIBUTE_TYPE_DOUBLE" },
  ]);
  t.deepEqual(info?.progress, progress.progress);
  const created = info?.create_time as { seconds: string };
  t.true(Math.abs(Number(created.seconds) * 1000 - before) < 60_000, "create_time is about now");

  const rest = await call<{ leases: Array<{ key: LoadedKey }> }>(client, "Reserve", { table: "GrpcSession", max_jobs: 10 });
  t.is(rest.leases.length, 1, "only the one pending job is left");
  const leasedKeys = [...reserved.leases.map((l) => plain(l.key as LoadedKey)), ...rest.leases.map((l) => plain(l.key))];
  t.deepEqual(leasedKeys.sort(), [...sent].sort(), "every key sent was leased once, each attribute exactly as sent");
});

test.serial("a bad table name is INVALID_ARGUMENT with a message that says what is allowed", async (t) => {
  const err = await t.throwsAsync<grpc.ServiceError>(call(client, "Refresh", { table: "bad-name", keys: KEYS }));
  t.is(err?.code, grpc.status.INVALID_ARGUMENT);
  t.is(statusMessage(err), 'table "bad-name" is not a valid name; use letters, digits and underscores, starting with a letter, at most 64 characters');
  const tables = await call<{ tables: unknown[] }>(client, "ListTables", {});
  t.is(tables.tables.length, 1, "the rejected refresh declared no table");
});

test.serial("an unknown table is NOT_FOUND", async (t) => {
  const err = await t.throwsAsync<grpc.ServiceError>(call(client, "GetProgress", { table: "NeverRefreshed" }));
  t.is(err?.code, grpc.status.NOT_FOUND);
  t.is(statusMessage(err), 'table "NeverRefreshed" does not exist; a refresh declares a table and fixes its key attributes');
});

/** The request form of a key, in the loaded form the server answers with. */
function toLoaded(k: ReturnType<typeof key>): LoadedKey {
  return {
    attributes: Object.fromEntries(
      Object.entries(k.attributes).map(([name, v]) => {
        const [kind, value] = Object.entries(v)[0] as [string, unknown];
        return [name, { kind, [kind]: value }];
      }),
    ),
  };
}

test.serial("Reserve in columns and Complete in columns work for a decoder other than protobuf-es (the tokens go pre-encoded)", async (t) => {
  const table = "GrpcColumns";
  const keys = Array.from({ length: 300 }, (_, i) => key(String(i), `s${i}`, i / 2, i % 2 === 0));
  await call(client, "Refresh", { table, keys });
  const answer = await call<{ leases: unknown[]; columns: { lease_tokens: string[]; keys_json: string; attempts: number[] } }>(client, "Reserve", {
    table,
    max_jobs: 300,
    as_columns: true,
  });
  t.deepEqual(answer.leases, []);
  const tokens = answer.columns.lease_tokens;
  t.is(tokens.length, 300, "a token per job, as grpc-js's protobufjs decodes the field");
  t.is(new Set(tokens).size, 300);
  for (const token of tokens) t.regex(token, /^[!-~]{8,64}$/);
  t.is((JSON.parse(answer.columns.keys_json) as unknown[]).length, 300);
  t.deepEqual(answer.columns.attempts, new Array(300).fill(1));
  const done = await call<Record<string, string>>(client, "Complete", {
    table,
    lease_tokens: tokens,
    results_json: JSON.stringify(tokens.map((_, i) => ({ i }))),
  });
  t.deepEqual(done, { committed: "300", already_committed: "0" }, "the tokens were taken back as they came");
});
