/**
 * Who may do what: a real server with a tokens file, and every
 * JobService RPC called as each kind of caller (reader, worker and admin
 * tokens, no token, a wrong token). Each cell of that table is its own test
 * and asserts the exact outcome: the RPC's own answer (OK, or the domain
 * error its request provokes) when the role suffices, UNAUTHENTICATED or
 * PERMISSION_DENIED (naming the role needed, never a token) when not.
 * Also: health, reflection and /metrics stay open; the tokens never reach a
 * log line; a non-loopback bind without tokens exits 2 unless --insecure;
 * tokens from POPULUS_TOKENS; tokens-file mistakes exit 2 without echoing a token.
 *
 * SQLite only: authorization happens before any store call, so the dialect
 * cannot change an outcome here.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Client, Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import test from "ava";
import { connect, PermissionDeniedError, UnauthenticatedError } from "../client-sdk/dist/index.js";
import { Health, HealthCheckResponse_ServingStatus } from "../client-sdk/dist/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../client-sdk/dist/gen/grpc/reflection/v1/reflection_pb.js";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { createTestDatabase, type TestDatabase } from "./helpers/databases.js";
import { codeName, key, keys } from "./helpers/jobs-client.js";
import { runServerToExit, type ServerProcess, startServer } from "./helpers/server-process.js";

const TABLE = "AuthMatrix";
/** Well formed (the server's lease-token shape) but never issued: Complete and Fail answer FAILED_PRECONDITION. */
const UNISSUED_LEASE = `${"0".repeat(32)}-zz`;

/** Env vars the server reads for auth, unset so only what a test gives counts. */
const CLEAN_ENV: NodeJS.ProcessEnv = {
  POPULUS_TOKENS: undefined,
  POPULUS_TOKENS_FILE: undefined,
  POPULUS_INSECURE: undefined,
  POPULUS_HOST: undefined,
  POPULUS_TLS_CERT: undefined,
  POPULUS_TLS_KEY: undefined,
};

const token = () => randomBytes(24).toString("hex");
const TOKENS = { reader: token(), worker: token(), admin: token() } as const;
/** Well formed, right length, configured nowhere. */
const WRONG = token();

type Role = keyof typeof TOKENS;
type CallerKind = Role | "none" | "wrong";
const CALLERS: readonly CallerKind[] = ["reader", "worker", "admin", "none", "wrong"];

const dirs: string[] = [];
let db: TestDatabase;
let server: ServerProcess;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "populus-auth-"));
  dirs.push(dir);
  return dir;
}

function tokensFile(lines: string): string {
  const path = join(tempDir(), "tokens");
  writeFileSync(path, lines, { mode: 0o600 });
  return path;
}

function bearer(value: string | undefined): Interceptor {
  return (next) => (req) => {
    if (value !== undefined) req.header.set("authorization", `Bearer ${value}`);
    return next(req);
  };
}

function tokenOf(caller: CallerKind): string | undefined {
  return caller === "none" ? undefined : caller === "wrong" ? WRONG : TOKENS[caller];
}

const clients = new Map<CallerKind, Client<typeof JobService>>();
function clientAs(caller: CallerKind): Client<typeof JobService> {
  let c = clients.get(caller);
  if (c === undefined) {
    c = createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [bearer(tokenOf(caller))] }));
    clients.set(caller, c);
  }
  return c;
}

test.before(async () => {
  db = await createTestDatabase("sqlite");
  const file = tokensFile(["# role token", `reader ${TOKENS.reader}`, "", `worker ${TOKENS.worker}`, `admin   ${TOKENS.admin}`, ""].join("\n"));
  // debug: the most a log can say must still not include a token.
  server = await startServer({ database: db.url, args: ["--tokens-file", file, "--log-level", "debug"], env: CLEAN_ENV });
  await clientAs("admin").refresh({ table: TABLE, keys: keys(1, 4) });
});

