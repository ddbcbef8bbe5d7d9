/**
 * The standard services on the one port, asked the way grpcurl and
 * Kubernetes probes ask: plain @grpc/grpc-js over HTTP/2 with the vendored
 * grpc protos loaded at run time (no generated code, no Connect).
 *
 * - Reflection, v1 and v1alpha: list_services, file_containing_symbol,
 *   file_by_filename for every import, the NOT_FOUND error_response answers,
 *   and that the returned FileDescriptorProtos form a complete set (what
 *   `grpcurl describe populus.v1.JobService` needs).
 * - Health: Check and List while serving, NOT_FOUND for an unknown service,
 *   and a Watch that sees NOT_SERVING after SIGTERM, before the server exits 0.
 */
import { fileURLToPath } from "node:url";
import { create, createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import test from "ava";
import { createTestDatabase, type TestDatabase } from "./helpers/databases.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

const PROTO_DIR = fileURLToPath(new URL("../proto", import.meta.url));

// keepCase: wire names (snake_case), as grpcurl and other languages see them.
// bytes arrive as Buffer (proto-loader's default), oneofs name their case.
const LOAD_OPTIONS: protoLoader.Options = { includeDirs: [PROTO_DIR], keepCase: true, enums: String, defaults: true, oneofs: true };

type ClientCtor = new (address: string, credentials: grpc.ChannelCredentials) => grpc.Client;
type Loaded = { grpc: { reflection: Record<"v1" | "v1alpha", { ServerReflection: ClientCtor }>; health: { v1: { Health: ClientCtor } } } };
const loaded = grpc.loadPackageDefinition(
  protoLoader.loadSync(["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto", "grpc/health/v1/health.proto"], LOAD_OPTIONS),
) as unknown as Loaded;

/** The 16 RPCs of populus.v1.JobService, in proto order. */
const JOB_SERVICE_METHODS = [
  "Refresh",
  "ClaimRefresh",
  "AbandonRefresh",
  "Reserve",
  "Complete",
  "Fail",
  "Heartbeat",
  "Release",
  "Watch",
  "ListJobs",
  "GetProgress",
  "DeleteJobs",
  "Ignore",
  "ListTables",
  "DeleteTargets",
  "ListTargets",
];

const SERVED = ["populus.v1.JobService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/** A ServerReflectionResponse as proto-loader decodes it. */
interface ReflectionResponse {
  valid_host: string;
  original_request: Record<string, unknown> | null;
  message_response: "file_descriptor_response" | "all_extension_numbers_response" | "list_services_response" | "error_response";
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

/**
 * One ServerReflectionInfo stream: ask() writes a request and resolves with
 * the next response (the server answers in order, one response per request).
 */
function reflectionStream(client: grpc.Client) {
  const call = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> }).ServerReflectionInfo();
  const waiting: { resolve(r: ReflectionResponse): void; reject(e: Error): void }[] = [];
  const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  call.on("data", (r: ReflectionResponse) => waiting.shift()?.resolve(r));
  call.on("error", (e: Error) => {
    for (const w of waiting.splice(0)) w.reject(e);
  });
  return {
    ask(request: object): Promise<ReflectionResponse> {
      return new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        call.write({ host: "", ...request });
      });
    },
    /** Half-closes the stream; resolves with its final status. */
    end(): Promise<grpc.StatusObject> {
      call.end();
      return ended;
    },
    /** Resolves with the final status whenever the server ends the stream. */
    ended(): Promise<grpc.StatusObject> {
      return ended;
    },
  };
}

function files(r: ReflectionResponse): FileDescriptorProto[] {
  if (r.message_response !== "file_descriptor_response") throw new Error(`expected file_descriptor_response, got ${JSON.stringify(r)}`);
  return (r.file_descriptor_response?.file_descriptor_proto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b));
}

/**
 * The files ordered so each comes after its imports, as createFileRegistry
 * needs for a FileDescriptorSet (the server sends the requested file first).
 * An import missing from the list is left out here and fails the registry.
 */
function dependenciesFirst(all: readonly FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(all.map((f) => [f.name, f]));
  const ordered: FileDescriptorProto[] = [];
  const visited = new Set<string>();
  const visit = (f: FileDescriptorProto) => {
    if (visited.has(f.name)) return;
    visited.add(f.name);
    for (const name of f.dependency) {
      const dependency = byName.get(name);
      if (dependency) visit(dependency);
    }
    ordered.push(f);
  };
  all.forEach(visit);
  return ordered;
}

const databases: TestDatabase[] = [];
const servers: ServerProcess[] = [];
const clients: grpc.Client[] = [];

async function server(): Promise<ServerProcess> {
  const db = await createTestDatabase("sqlite");
  databases.push(db);
  const s = await startServer({ database: db.url });
  servers.push(s);
  return s;
}

