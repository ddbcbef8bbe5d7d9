/**
 * The public surface of @populus/sdk (STYLE habit 11): every public name is
 * imported here and the runtime exports are pinned, so a change to the list
 * fails this test; the SDK depends on no server-side package; and the
 * README's "Writing a pipeline" example runs, as written, against a real
 * server on SQLite and prints what its comments say.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as sdk from "../client-sdk/dist/index.js";
import {
  config,
  connect,
  CursorExpiredError,
  DEFAULT_RETRY,
  DEFAULT_URL,
  fromRpcError,
  InvalidArgumentError,
  InvalidConfigError,
  Jobs,
  JobsConfig,
  JobsView,
  LeaseLostError,
  MakeError,
  PermissionDeniedError,
  PopulusClient,
  PopulusError,
  ResourceExhaustedError,
  Table,
  TableNotFoundError,
  UnauthenticatedError,
  UnavailableError,
  WorkerProcessError,
} from "../client-sdk/dist/index.js";
import type {
  ConnectOptions,
  DisplayProgressOptions,
  FetchAnyJobsOptions,
  FetchJobsOptions,
  FetchOptions,
  JobEvent,
  JobEventStatus,
  JobRecord,
  JobStatusName,
  JobsRefreshOptions,
  JobsSettings,
  KeyAttributeInfo,
  KeyAttributeType,
  KeyError,
  KeyRecord,
  KeySource,
  KeySourceKeys,
  KeyValue,
  Make,
  MakeContext,
  PopulateOptions,
  PopulateResult,
  PopulusConfig,
  ProgressCounts,
  RefreshCounts,
  ResolvedConnectOptions,
  ResultRecord,
  RetryPolicy,
  TableDefinition,
  TableInfo,
  TargetRecord,
  VersionMethod,
  WaitForWorkOptions,
  WatchOptions,
  WatchUpdate,
  WorkFound,
} from "../client-sdk/dist/index.js";
import { createTestDatabase } from "./helpers/databases.js";
import { startServer } from "./helpers/server-process.js";

/** Every public type: removing or renaming one fails `tsc -p test`. */
// biome-ignore lint/suspicious/noExportsInTest: exported so that the compiler checks every public type is exported by the SDK, and reports none unused.
export type PublicTypes = [
  ConnectOptions,
  DisplayProgressOptions,
  FetchAnyJobsOptions,
  FetchJobsOptions,
  FetchOptions,
  JobEvent,
  JobEventStatus,
  JobRecord,
  JobStatusName,
  JobsRefreshOptions,
  JobsSettings,
  KeyAttributeInfo,
  KeyAttributeType,
  KeyError,
  KeyRecord,
  KeySource,
  KeySourceKeys,
  KeyValue,
  Make,
  MakeContext,
  PopulateOptions,
  PopulateResult,
  PopulusConfig,
  ProgressCounts,
  RefreshCounts,
  ResolvedConnectOptions,
  ResultRecord,
  RetryPolicy,
  TableDefinition,
  TableInfo,
  TargetRecord,
  VersionMethod,
  WaitForWorkOptions,
  WatchOptions,
  WatchUpdate,
  WorkFound,
];

const ROOT = fileURLToPath(new URL("..", import.meta.url));

test("the runtime exports of @populus/sdk are exactly the public list", (t) => {
  const imported = {
    config,
    connect,
    CursorExpiredError,
    DEFAULT_RETRY,
    DEFAULT_URL,
    fromRpcError,
    InvalidArgumentError,
    InvalidConfigError,
    Jobs,
    JobsConfig,
    JobsView,
    LeaseLostError,
    MakeError,
    PermissionDeniedError,
    PopulusClient,
    PopulusError,
    ResourceExhaustedError,
    Table,
    TableNotFoundError,
    UnauthenticatedError,
    UnavailableError,
    WorkerProcessError,
  };
  t.deepEqual(Object.keys(sdk).sort(), [
    "CursorExpiredError",
    "DEFAULT_RETRY",
    "DEFAULT_URL",
    "InvalidArgumentError",
    "InvalidConfigError",
    "Jobs",
    "JobsConfig",
    "JobsView",
    "LeaseLostError",
    "MakeError",
    "PermissionDeniedError",
    "PopulusClient",
    "PopulusError",
    "ResourceExhaustedError",
    "Table",
    "TableNotFoundError",
    "UnauthenticatedError",
    "UnavailableError",
    "WorkerProcessError",
    "config",
    "connect",
    "fromRpcError",
  ]);
  t.deepEqual(Object.keys(imported).sort(), Object.keys(sdk).sort());
  for (const [name, value] of Object.entries(imported)) t.not(value, undefined, name);
  // The package name resolves to the same module (the workspace link).
  return import("@populus/sdk").then((viaName) => t.is(viaName.connect, connect));
});