test.after.always(async () => {
  if (server !== undefined) await server.stop();
  await db?.drop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * One harmless, valid request per RPC and what it answers when the role
 * suffices: OK, or FAILED_PRECONDITION for Complete/Fail of a lease never
 * issued (a domain error: the call got past authorization into the service).
 */
const CALLS: Record<keyof typeof JobService.method, { needs: Role; allowed: Code | "OK"; call: (c: Client<typeof JobService>) => Promise<unknown> }> = {
  listJobs: { needs: "reader", allowed: "OK", call: (c) => c.listJobs({ table: TABLE }) },
  getProgress: { needs: "reader", allowed: "OK", call: (c) => c.getProgress({ table: TABLE }) },
  listTables: { needs: "reader", allowed: "OK", call: (c) => c.listTables({}) },
  listTargets: { needs: "reader", allowed: "OK", call: (c) => c.listTargets({ table: TABLE }) },
  watch: {
    needs: "reader",
    allowed: "OK",
    // The first message (the snapshot) proves the stream was served; break closes it.
    call: async (c) => {
      for await (const m of c.watch({ table: TABLE, countsOnly: true })) {
        if (m.progress === undefined) throw new Error("the first Watch message has no progress snapshot");
        break;
      }
    },
  },
  refresh: { needs: "worker", allowed: "OK", call: (c) => c.refresh({ table: TABLE, keys: [key(1)] }) },
  claimRefresh: { needs: "worker", allowed: "OK", call: (c) => c.claimRefresh({ table: TABLE, claimId: "auth-test" }) },
  abandonRefresh: { needs: "worker", allowed: "OK", call: (c) => c.abandonRefresh({ table: TABLE, claimId: "auth-test" }) },
  reserve: { needs: "worker", allowed: "OK", call: (c) => c.reserve({ table: TABLE, maxJobs: 1 }) },
  complete: { needs: "worker", allowed: Code.FailedPrecondition, call: (c) => c.complete({ table: TABLE, completions: [{ leaseToken: UNISSUED_LEASE }] }) },
  fail: { needs: "worker", allowed: Code.FailedPrecondition, call: (c) => c.fail({ table: TABLE, leaseToken: UNISSUED_LEASE, errorMessage: "x" }) },
  heartbeat: { needs: "worker", allowed: "OK", call: (c) => c.heartbeat({ table: TABLE, leaseTokens: [UNISSUED_LEASE] }) },
  release: { needs: "worker", allowed: "OK", call: (c) => c.release({ table: TABLE, leaseTokens: [UNISSUED_LEASE] }) },
  deleteJobs: { needs: "admin", allowed: "OK", call: (c) => c.deleteJobs({ table: TABLE, keys: [key(999)] }) },
  deleteTargets: { needs: "admin", allowed: "OK", call: (c) => c.deleteTargets({ table: TABLE, keys: [key(999)] }) },
  ignore: { needs: "admin", allowed: "OK", call: (c) => c.ignore({ table: TABLE, keys: [key(998)] }) },
};

const RANK: Record<Role, number> = { reader: 0, worker: 1, admin: 2 };

async function outcome(call: Promise<unknown>): Promise<{ code: Code | "OK"; message: string }> {
  try {
    await call;
    return { code: "OK", message: "" };
  } catch (err) {
    if (err instanceof ConnectError) return { code: err.code, message: err.rawMessage };
    throw err;
  }
}

const show = (c: Code | "OK") => (c === "OK" ? "OK" : codeName(c));

test.serial("the matrix covers every JobService RPC", (t) => {
  t.deepEqual(Object.keys(CALLS).sort(), Object.keys(JobService.method).sort());
});

for (const [rpc, spec] of Object.entries(CALLS)) {
  const rpcName = JobService.method[rpc as keyof typeof JobService.method].name;
  for (const caller of CALLERS) {
    const expected: Code | "OK" =
      caller === "none" || caller === "wrong" ? Code.Unauthenticated : RANK[caller] >= RANK[spec.needs] ? spec.allowed : Code.PermissionDenied;
    test.serial(`${rpcName} as ${caller === "none" ? "no token" : caller === "wrong" ? "a wrong token" : caller} → ${show(expected)}`, async (t) => {
      const got = await outcome(spec.call(clientAs(caller)));
      t.is(show(got.code), show(expected), got.message);
      if (got.code === Code.PermissionDenied) {
        t.is(got.message, `${rpcName} needs the ${spec.needs} role; this token has the ${caller} role`);
      }
      if (caller === "none")
        t.is(got.message, `${rpcName} needs a bearer token: send the header "authorization: Bearer <token>" (SDK: connect({ token }) or POPULUS_TOKEN)`);
      if (caller === "wrong") t.is(got.message, "the bearer token is not valid on this server");
      for (const secret of [...Object.values(TOKENS), WRONG]) t.false(got.message.includes(secret), "no token in the message");
    });
  }
}

test.serial("every protocol is checked: gRPC, gRPC-Web and Connect without a token are UNAUTHENTICATED, with one are served", async (t) => {
  const transports: [string, (interceptors: Interceptor[]) => Transport][] = [
    ["gRPC", (interceptors) => createGrpcTransport({ baseUrl: server.url, interceptors })],
    ["gRPC-Web", (interceptors) => createGrpcWebTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors })],
    ["Connect/HTTP1.1", (interceptors) => createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors })],
  ];
  for (const [name, make] of transports) {
    const anonymous = createClient(JobService, make([]));
    t.is(show((await outcome(anonymous.getProgress({ table: TABLE }))).code), "Unauthenticated", name);
    const reader = createClient(JobService, make([bearer(TOKENS.reader)]));
    t.is(show((await outcome(reader.getProgress({ table: TABLE }))).code), "OK", name);
    t.is(show((await outcome(reader.deleteJobs({ table: TABLE, keys: [key(1)] }))).code), "PermissionDenied", name);
  }
});

