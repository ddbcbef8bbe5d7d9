/**
 * TLS: a server started with --tls-cert/--tls-key, its certificate
 * signed by a private CA made here with openssl, tokens on as in a real
 * deployment. It refuses plaintext; it serves gRPC over HTTP/2 (connect-node
 * and grpc-js, which insists on ALPN h2) and Connect JSON over HTTPS/1.1 to
 * clients that trust the CA, and the SDK given the CA (caFile, ca,
 * POPULUS_CA_FILE); a client without the CA refuses the certificate.
 * Certificate mistakes are configuration errors: exit 2, one line.
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { connect, InvalidConfigError } from "../client-sdk/dist/index.js";
import { Health, HealthCheckResponse_ServingStatus } from "../client-sdk/dist/gen/grpc/health/v1/health_pb.js";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { createTestDatabase, type TestDatabase } from "./helpers/databases.js";
import { key, keys } from "./helpers/jobs-client.js";
import { runServerToExit, type ServerProcess, startServer } from "./helpers/server-process.js";

const ADMIN = randomBytes(24).toString("hex");
const CLI_MAIN = fileURLToPath(new URL("../worker/dist/cli/main.js", import.meta.url));

/** Runs a command to its end: exit code, stdout, stderr (a failing exit is an answer, not an error). */
function execFileAsync(command: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("POPULUS_"))) }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stdout, stderr }),
    );
  });
}
const dir = mkdtempSync(join(tmpdir(), "populus-tls-"));
const file = (name: string) => join(dir, name);

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    throw new Error(
      e.code === "ENOENT"
        ? "tls.test.ts needs the openssl command to make its certificates; install openssl"
        : `openssl ${args[0]} failed: ${e.stderr?.toString()}`,
    );
  }
}

/** A private CA and a server certificate it signed, for localhost and 127.0.0.1; plus a stranger's certificate. */
function makeCertificates(): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-days", "2", "-subj", "/CN=Populus test CA", "-keyout", "ca.key", "-out", "ca.pem"]);
  openssl(["req", ...ec, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]);
  writeFileSync(file("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "san.ext",
    "-out",
    "server.pem",
  ]);
  // A key that belongs to no certificate above, for the mismatch test.
  openssl(["req", "-x509", ...ec, "-days", "2", "-subj", "/CN=stranger", "-keyout", "stranger.key", "-out", "stranger.pem"]);
  writeFileSync(file("tokens"), `admin ${ADMIN}\n`, { mode: 0o600 });
  writeFileSync(file("not-pem.txt"), "just text\n");
}

let db: TestDatabase;
let server: ServerProcess;
let httpsUrl: string;
let ca: string;

const withToken: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${ADMIN}`);
  return next(req);
};

test.before(async () => {
  makeCertificates();
  ca = readFileSync(file("ca.pem"), "utf8");
  db = await createTestDatabase("sqlite");
  server = await startServer({
    database: db.url,
    args: ["--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--tokens-file", file("tokens")],
    env: { POPULUS_TOKENS: undefined },
  });
  httpsUrl = `https://127.0.0.1:${server.port}`;
});

test.after.always(async (t) => {
  if (server !== undefined) t.is(await server.stop(), 0, "a TLS server drains and exits 0 on SIGTERM");
  await db?.drop();
  rmSync(dir, { recursive: true, force: true });
});

async function healthy(): Promise<boolean> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: httpsUrl, nodeOptions: { ca } }));
  return (await health.check({ service: "" })).status === HealthCheckResponse_ServingStatus.SERVING;
}

test("the listening line says https", (t) => {
  t.true(server.logs.some((l) => l.includes(`"url":"https://127.0.0.1:${server.port}"`) && l.includes('"tls":true')));
});