function client(ctor: ClientCtor, s: ServerProcess): grpc.Client {
  const c = new ctor(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

let shared: ServerProcess;

test.before(async () => {
  shared = await server();
});

test.after.always(async (t) => {
  for (const c of clients) c.close();
  const codes = await Promise.all(servers.map((s) => s.stop()));
  t.deepEqual(
    codes,
    servers.map(() => 0),
    "every server exits 0 on SIGTERM",
  );
  for (const db of databases) await db.drop();
});

for (const version of ["v1", "v1alpha"] as const) {
  test(`reflection ${version}: list_services names JobService, Health and both reflection versions`, async (t) => {
    const stream = reflectionStream(client(loaded.grpc.reflection[version].ServerReflection, shared));
    const r = await stream.ask({ list_services: "*" });
    t.is(r.message_response, "list_services_response");
    t.deepEqual(r.list_services_response?.service.map((s) => s.name).sort(), [...SERVED].sort());
    t.true(r.list_services_response?.service.some((s) => s.name === "populus.v1.JobService"));
    t.is(r.original_request?.list_services, "*", "the answer echoes its request, as grpc-go does");
    t.is((await stream.end()).code, grpc.status.OK);
  });

  test(`reflection ${version}: file_containing_symbol populus.v1.JobService returns its file and every import, each also found by file name`, async (t) => {
    const stream = reflectionStream(client(loaded.grpc.reflection[version].ServerReflection, shared));
    const returned = files(await stream.ask({ file_containing_symbol: "populus.v1.JobService" }));
    const [main] = returned;
    t.is(main?.name, "populus/v1/job_service.proto", "the file declaring the symbol comes first");
    t.is(main?.package, "populus.v1");
    const service = main?.service.find((s) => s.name === "JobService");
    t.deepEqual(
      service?.method.map((m) => m.name),
      JOB_SERVICE_METHODS,
    );
    const watchMethod = service?.method.find((m) => m.name === "Watch");
    t.true(watchMethod?.serverStreaming === true && watchMethod.clientStreaming !== true, "Watch is a server stream");
    t.deepEqual([...(main?.dependency ?? [])].sort(), [
      "google/protobuf/duration.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
      "populus/v1/types.proto",
    ]);
    t.deepEqual(
      returned.map((f) => f.name).sort(),
      [
        "google/protobuf/duration.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
        "populus/v1/job_service.proto",
        "populus/v1/types.proto",
      ],
      "the answer carries the transitive imports, each once",
    );

    // What grpcurl does with the answer: build a registry from the returned files alone; every import and type resolves.
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: dependenciesFirst(returned) }));
    const described = registry.getService("populus.v1.JobService");
    t.deepEqual(
      described?.methods.map((m) => m.name),
      JOB_SERVICE_METHODS,
    );
    t.is(described?.methods.find((m) => m.name === "Reserve")?.input.typeName, "populus.v1.ReserveRequest");
    t.truthy(registry.getMessage("populus.v1.Key"), "types.proto's messages resolve");

    for (const dependency of main?.dependency ?? []) {
      const byName = files(await stream.ask({ file_by_filename: dependency }));
      t.is(byName[0]?.name, dependency, `file_by_filename ${dependency}`);
      t.true(byName[0]?.messageType.length !== 0, `${dependency} declares messages`);
    }
    t.is((await stream.end()).code, grpc.status.OK);
  });

  test(`reflection ${version}: methods, nested and imported symbols; NOT_FOUND answers keep the stream open`, async (t) => {
    const stream = reflectionStream(client(loaded.grpc.reflection[version].ServerReflection, shared));
    const fileOf = async (symbol: string) => files(await stream.ask({ file_containing_symbol: symbol }))[0]?.name;
    t.is(await fileOf("populus.v1.JobService.Reserve"), "populus/v1/job_service.proto", "a method");
    t.is(await fileOf("populus.v1.ReserveRequest"), "populus/v1/job_service.proto", "a message");
    t.is(await fileOf("populus.v1.Key"), "populus/v1/types.proto", "a message of the imported file");
    t.is(await fileOf("google.protobuf.Timestamp"), "google/protobuf/timestamp.proto", "a well-known type");
    t.is(await fileOf("grpc.health.v1.HealthCheckResponse.ServingStatus"), "grpc/health/v1/health.proto", "a nested enum");
    t.is(await fileOf("grpc.health.v1.HealthCheckResponse.SERVING"), "grpc/health/v1/health.proto", "a nested enum's value");
    t.is(await fileOf(`grpc.reflection.${version}.ServerReflection`), `grpc/reflection/${version}/reflection.proto`, "reflection itself");

    const unknownSymbol = await stream.ask({ file_containing_symbol: "populus.v1.NoSuchService" });
    t.is(unknownSymbol.message_response, "error_response");
    t.is(unknownSymbol.error_response?.error_code, grpc.status.NOT_FOUND);
    t.regex(unknownSymbol.error_response?.error_message ?? "", /populus\.v1\.NoSuchService/);

    const unknownFile = await stream.ask({ file_by_filename: "populus/v1/nope.proto" });
    t.is(unknownFile.error_response?.error_code, grpc.status.NOT_FOUND);

    const extension = await stream.ask({ file_containing_extension: { containing_type: "populus.v1.Key", extension_number: 100 } });
    t.is(extension.error_response?.error_code, grpc.status.NOT_FOUND, "no served file declares extensions");

    const numbers = await stream.ask({ all_extension_numbers_of_type: "populus.v1.Key" });
    t.is(numbers.message_response, "all_extension_numbers_response");
    t.deepEqual(numbers.all_extension_numbers_response, { base_type_name: "populus.v1.Key", extension_number: [] });
    const numbersOfUnknown = await stream.ask({ all_extension_numbers_of_type: "populus.v1.NoSuchMessage" });
    t.is(numbersOfUnknown.error_response?.error_code, grpc.status.NOT_FOUND);

    t.is(await fileOf("populus.v1.JobService"), "populus/v1/job_service.proto", "the stream still answers after errors");
    t.is((await stream.end()).code, grpc.status.OK);
  });
}