test.serial("the scheme is case-insensitive; any other scheme or a bare token is UNAUTHENTICATED", async (t) => {
  const post = (authorization: string) =>
    fetch(`${server.url}/populus.v1.JobService/GetProgress`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization },
      body: JSON.stringify({ table: TABLE }),
    });
  t.is((await post(`bearer ${TOKENS.reader}`)).status, 200);
  for (const header of [`Basic ${TOKENS.reader}`, TOKENS.reader, `Bearer ${TOKENS.reader} extra`, "Bearer"]) {
    const res = await post(header);
    t.is(res.status, 401, header.slice(0, 10));
    t.is(((await res.json()) as { code: string }).code, "unauthenticated");
  }
});

test.serial("health, reflection and GET /metrics answer without a token", async (t) => {
  const transport = createGrpcTransport({ baseUrl: server.url });
  const health = await createClient(Health, transport).check({ service: "" });
  t.is(health.status, HealthCheckResponse_ServingStatus.SERVING);
  const reflection = createClient(ServerReflection, transport);
  async function* listServices() {
    yield { messageRequest: { case: "listServices" as const, value: "" } };
  }
  const names: string[] = [];
  for await (const res of reflection.serverReflectionInfo(listServices())) {
    if (res.messageResponse.case === "listServicesResponse") names.push(...res.messageResponse.value.service.map((s) => s.name));
    break;
  }
  t.true(names.includes("populus.v1.JobService"), names.join(", "));
  const metrics = await fetch(`${server.url}/metrics`);
  t.is(metrics.status, 200);
  // Refused calls are timed too, with their code (the auth interceptor sits inside the metrics one).
  t.regex(await metrics.text(), /populus_rpc_duration_seconds_count\{method="DeleteJobs",code="PermissionDenied"\} [1-9]/);
});

test.serial("the SDK sends connect({ token }) and reports refusals as typed errors", async (t) => {
  const definition = { keySource: [], make: () => ({}), module: import.meta.url };
  const asReader = connect({ url: server.url, token: TOKENS.reader }).table(TABLE, definition);
  t.is((await asReader.jobs.progress()).target, 0);
  const denied = await t.throwsAsync(asReader.jobs.refresh());
  t.true(denied instanceof PermissionDeniedError, String(denied));
  const anonymous = connect({ url: server.url }).table("AuthMatrixAnonymous", definition);
  const refused = await t.throwsAsync(anonymous.jobs.progress());
  t.true(refused instanceof UnauthenticatedError, String(refused));
});