test("index.ts has named exports only, and the error classes all extend PopulusError", (t) => {
  const index = readFileSync(join(ROOT, "client-sdk/src/index.ts"), "utf8");
  t.notRegex(index, /export \*/);
  for (const E of [
    CursorExpiredError,
    InvalidArgumentError,
    InvalidConfigError,
    LeaseLostError,
    MakeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TableNotFoundError,
    UnauthenticatedError,
    UnavailableError,
    WorkerProcessError,
  ]) {
    t.true(Object.prototype.isPrototypeOf.call(PopulusError.prototype, E.prototype), E.name);
  }
});

test("client-sdk depends on no server-side package, and its built code imports only what it declares", (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "client-sdk/package.json"), "utf8")) as Record<string, Record<string, string> | undefined>;
  const declared = Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies, ...pkg.optionalDependencies });
  t.deepEqual(Object.keys(pkg.dependencies ?? {}).sort(), ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "cli-progress", "rxjs"]);
  for (const name of declared) {
    t.false(
      /^(typeorm|mysql2?|better-sqlite3|sqlite3|@populus\/server|populus-server|@testcontainers\/.*|testcontainers)$/.test(name),
      `client-sdk depends on ${name}`,
    );
  }
  // Every bare import in dist is a declared dependency (or node:*).
  const dist = join(ROOT, "client-sdk/dist");
  const files = readdirSync(dist, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".js"));
  t.true(files.length > 10);
  const bare = new Set<string>();
  for (const f of files) {
    // Static imports and re-exports start a line in tsc's output; dynamic ones are import("...").
    for (const m of readFileSync(join(dist, f), "utf8").matchAll(
      /^(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']|^import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']/gm,
    )) {
      const spec = m[1] ?? m[2] ?? m[3] ?? "";
      if (spec.startsWith(".") || spec.startsWith("node:")) continue;
      bare.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? spec));
    }
  }
  t.true(bare.has("@connectrpc/connect") && bare.has("@bufbuild/protobuf"), "the scan finds the SDK's imports");
  t.deepEqual(
    [...bare].filter((b) => !declared.includes(b)),
    [],
    `dist imports ${[...bare].join(", ")}`,
  );
});

/** The ```ts blocks of README's "Writing a pipeline" that start with `// <file>.ts`, by file name. */
function readmeFiles(): Map<string, string> {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = /^## Writing a pipeline\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1];
  if (section === undefined) throw new Error('README.md has no "## Writing a pipeline" section');
  const files = new Map<string, string>();
  for (const m of section.matchAll(/^```ts\n\/\/ ([\w-]+\.ts)\n([\s\S]*?)^```$/gm)) files.set(m[1] ?? "", m[2] ?? "");
  return files;
}

test('README\'s "Writing a pipeline" example type-checks and runs against a real server on SQLite, printing what its comments say', async (t) => {
  const files = readmeFiles();
  t.deepEqual([...files.keys()], ["pipeline.ts", "run.ts"]);
  const run = files.get("run.ts") ?? "";
  const expected = [...run.matchAll(/\/\/ → (.*)$/gm)].map((m) => m[1] ?? "");
  t.is(expected.length, 3);

  // Inside the repo, so that "@populus/sdk" resolves through node_modules as it would for a user.
  const dir = join(ROOT, "test/fixtures", `.readme-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir);
  const database = await createTestDatabase("sqlite");
  const server = await startServer({ database: database.url });
  try {
    for (const [name, text] of files) writeFileSync(join(dir, name), text);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        extends: `${relative(dir, ROOT)}/tsconfig.base.json`,
        compilerOptions: { composite: false, noEmit: true, declaration: false },
        include: ["*.ts"],
      }),
    );
    const tsc = spawn(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", dir], { stdio: ["ignore", "pipe", "pipe"] });
    let tscOut = "";
    tsc.stdout.on("data", (d: Buffer) => (tscOut += d.toString()));
    tsc.stderr.on("data", (d: Buffer) => (tscOut += d.toString()));
    const [tscCode] = (await once(tsc, "exit")) as [number | null];
    t.is(tscCode, 0, `the README example does not type-check:\n${tscOut}`);

    const child = spawn(process.execPath, ["--import", "tsx", join(dir, "run.ts")], {
      cwd: dir,
      env: { ...process.env, POPULUS_URL: server.url },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const [code] = (await once(child, "exit")) as [number | null];
    clearTimeout(timer);
    t.is(code, 0, stderr);
    t.deepEqual(stdout.trimEnd().split("\n"), expected);

    // What the server holds: every key of the key source, once, with its mean.
    const db = connect({ url: server.url });
    const Mean = db.table<{ subject_id: number; session: number }>("Mean", { keySource: [], make: () => ({}), module: import.meta.url });
    const rows = await Mean.fetch();
    t.is(rows.length, 20);
    t.true(rows.every((r) => r.result.mean === r.key.subject_id * 10 + r.key.session));
    t.like(await Mean.jobs.progress(), { pending: 0, reserved: 0, error: 0, target: 20, remaining: 0 });
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await server.stop();
    await database.drop();
  }
});