test("plaintext is refused: HTTP/1.1, h2c gRPC and Connect all fail, and the server stays up", async (t) => {
  const plain = `http://127.0.0.1:${server.port}`;
  await t.throwsAsync(fetch(`${plain}/populus.v1.JobService/ListTables`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" }));
  for (const transport of [createGrpcTransport({ baseUrl: plain }), createConnectTransport({ baseUrl: plain, httpVersion: "2" })]) {
    const err = await t.throwsAsync(createClient(JobService, transport).listTables({}, { timeoutMs: 5000 }));
    t.true(err instanceof ConnectError, String(err));
    t.not((err as ConnectError).code, Code.Unauthenticated, "refused before any RPC was read");
  }
  t.true(await healthy());
  t.is(server.process.exitCode, null);
});

test("a client that does not trust the CA refuses the server's certificate", async (t) => {
  const err = await t.throwsAsync(httpsPost("/populus.v1.JobService/ListTables", {}, undefined));
  // The server sends only its own certificate: without the CA nothing verifies it.
  t.is((err as { code?: string }).code, "UNABLE_TO_VERIFY_LEAF_SIGNATURE", String(err));
});

test("gRPC over HTTP/2 with the CA: Refresh, then GetProgress", async (t) => {
  const client = createClient(JobService, createGrpcTransport({ baseUrl: httpsUrl, nodeOptions: { ca }, interceptors: [withToken] }));
  t.is((await client.refresh({ table: "TlsGrpc", keys: keys(1, 6) })).added, 5n);
  t.is((await client.getProgress({ table: "TlsGrpc" })).progress?.pending, 5n);
  const anonymous = createClient(JobService, createGrpcTransport({ baseUrl: httpsUrl, nodeOptions: { ca } }));
  const refused = await t.throwsAsync(anonymous.getProgress({ table: "TlsGrpc" }));
  t.is((refused as ConnectError).code, Code.Unauthenticated, "TLS does not replace the token");
});

test("grpc-js with SSL credentials (ALPN h2, as other languages' gRPC): Refresh and GetProgress", async (t) => {
  const definition = protoLoader.loadSync("populus/v1/job_service.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    keepCase: true,
    longs: String,
    defaults: true,
  });
  type Ctor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { populus: { v1: { JobService: Ctor } } };
  const credentials = grpc.credentials.combineChannelCredentials(
    grpc.credentials.createSsl(Buffer.from(ca)),
    grpc.credentials.createFromMetadataGenerator((_, callback) => {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${ADMIN}`);
      callback(null, md);
    }),
  );
  const client = new loaded.populus.v1.JobService(`localhost:${server.port}`, credentials);
  t.teardown(() => client.close());
  const call = <T>(rpc: string, req: object) =>
    new Promise<T>((resolve, reject) =>
      (client as unknown as Record<string, (r: object, cb: (e: Error | null, v: T) => void) => void>)[rpc]?.call(client, req, (e, v) =>
        e ? reject(e) : resolve(v),
      ),
    );
  const refreshed = await call<{ added: string }>("Refresh", { table: "TlsGrpcJs", keys: [{ attributes: { id: { int_value: "7" } } }] });
  t.is(refreshed.added, "1");
  const progress = await call<{ progress: { pending: string } }>("GetProgress", { table: "TlsGrpcJs" });
  t.is(progress.progress.pending, "1");
});

/** POSTs Connect JSON over HTTPS/1.1 with node:https (fetch cannot take a CA); answers status, HTTP version and body. */
function httpsPost(path: string, body: unknown, trust: string | undefined): Promise<{ status: number; httpVersion: string; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${httpsUrl}${path}`,
      { method: "POST", ca: trust, headers: { "content-type": "application/json", authorization: `Bearer ${ADMIN}` } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (text += d));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, httpVersion: res.httpVersion, json: JSON.parse(text) as unknown }));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

test("Connect JSON over HTTPS/1.1 with the CA, as curl --cacert does", async (t) => {
  const refreshed = await httpsPost("/populus.v1.JobService/Refresh", { table: "TlsJson", keys: [{ attributes: { id: { intValue: "1" } } }] }, ca);
  t.deepEqual(refreshed, { status: 200, httpVersion: "1.1", json: { added: "1", anyPending: true } });
  const progress = await httpsPost("/populus.v1.JobService/GetProgress", { table: "TlsJson" }, ca);
  t.deepEqual(progress.json, { progress: { table: "tls_json", pending: "1", remaining: "1" } });
});

test("the SDK trusts the CA from caFile, from ca, and from POPULUS_CA_FILE", async (t) => {
  const definition = { keySource: [], make: () => ({}), module: import.meta.url };
  const viaFile = connect({ url: httpsUrl, token: ADMIN, caFile: file("ca.pem") }).table("TlsSdk", definition);
  t.deepEqual(await viaFile.jobs.refresh(), { added: 0, removed: 0, orphaned: 0, rePended: 0 });
  const viaText = connect({ url: `https://localhost:${server.port}`, token: ADMIN, ca }).table("TlsSdkText", definition);
  t.is((await viaText.jobs.refresh()).added, 0);
  // connect() reads the variable synchronously, so setting it around the call affects no other test.
  process.env.POPULUS_CA_FILE = file("ca.pem");
  const fromEnv = connect({ url: httpsUrl, token: ADMIN });
  delete process.env.POPULUS_CA_FILE;
  t.is(fromEnv.options.ca, ca);
  t.is((await fromEnv.table("TlsSdkEnv", definition).jobs.refresh()).added, 0);
});

test("the SDK refuses a CA file it cannot use, naming the option", (t) => {
  const missing = file("missing.pem");
  t.throws(() => connect({ url: httpsUrl, caFile: missing }), { instanceOf: InvalidConfigError, message: `caFile: cannot read "${missing}" (no such file)` });
  t.throws(() => connect({ url: httpsUrl, caFile: file("not-pem.txt") }), {
    instanceOf: InvalidConfigError,
    message: `caFile "${file("not-pem.txt")}": not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`,
  });
});

const badTls = test.macro({
  title: (given) => `${given} → exit 2, one line`,
  async exec(t, args: () => string[], line: () => string) {
    const r = await runServerToExit(["--port", "0", "--database", `sqlite:${file("never.db")}`, ...args()], {
      POPULUS_TLS_CERT: undefined,
      POPULUS_TLS_KEY: undefined,
    });
    t.is(r.code, 2);
    t.is(r.stderr, `populus-server: ${line()}\n`);
  },
});

test(
  "--tls-cert without --tls-key",
  badTls,
  () => ["--tls-cert", file("server.pem")],
  () => "--tls-cert needs --tls-key (POPULUS_TLS_KEY) too",
);
test(
  "--tls-key without --tls-cert",
  badTls,
  () => ["--tls-key", file("server.key")],
  () => "--tls-key needs --tls-cert (POPULUS_TLS_CERT) too",
);
test(
  "a missing certificate file",
  badTls,
  () => ["--tls-cert", file("nope.pem"), "--tls-key", file("server.key")],
  () => `--tls-cert ${file("nope.pem")}: no such file`,
);
test(
  "a key that is not PEM",
  badTls,
  () => ["--tls-cert", file("server.pem"), "--tls-key", file("not-pem.txt")],
  () => `--tls-key ${file("not-pem.txt")}: not a PEM file (no "-----BEGIN" line)`,
);
test(
  "a key of another certificate",
  badTls,
  () => ["--tls-cert", file("server.pem"), "--tls-key", file("stranger.key")],
  () => `--tls-cert ${file("server.pem")} with --tls-key ${file("stranger.key")}: the key does not belong to the certificate`,
);

test("populus --ca-file --token-file talks to the TLS server; without the CA it refuses the certificate (exit 1)", async (t) => {
  writeFileSync(file("admin.token"), `${ADMIN}\n`, { mode: 0o600 });
  const db = connect({ url: httpsUrl, caFile: file("ca.pem"), token: ADMIN });
  t.teardown(() => db.close());
  await db.table("CliOverTls", { keySource: [{ id: 1 }, { id: 2 }], make: () => ({}), module: import.meta.url }).jobs.refresh();
  const cli = (args: string[]) => execFileAsync(process.execPath, [CLI_MAIN, "--server", httpsUrl, "--token-file", file("admin.token"), ...args]);
  const trusted = await cli(["--ca-file", file("ca.pem"), "--json", "status", "CliOverTls"]);
  t.is(trusted.code, 0, trusted.stderr);
  t.like(JSON.parse(trusted.stdout), [{ table: "CliOverTls", pending: 2 }]);
  const untrusted = await cli(["status"]);
  t.is(untrusted.code, 1);
  t.regex(untrusted.stderr, /^populus: .*unable to verify the first certificate\n$/);
});

test("Connect over HTTP/2 with TLS and JSON over HTTPS/1.1 read and write the same store", async (t) => {
  const client = createClient(JobService, createConnectTransport({ baseUrl: httpsUrl, httpVersion: "2", nodeOptions: { ca }, interceptors: [withToken] }));
  await client.refresh({ table: "TlsDelete", keys: [key(1), key(2)] });
  t.is((await client.deleteJobs({ table: "TlsDelete", keys: [key(1)], statuses: [] })).deleted, 1n);
  const viaJson = await httpsPost("/populus.v1.JobService/GetProgress", { table: "TlsDelete" }, ca);
  t.deepEqual(viaJson.json, { progress: { table: "tls_delete", pending: "1", remaining: "1" } });
});

test("the heartbeat thread renews leases over TLS with the token: 1 s leases (given with 12 decimals) of a 3.5 s make are extended, and it commits", async (t) => {
  const sdk = connect({ url: httpsUrl, token: ADMIN, ca });
  const reserveTimes: number[] = [];
  const expiries: number[] = [];
  const table = sdk.table("TlsHeartbeat", {
    keySource: [{ id: 1 }],
    make: async () => {
      // The loop's own event loop stays free, so this test can watch the lease while make runs.
      const until = Date.now() + 3500;
      while (Date.now() < until) {
        for (const job of await table.jobs.reserved.fetch()) {
          reserveTimes.push(job.reserveTime?.getTime() ?? 0);
          expiries.push(job.leaseExpireTime?.getTime() ?? 0);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return { ok: true };
    },
    module: import.meta.url,
  });
  // More decimals than proto3 JSON's nine: the thread must round, or the server refuses every renewal.
  const result = await table.populate({ reserveJobs: true, leaseDuration: 1.000000000123 });
  sdk.close();
  t.is(result.successCount, 1);
  t.true(expiries.length > 0, "the job was seen reserved");
  const reservedAt = Math.min(...reserveTimes);
  t.true(Math.max(...expiries) > reservedAt + 2500, `lease renewed: expiry ${Math.max(...expiries) - reservedAt} ms after the reservation`);
});
