/**
 * Limits: each one answered with a clear code and message, and a
 * refused request leaves the store as it was. Size limits are checked at the
 * edge and just inside it, on both dialects where the value is stored (a
 * result just under 4 MiB must really commit to MariaDB's MEDIUMTEXT within
 * its default max_allowed_packet). The Watch stream cap is per peer address
 * without tokens and per token with them.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import test, { type ExecutionContext } from "ava";
import { JobService } from "../client-sdk/dist/gen/populus/v1/job_service_pb.js";
import { JobStatus, type KeySchema } from "../client-sdk/dist/gen/populus/v1/types_pb.js";
import { createTestDatabase, testDialects } from "./helpers/databases.js";
import { allJobs, allTargets, counts, type JobsClient, jobsClient, key, keys, only, rpcError, until } from "./helpers/jobs-client.js";
import { startServer } from "./helpers/server-process.js";

const MiB = 1024 * 1024;

function stringKey(attributes: Record<string, string>): MessageInitShape<typeof KeySchema> {
  return { attributes: Object.fromEntries(Object.entries(attributes).map(([n, v]) => [n, { kind: { case: "stringValue" as const, value: v } }])) };
}

/** A result nested `depth` objects deep ({ a: { a: ... { a: 1 } } } has depth `depth`). */
function nested(depth: number): JsonObject {
  let value: JsonObject = { a: 1 };
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

/** Leases `n` fresh jobs of a new table; answers their tokens. */
async function leases(client: JobsClient, table: string, n: number): Promise<string[]> {
  await client.refresh({ table, keys: keys(1, n + 1) });
  const { leases: granted } = await client.reserve({ table, maxJobs: n });
  return granted.map((l) => l.leaseToken);
}

for (const dialect of testDialects()) {
  test(`${dialect}: per-request limits answer RESOURCE_EXHAUSTED or INVALID_ARGUMENT and change nothing`, async (t) => {
    const db = await createTestDatabase(dialect);
    const server = await startServer({ database: db.url });
    t.teardown(async () => {
      await server.stop();
      await db.drop();
    });
    const client = jobsClient(server.url);

    // A message above 16 MiB is refused before it is decoded.
    const big = "x".repeat(9 * MiB);
    const tooBig = await rpcError(client.refresh({ table: "Huge", keys: [stringKey({ s: big }), stringKey({ s: `${big}y` })] }));
    t.is(tooBig.code, Code.ResourceExhausted);
    t.regex(tooBig.rawMessage, /larger than configured readMaxBytes 16777216/);

    // Keys per call (a larger key source is sent as several calls of one refresh).
    const many = await rpcError(client.refresh({ table: "Many", keys: keys(0, 10_001) }));
    t.is(many.code, Code.ResourceExhausted);
    t.is(many.rawMessage, "10001 keys in one call; at most 10000 are allowed (send a large key source as several calls sharing one refresh_id)");

    // Attributes per key: 32 is a key, 33 is not.
    const wide = (n: number) => stringKey(Object.fromEntries(Array.from({ length: n }, (_, i) => [`a${String(i).padStart(2, "0")}`, "v"])));
    const tooWide = await rpcError(client.refresh({ table: "Wide", keys: [wide(33)] }));
    t.is(tooWide.code, Code.InvalidArgument);
    t.is(tooWide.rawMessage, "Refresh key #1: the key has 33 attributes; at most 32 are allowed");
    t.is((await client.refresh({ table: "Wide", keys: [wide(32)] })).added, 1n);

    // Key size: 4096 bytes of canonical JSON is a key ({"s":"…"} is 8 bytes around the value), 4097 is not.
    const atLimit = stringKey({ s: "é".repeat((4096 - 8) / 2) });
    t.is((await client.refresh({ table: "Long", keys: [atLimit] })).added, 1n);
    const [stored] = await allJobs(client, "Long");
    t.is(stored?.key?.attributes.s?.kind.value, "é".repeat(2044), "a key at the limit round-trips intact");
    const tooLong = await rpcError(client.refresh({ table: "Long", keys: [stringKey({ s: "short" }), stringKey({ s: `${"é".repeat(2044)}x` })] }));
    t.is(tooLong.code, Code.InvalidArgument);
    t.is(
      tooLong.rawMessage,
      "Refresh key #2: the key is 4097 bytes as canonical JSON; at most 4096 are allowed (a key identifies a row: keep data in the result)",
    );
    t.deepEqual(await counts(client, "Long"), only({ pending: 1, remaining: 1 }), "the refused call added nothing, not even its valid first key");

    // Results: depth, size per result, size per call.
    const [deepToken, bigToken, a, b, c] = await leases(client, "Results", 5);
    const deep = await rpcError(client.complete({ table: "Results", completions: [{ leaseToken: deepToken as string, result: nested(33) }] }));
    t.is(deep.code, Code.InvalidArgument);
    t.is(deep.rawMessage, "Complete: the result of completion #1 nests objects and arrays deeper than 32 levels");
    const oversized = await rpcError(
      client.complete({ table: "Results", completions: [{ leaseToken: bigToken as string, result: { blob: "z".repeat(4 * MiB) } }] }),
    );
    t.is(oversized.code, Code.InvalidArgument);
    t.is(
      oversized.rawMessage,
      `Complete: the result of completion #1 is ${4 * MiB + 11} bytes as JSON; at most ${4 * MiB} are allowed (store large data elsewhere and return a reference)`,
    );
    const tooMuch = await rpcError(
      client.complete({
        table: "Results",
        completions: [a, b, c].map((leaseToken) => ({ leaseToken: leaseToken as string, result: { blob: "z".repeat(3 * MiB) } })),
      }),
    );
    t.is(tooMuch.code, Code.ResourceExhausted);
    t.is(tooMuch.rawMessage, `Complete: the results are ${3 * (3 * MiB + 11)} bytes as JSON in one call; at most ${8 * MiB} are allowed (split the call)`);
    t.deepEqual(await counts(client, "Results"), only({ reserved: 5, remaining: 5 }), "nothing committed, every lease still held");

    // Just inside the limits, the results commit and read back intact.
    const nearLimit = { blob: "é".repeat((4 * MiB - 20) / 2) };
    t.is((await client.complete({ table: "Results", completions: [{ leaseToken: deepToken as string, result: nested(32) }] })).committed, 1n);
    t.is((await client.complete({ table: "Results", completions: [{ leaseToken: bigToken as string, result: nearLimit }] })).committed, 1n);
    const rows = await allTargets(client, "Results");
    t.is(rows.length, 2);
    t.true(
      rows.some((r) => JSON.stringify(r.result) === JSON.stringify(nearLimit)),
      "the ~4 MiB result is stored whole",
    );
    t.true(
      rows.some((r) => JSON.stringify(r.result) === JSON.stringify(nested(32))),
      "the 32-deep result is stored whole",
    );

    // Error message and stack are cut, never refused: a failure must always be recordable.
    await client.fail({ table: "Results", leaseToken: a as string, errorMessage: "m".repeat(5000), errorStack: "s".repeat(MiB) });
    const [failed] = await allJobs(client, "Results", [JobStatus.ERROR]);
    t.is(failed?.errorMessage, `${"m".repeat(2047 - 12)}...truncated`);
    t.is(failed?.errorStack, `${"s".repeat(65_536 - 12)}...truncated`);

    // Progress entries per Heartbeat: each is a write.
    const progress = Array.from({ length: 1001 }, () => ({ leaseToken: b as string, progress: 0.5, message: "" }));
    const chatty = await rpcError(client.heartbeat({ table: "Results", leaseTokens: [b as string], progress }));
    t.is(chatty.code, Code.ResourceExhausted);
    t.is(chatty.rawMessage, "1001 progress entries in one call; at most 1000 are allowed (split the call)");
  });
}

/** Opens a Watch stream and waits for its first message; close() ends it. */
async function openWatch(client: JobsClient, table: string): Promise<{ close: () => void }> {
  const abort = new AbortController();
  const it = client.watch({ table, countsOnly: true }, { signal: abort.signal })[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new Error("the Watch stream ended before its snapshot");
  // Keep reading in the background so the stream stays healthy; its end (our abort) is expected.
  void (async () => {
    try {
      while (!(await it.next()).done);
    } catch {
      // aborted
    }
  })();
  return { close: () => abort.abort() };
}

test("Watch streams per peer address (no tokens): over the cap is RESOURCE_EXHAUSTED; closing one frees a slot", async (t) => {
  const db = await createTestDatabase("sqlite");
  const server = await startServer({ database: db.url, args: ["--max-watch-streams", "2"] });
  t.teardown(async () => {
    await server.stop();
    await db.drop();
  });
  const client = jobsClient(server.url);
  await client.refresh({ table: "Watched", keys: [key(1)] });
  const first = await openWatch(client, "Watched");
  const second = await openWatch(jobsClient(server.url), "Watched"); // another connection, the same address
  const refused = await rpcError(openWatch(client, "Watched"));
  t.is(refused.code, Code.ResourceExhausted);
  t.is(refused.rawMessage, "2 Watch streams are already open for this client; at most 2 are allowed at once (close some, or raise --max-watch-streams)");
  t.deepEqual(await counts(client, "Watched"), only({ pending: 1, remaining: 1 }), "unary calls are not limited by it");
  first.close();
  let third: { close: () => void } | undefined;
  await until("a slot is free again", async () => {
    third = await openWatch(client, "Watched").catch(() => undefined);
    return third !== undefined;
  });
  second.close();
  third?.close();
  t.pass();
});

/**
 * A server on a fresh SQLite database with `tokens` ("<role> <token>" lines) and `args`, stopped in
 * teardown; as(token) is a client that sends that token.
 */
async function serverWithTokens(t: ExecutionContext, tokens: readonly string[], args: readonly string[]) {
  const db = await createTestDatabase("sqlite");
  const dir = mkdtempSync(join(tmpdir(), "populus-limits-"));
  writeFileSync(join(dir, "tokens"), `${tokens.join("\n")}\n`);
  const server = await startServer({ database: db.url, args: [...args, "--tokens-file", join(dir, "tokens")], env: { POPULUS_TOKENS: undefined } });
  t.teardown(async () => {
    await server.stop();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  const as = (token: string) => {
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    return createClient(JobService, createConnectTransport({ baseUrl: server.url, httpVersion: "2", interceptors: [auth] }));
  };
  return { as };
}

test("Watch streams on the whole server (--max-watch-streams-total): past it any client is refused RESOURCE_EXHAUSTED; closing one frees a slot", async (t) => {
  const readers = [randomBytes(24).toString("hex"), randomBytes(24).toString("hex")];
  const admin = randomBytes(24).toString("hex");
  const { as } = await serverWithTokens(
    t,
    [`reader ${readers[0]}`, `reader ${readers[1]}`, `admin ${admin}`],
    ["--max-watch-streams", "10", "--max-watch-streams-total", "3"],
  );
  await as(admin).refresh({ table: "Watched", keys: [key(1)] });
  const open = [await openWatch(as(readers[0]!), "Watched"), await openWatch(as(readers[0]!), "Watched"), await openWatch(as(readers[1]!), "Watched")];
  const refused = await rpcError(openWatch(as(admin), "Watched"));
  t.is(refused.code, Code.ResourceExhausted, "a client below its own cap is refused once the server is at its cap");
  t.is(refused.rawMessage, "this server already serves 3 Watch streams, its limit (--max-watch-streams-total); watch through another replica, or retry later");
  open[0]?.close();
  let another: { close: () => void } | undefined;
  await until("a slot is free again", async () => {
    another = await openWatch(as(admin), "Watched").catch(() => undefined);
    return another !== undefined;
  });
  for (const w of [...open, another]) w?.close();
  t.pass();
});

test("Watch streams per token: one token at its cap does not block another", async (t) => {
  const reader = randomBytes(24).toString("hex");
  const admin = randomBytes(24).toString("hex");
  const { as } = await serverWithTokens(t, [`reader ${reader}`, `admin ${admin}`], ["--max-watch-streams", "1"]);
  await as(admin).refresh({ table: "Watched", keys: [key(1)] });
  const held = await openWatch(as(reader), "Watched");
  t.is((await rpcError(openWatch(as(reader), "Watched"))).code, Code.ResourceExhausted);
  const other = await openWatch(as(admin), "Watched");
  held.close();
  other.close();
});

test("Watch refused at the server-wide cap before connect takes it: RESOURCE_EXHAUSTED with its message over Connect (binary and JSON), gRPC, gRPC-Web and grpc-js; counted in the metrics", async (t) => {
  const database = await createTestDatabase("sqlite");
  const server = await startServer({ database: database.url, args: ["--max-watch-streams-total", "1"] });
  t.teardown(async () => {
    await server.kill();
    await database.drop();
  });
  const connect = jobsClient(server.url);
  await connect.refresh({ table: "Watched", keys: [key(1)] });
  const held = await openWatch(connect, "Watched");
  const message = "this server already serves 1 Watch streams, its limit (--max-watch-streams-total); watch through another replica, or retry later";
  const transports = {
    "Connect, JSON": createConnectTransport({ baseUrl: server.url, httpVersion: "2", useBinaryFormat: false }),
    "Connect over HTTP/1.1": createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }),
    gRPC: createGrpcTransport({ baseUrl: server.url }),
    "gRPC-Web": createGrpcWebTransport({ baseUrl: server.url, httpVersion: "2" }),
  };
  for (const [name, transport] of Object.entries(transports)) {
    const refused = await rpcError(openWatch(createClient(JobService, transport), "Watched"));
    t.is(refused.code, Code.ResourceExhausted, name);
    t.is(refused.rawMessage, message, name);
  }
  t.is((await rpcError(openWatch(connect, "Watched"))).rawMessage, message, "Connect, binary");

  // A gRPC implementation other than connect's reads the trailers-only answer too.
  const definition = protoLoader.loadSync("populus/v1/job_service.proto", { includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))] });
  const Service = (
    grpc.loadPackageDefinition(definition) as unknown as { populus: { v1: { JobService: new (a: string, c: grpc.ChannelCredentials) => grpc.Client } } }
  ).populus.v1.JobService;
  const grpcClient = new Service(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  t.teardown(() => grpcClient.close());
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = (grpcClient as unknown as { Watch(req: object): grpc.ClientReadableStream<unknown> }).Watch({ table: "Watched", counts_only: true });
    call.on("data", () => undefined);
    call.on("error", () => undefined);
    call.on("status", resolve);
  });
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.is(decodeURIComponent(status.details), message);

  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const refusals = /populus_rpc_duration_seconds_count\{method="Watch",code="RESOURCE_EXHAUSTED"\} (\d+)/.exec(metrics);
  t.is(Number(refusals?.[1]), 6, "every refusal is counted, as a call refused by the interceptor is");
  held.close();
  // Below the cap again, a Watch over gRPC is served (through connect).
  let served: { close: () => void } | undefined;
  await until("a slot is free again", async () => {
    served = await openWatch(createClient(JobService, transports.gRPC), "Watched").catch(() => undefined);
    return served !== undefined;
  });
  served?.close();
  t.pass();
});