/** The Health client's calls, typed as proto-loader builds them. */
interface HealthClient {
  Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  List(req: object, cb: (err: grpc.ServiceError | null, res?: { statuses: Record<string, { status: string }> }) => void): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

function check(c: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => c.Check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status ?? ""))));
}

test("health: Check answers SERVING for the server and JobService, NOT_FOUND for an unknown service; List names both", async (t) => {
  const health = client(loaded.grpc.health.v1.Health, shared) as unknown as HealthClient;
  t.is(await check(health, ""), "SERVING");
  t.is(await check(health, "populus.v1.JobService"), "SERVING");
  const err = await t.throwsAsync<grpc.ServiceError>(check(health, "populus.v1.NoSuchService"));
  t.is(err?.code, grpc.status.NOT_FOUND);
  t.regex(err?.details ?? "", /populus\.v1\.NoSuchService/);
  const list = await new Promise<Record<string, { status: string }>>((resolve, reject) =>
    health.List({}, (e, res) => (e ? reject(e) : resolve(res?.statuses ?? {}))),
  );
  t.deepEqual(list, { "": { status: "SERVING" }, "populus.v1.JobService": { status: "SERVING" } });
});

test("health: a Watch sees SERVING, then NOT_SERVING after SIGTERM; the calls end OK and the server exits 0", async (t) => {
  const s = await server();
  const health = client(loaded.grpc.health.v1.Health, s) as unknown as HealthClient;

  /** Every status a Watch call receives, and how the call ended. */
  const watch = (service: string) => {
    const seen: string[] = [];
    const call = health.Watch({ service });
    let onMessage: (() => void) | undefined;
    call.on("data", (m: { status: string }) => {
      seen.push(m.status);
      onMessage?.();
    });
    call.on("error", () => undefined); // the status event below carries the outcome
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
    const first = new Promise<void>((resolve) => (onMessage = resolve));
    return { seen, ended, first };
  };

  const overall = watch("");
  const jobService = watch("populus.v1.JobService");
  const unknown = watch("populus.v1.NoSuchService");
  await Promise.all([overall.first, jobService.first, unknown.first]);
  t.deepEqual(overall.seen, ["SERVING"]);
  t.deepEqual(jobService.seen, ["SERVING"]);
  t.deepEqual(unknown.seen, ["SERVICE_UNKNOWN"], "an unknown service is answered, and the call stays open");
  // An idle reflection stream, as grpcurl holds one, must not hold up the drain either.
  const reflection = reflectionStream(client(loaded.grpc.reflection.v1.ServerReflection, s));
  t.is((await reflection.ask({ list_services: "" })).message_response, "list_services_response");
  const reflectionEnded = reflection.ended();

  const t0 = Date.now();
  const exit = s.stop();
  const [a, b, c] = await Promise.all([overall.ended, jobService.ended, unknown.ended]);
  t.deepEqual(overall.seen, ["SERVING", "NOT_SERVING"]);
  t.deepEqual(jobService.seen, ["SERVING", "NOT_SERVING"]);
  t.deepEqual(unknown.seen, ["SERVICE_UNKNOWN"]);
  t.deepEqual([a.code, b.code, c.code], [grpc.status.OK, grpc.status.OK, grpc.status.OK], "the drain ends Watch calls cleanly");
  t.is((await reflectionEnded).code, grpc.status.OK, "and the open reflection stream");
  t.is(await exit, 0);
  const elapsed = Date.now() - t0;
  // Well under the 10 s grace, with room for a loaded machine's slower stop (a clean one took up to 2.6 s in CI).
  t.true(elapsed < 7000, `exited ${elapsed} ms after SIGTERM; open Watch calls must not wait for the 10 s grace`);
});