// Serial tests run in order, so this one sees the log of every call above.
test.serial("no token, nor its SHA-256, appears in any log line", (t) => {
  t.true(server.logs.length >= 2, "the server logged");
  t.true(
    server.logs.some((l) => l.includes('"auth":{"reader":1,"worker":1,"admin":1}')),
    "the listening line counts the tokens per role",
  );
  const log = server.logs.join("\n");
  for (const secret of [...Object.values(TOKENS), WRONG]) {
    t.false(log.includes(secret), "a token is in the log");
    t.false(log.includes(createHash("sha256").update(secret).digest("hex")), "a token's hash is in the log");
  }
});

test("POPULUS_TOKENS configures tokens from the environment", async (t) => {
  const envDb = await createTestDatabase("sqlite");
  const admin = token();
  const s = await startServer({ database: envDb.url, env: { ...CLEAN_ENV, POPULUS_TOKENS: `reader:${token()}, admin:${admin}` } });
  t.teardown(async () => {
    await s.stop();
    await envDb.drop();
  });
  const as = (value: string | undefined) =>
    createClient(JobService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1", interceptors: [bearer(value)] }));
  t.is(show((await outcome(as(admin).refresh({ table: "Env", keys: [key(1)] }))).code), "OK");
  t.is(show((await outcome(as(undefined).listTables({}))).code), "Unauthenticated");
  t.false(s.logs.join("\n").includes(admin));
});

// ---- where the server may listen -------------------------------------------------

const NON_LOOPBACK_LINE =
  "populus-server: --host 0.0.0.0 is not a loopback address and no tokens are configured, so anyone who reaches it could delete jobs; " +
  "give --tokens-file (or POPULUS_TOKENS), or --insecure to serve it unauthenticated anyway\n";

async function runInTemp(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const cwd = tempDir();
  const r = await runServerToExit(args, { ...CLEAN_ENV, ...env }, cwd);
  return { ...r, files: readdirSync(cwd) };
}

test("a non-loopback --host without tokens exits 2 before opening the database", async (t) => {
  const r = await runInTemp(["--host", "0.0.0.0", "--port", "0", "--database", "sqlite:populus.db"]);
  t.is(r.code, 2);
  t.is(r.stderr, NON_LOOPBACK_LINE);
  t.deepEqual(r.files, [], "no database file created");
});

test("POPULUS_HOST counts like --host, and POPULUS_INSECURE=false does not switch the check off", async (t) => {
  const r = await runInTemp(["--port", "0", "--database", "sqlite:populus.db"], { POPULUS_HOST: "0.0.0.0", POPULUS_INSECURE: "false" });
  t.is(r.code, 2);
  t.is(r.stderr, NON_LOOPBACK_LINE);
  const bad = await runInTemp(["--port", "0"], { POPULUS_INSECURE: "maybe" });
  t.is(bad.code, 2);
  t.is(bad.stderr, 'populus-server: POPULUS_INSECURE must be true or false (or 1/0, yes/no, on/off), got "maybe"\n');
});

test("--insecure serves a non-loopback address without tokens, and warns", async (t) => {
  const insecureDb = await createTestDatabase("sqlite");
  const s = await startServer({ database: insecureDb.url, args: ["--host", "0.0.0.0", "--insecure"], env: CLEAN_ENV });
  t.teardown(async () => {
    await s.stop();
    await insecureDb.drop();
  });
  t.true(
    s.logs.some((l) => l.includes('"level":40') && l.includes("--insecure")),
    "a warning says the service is open",
  );
  const anonymous = createClient(JobService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  t.is(show((await outcome(anonymous.refresh({ table: "Open", keys: [key(1)] }))).code), "OK");
});

test("a non-loopback --host with tokens starts and demands them", async (t) => {
  const tokenDb = await createTestDatabase("sqlite");
  const s = await startServer({ database: tokenDb.url, args: ["--host", "0.0.0.0", "--tokens-file", tokensFile(`admin ${token()}\n`)], env: CLEAN_ENV });
  t.teardown(async () => {
    await s.stop();
    await tokenDb.drop();
  });
  const anonymous = createClient(JobService, createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }));
  t.is(show((await outcome(anonymous.listTables({}))).code), "Unauthenticated");
});

for (const host of ["localhost", "127.0.0.2"]) {
  test(`--host ${host} is loopback: it starts without tokens`, async (t) => {
    const loopDb = await createTestDatabase("sqlite");
    const s = await startServer({ database: loopDb.url, args: ["--host", host], env: CLEAN_ENV });
    t.teardown(() => loopDb.drop());
    t.is(await s.stop(), 0);
  });
}

// ---- tokens-file mistakes: exit 2, one line, never the token ----------------------

const SHORT = "shorttoken";

const badTokens = test.macro({
  title: (given) => `tokens: ${given} → exit 2, one line naming the place, not the token`,
  async exec(t, setup: () => { args: string[]; env?: NodeJS.ProcessEnv }, line: (args: string[]) => string) {
    const { args, env } = setup();
    const r = await runInTemp(["--port", "0", "--database", "sqlite:populus.db", ...args], env);
    t.is(r.code, 2);
    t.is(r.stderr, `populus-server: ${line(args)}\n`);
    t.false(r.stderr.includes(SHORT), "the token is not echoed");
    t.deepEqual(r.files, [], "no database file created");
  },
});

const fileArgs = (content: string) => () => ({ args: ["--tokens-file", tokensFile(content)] });
test(
  "missing file",
  badTokens,
  () => ({ args: ["--tokens-file", join(tmpdir(), `populus-none-${token()}`)] }),
  (a) => `--tokens-file ${a[1]}: no such file`,
);
test(
  "empty file",
  badTokens,
  fileArgs("# nothing yet\n\n"),
  (a) => `${a[1]} holds no tokens; give at least one "<role> <token>" (roles: reader, worker, admin)`,
);
test("unknown role", badTokens, fileArgs(`admin ${token()}\nroot ${token()}\n`), (a) => `${a[1]}:2: unknown role "root"; use reader, worker or admin`);
test(
  "short token",
  badTokens,
  fileArgs(`worker ${SHORT}\n`),
  (a) => `${a[1]}:1: the token is ${SHORT.length} characters; at least 16 are required (e.g. openssl rand -hex 32)`,
);
test("three fields", badTokens, fileArgs(`worker ${SHORT} extra\n`), (a) => `${a[1]}:1: expected "<role> <token>", got 3 fields`);
test(
  "a token a header cannot carry",
  badTokens,
  fileArgs(`worker ${SHORT}"quoted"${SHORT}\n`),
  (a) => `${a[1]}:1: the token has characters a bearer token cannot have; use letters, digits and - . _ ~ + / (e.g. openssl rand -hex 32)`,
);
const dup = token();
test(
  "one token, two roles",
  badTokens,
  fileArgs(`reader ${dup}\n\nadmin ${dup}\n`),
  (a) => `${a[1]}:3: the same token is already given at ${a[1]}:1; each token has one role`,
);
test(
  "POPULUS_TOKENS entry without a role",
  badTokens,
  () => ({ args: [], env: { POPULUS_TOKENS: `admin:${token()},${SHORT}` } }),
  () => 'POPULUS_TOKENS entry 2: expected "<role>:<token>"',
);
test(
  "both a file and POPULUS_TOKENS",
  badTokens,
  () => ({ args: ["--tokens-file", tokensFile(`admin ${token()}\n`)], env: { POPULUS_TOKENS: `admin:${token()}` } }),
  () => "both a tokens file (--tokens-file/POPULUS_TOKENS_FILE) and POPULUS_TOKENS are set; give one",
);
