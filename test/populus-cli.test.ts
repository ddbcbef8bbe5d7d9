/**
 * populus, the operators' CLI, as a real process (node worker/dist/cli/main.js)
 * against real servers, with jobs made through the SDK
 * (fixtures/cli-pipeline.ts):
 *
 * - on each dialect: tables, status, jobs and errors show what the store
 *   holds (a failing make's message and whole stack included); errors
 *   --delete and ignore change it, checked through the SDK; --json parses
 *   and has the documented fields;
 * - status --watch follows the Watch stream while jobs are made in steps, in
 *   plain lines (and JSON lines) when stdout is not a terminal;
 * - on a terminal (util-linux `script` gives it a pty): bars, and a
 *   confirmation that is refused or given;
 * - bad input (bad JSON key, unknown table, attribute or status, a
 *   destructive command without --yes off a terminal) is one line, exit 2,
 *   and changes nothing;
 * - tokens: a reader token is refused admin actions (exit 4), no token is
 *   refused, an admin token deletes; a server that is down exits 1;
 * - refresh loads the pipeline module (exit 3 when it cannot).
 */
import test, { type ExecutionContext } from "ava";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "../client-sdk/dist/index.js";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./helpers/databases.js";
import { pipelinePerDialect } from "./helpers/pipeline-setup.js";
import { type ServerProcess, startServer } from "./helpers/server-process.js";

type Pipeline = typeof import("./fixtures/cli-pipeline.js");

const CLI_MAIN = fileURLToPath(new URL("../worker/dist/cli/main.js", import.meta.url));
const PIPELINE = fileURLToPath(new URL("./fixtures/cli-pipeline.ts", import.meta.url));

const setupOf = pipelinePerDialect<Pipeline>("cli-pipeline.ts");

/** The environment of every CLI run: none of the developer's POPULUS_* settings. */
const CLEAN_ENV: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("POPULUS_")));

interface CliExit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const running = new Set<ChildProcess>();
const scratch = mkdtempSync(join(tmpdir(), "populus-cli-"));

test.after.always(() => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  rmSync(scratch, { recursive: true, force: true });
});

/** Starts populus with `args` (stdin a pipe, closed at once unless `input` says what to write). */
function startCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; node?: readonly string[] } = {}) {
  const child = spawn(process.execPath, [...(options.node ?? []), CLI_MAIN, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...CLEAN_ENV, ...options.env },
  });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = (once(child, "exit") as Promise<[number | null]>).then(([code]): CliExit => {
    running.delete(child);
    return { code, stdout, stderr };
  });
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs populus to its end; stdin is closed (not a terminal, nothing to read). */
async function cli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; node?: readonly string[] } = {}): Promise<CliExit> {
  const run = startCli(args, options);
  run.child.stdin.end();
  return run.exited;
}

/** Runs populus on a pseudo-terminal (util-linux `script`), writing `input` to it; its output is the terminal's, \r\n and all. */
async function cliOnTerminal(args: readonly string[], input = ""): Promise<CliExit> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  // The shell waits a moment after populus exits, keeping its exit code: `script` stops relaying the
  // terminal once its child ends, and had twice dropped the last line populus wrote on a loaded machine.
  const command = `${[process.execPath, CLI_MAIN, ...args].map(quote).join(" ")}; code=$?; sleep 0.5; exit $code`;
  const child = spawn("script", ["--quiet", "--flush", "--return", "--command", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], env: CLEAN_ENV });
  running.add(child);
  let stdout = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    // Answer once the question is on the terminal (typed earlier, the pty would echo it before the prompt).
    if (input !== "" && stdout.includes("[y/N]")) {
      child.stdin.write(input);
      input = "";
    }
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  running.delete(child);
  return { code, stdout, stderr };
}

/** Polls `check` until it holds (rejects after 30 s, or when the process exited first). */
async function until(what: string, check: () => boolean, exited: Promise<CliExit>): Promise<void> {
  let gone: CliExit | undefined;
  void exited.then((e) => (gone = e));
  const deadline = Date.now() + 30_000;
  while (!check()) {
    if (gone !== undefined) throw new Error(`waiting for ${what}: populus exited first (${gone.code}): ${gone.stderr}`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: timed out`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every field of a job in `jobs --json` and `errors --json` (README, "The populus CLI"). */
const JOB_FIELDS = [
  "attempts",
  "codeVersion",
  "completeTime",
  "createTime",
  "durationMs",
  "errorMessage",
  "errorStack",
  "host",
  "key",
  "leaseExpireTime",
  "pid",
  "priority",
  "progress",
  "progressMessage",
  "reserveTime",
  "scheduledTime",
  "status",
  "user",
  "workerId",
];

/** The escape character that starts a terminal's control sequences. */
const ESC = "\u001b";

const COUNTS = { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: 0, remaining: 0 };

const showsTheStore = test.macro(async (t: ExecutionContext, dialect: Dialect) => {
  const { server, pipeline } = await setupOf(dialect);
  const { Mean } = pipeline;
  const made = await Mean.populate({ reserveJobs: true, suppressErrors: true });
  t.is(made.successCount, 11);
  const at = ["--server", server.url];

  // The reads, one after another (eight CLI processes at once, on a loaded machine, once left one without output).
  const read = async (...args: string[]) => {
    const exit = await cli([...at, ...args]);
    t.is(exit.code, 0, `populus ${args.join(" ")}: ${exit.stderr}`);
    return exit;
  };
  const tables = await read("tables", "--json");
  const tablesText = await read("tables");
  const status = await read("status", "Mean");
  const statusJson = await read("--json", "status", "mean");
  const jobs = await read("jobs", "Mean", "--status", "error", "--json");
  const byKey = await read("jobs", "Mean", "--key", '{"subject_id":3}');
  const errors = await read("errors", "Mean");
  const errorsJson = await read("errors", "Mean", "--json");
  t.is(tables.code, 0, tables.stderr);
  const mean = (JSON.parse(tables.stdout) as Record<string, unknown>[]).find((x) => x.displayName === "Mean");
  t.like(mean, {
    name: "mean",
    displayName: "Mean",
    keyAttributes: [
      { name: "session", type: "string" },
      { name: "subject_id", type: "int64" },
    ],
    progress: { ...COUNTS, error: 1, target: 11 },
  });
  t.deepEqual(Object.keys(mean ?? {}).sort(), ["createTime", "displayName", "keyAttributes", "name", "progress"]);
  t.false(Number.isNaN(Date.parse(String(mean?.createTime))));
  t.regex(tablesText.stdout, /^TABLE +STORED AS +KEY +PENDING +RESERVED +ERROR +IGNORE +TARGET +CREATED\n/);
  t.regex(tablesText.stdout, /\nMean +mean +session string, subject_id int64 +0 +0 +1 +0 +11 +\d{4}-/);

  t.deepEqual(status, { code: 0, stdout: "Mean: 12/12 done, 1 error, 0 reserved, 0 pending, 0 ignored\n", stderr: "" });
  t.deepEqual(JSON.parse(statusJson.stdout), [{ table: "Mean", ...COUNTS, error: 1, target: 11 }]);

  // The failed job, as the store holds it, through the SDK: what the CLI must show.
  const [failed] = await Mean.jobs.errors.fetch();
  t.truthy(failed);
  t.regex(failed?.errorStack ?? "", /cli-pipeline\.ts/);
  const listed = JSON.parse(jobs.stdout) as Record<string, unknown>[];
  t.is(listed.length, 1);
  t.deepEqual(Object.keys(listed[0] ?? {}).sort(), JOB_FIELDS);
  t.like(listed[0], {
    key: { session: "a", subject_id: 3 },
    status: "error",
    priority: 5,
    attempts: 1,
    errorMessage: "subject 3 has no recording",
    errorStack: failed?.errorStack,
    leaseExpireTime: null,
    completeTime: failed?.completeTime?.toISOString(),
    host: failed?.host,
    pid: failed?.pid,
  });
  t.is(byKey.code, 0, byKey.stderr);
  t.regex(
    byKey.stdout,
    /^STATUS +PRIORITY +ATTEMPTS +KEY +WORKER +SINCE +MESSAGE\nerror +5 +1 +\{"session":"a","subject_id":3\} +\S+:\d+ +\S+ +subject 3 has no recording\n$/,
  );

  t.is(errors.code, 0, errors.stderr);
  t.deepEqual(JSON.parse(errorsJson.stdout), listed, "errors --json: the same records as jobs --status error --json");
  const stackLines = (failed?.errorStack ?? "").split("\n").map((l) => `    ${l}`);
  t.is(
    errors.stdout,
    [
      `{"session":"a","subject_id":3}  attempt 1 on ${failed?.host}:${failed?.pid}  ${failed?.completeTime?.toISOString()}`,
      "  subject 3 has no recording",
      ...stackLines,
      "",
    ].join("\n"),
  );

  const deleted = await cli([...at, "errors", "Mean", "--delete", "--yes"]);
  t.deepEqual(deleted, { code: 0, stdout: "deleted 1 error job of Mean\n", stderr: "" });
  t.is(await Mean.jobs.errors.count(), 0);

  const ignored = await cli([
    ...at,
    "--json",
    "ignore",
    "Mean",
    "--key",
    '{"subject_id":20,"session":"a"}',
    "--key",
    '{"subject_id":"21","session":"a"}',
    "--yes",
  ]);
  t.deepEqual(JSON.parse(ignored.stdout), { table: "Mean", ignored: 2 });
  t.deepEqual(
    (await Mean.jobs.ignored.fetch()).map((j) => j.key),
    [
      { session: "a", subject_id: 20 },
      { session: "a", subject_id: 21 },
    ],
  );
  const firstOnly = await cli([...at, "jobs", "Mean", "--limit", "1"]);
  t.is(firstOnly.code, 0);
  t.regex(firstOnly.stdout, /^STATUS +PRIORITY +ATTEMPTS +KEY +WORKER +SINCE +MESSAGE\nignore +5 +0 +\{"session":"a","subject_id":20\} +\d{4}-\S+\n$/);
  t.is(firstOnly.stderr, "populus: more jobs match than the 1 shown; --limit shows more\n");
});

for (const dialect of testDialects()) {
  test(
    `${dialect}: tables, status, jobs and errors show the store; errors --delete and ignore change it; --json has the documented fields`,
    showsTheStore,
    dialect,
  );
}

test("status --watch follows the Watch stream as jobs are made, in plain lines and JSON lines when stdout is not a terminal", async (t) => {
  const { server, pipeline } = await setupOf("sqlite");
  const { Steps } = pipeline;
  await Steps.jobs.refresh();
  const text = startCli(["--server", server.url, "status", "Steps", "--watch"]);
  const json = startCli(["--server", server.url, "--json", "status", "Steps", "--watch"]);
  const line = (done: number) => `Steps: ${done}/8 done, 0 errors, 0 reserved, ${8 - done} pending, 0 ignored\n`;
  const targets = () =>
    json
      .stdout()
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => (JSON.parse(l) as { target: number }).target);
  const sawTarget = (n: number) => () => targets().includes(n);
  await until("the snapshot", () => text.stdout().includes(line(0)), text.exited);
  await until("the JSON snapshot", sawTarget(0), json.exited);
  // Made in steps, so that the output must move through each: 3 of 8, then the rest.
  t.is((await Steps.populate({ reserveJobs: true, refresh: false, maxCalls: 3 })).successCount, 3);
  await until("3 of 8 done", () => text.stdout().includes(line(3)), text.exited);
  await until("3 of 8 in JSON", sawTarget(3), json.exited);
  t.is((await Steps.populate({ reserveJobs: true, refresh: false })).successCount, 5);
  await until("8 of 8 done", () => text.stdout().includes(line(8)), text.exited);
  await until("8 of 8 in JSON", sawTarget(8), json.exited);

  text.child.kill("SIGINT");
  json.child.kill("SIGINT");
  const [textExit, jsonExit] = await Promise.all([text.exited, json.exited]);
  t.is(textExit.code, 0, textExit.stderr);
  t.is(textExit.stderr, "");
  // Plain lines: no carriage-return redraws, no terminal escapes, each a whole status line, the counts only moving forward.
  t.false(textExit.stdout.includes("\r") || textExit.stdout.includes(ESC), "no carriage return or escape sequence");
  const done = textExit.stdout
    .trimEnd()
    .split("\n")
    .map((l) => {
      const m = /^Steps: (\d)\/8 done, 0 errors, \d reserved, \d pending, 0 ignored$/.exec(l);
      t.truthy(m, l);
      return Number(m?.[1]);
    });
  t.deepEqual(
    done,
    [...done].sort((a, b) => a - b),
  );
  t.is(jsonExit.code, 0, jsonExit.stderr);
  for (const l of jsonExit.stdout.trimEnd().split("\n")) {
    const update = JSON.parse(l) as Record<string, unknown>;
    t.deepEqual(Object.keys(update), ["table", "time", "pending", "reserved", "success", "error", "ignore", "target", "remaining"]);
    t.is(update.table, "Steps");
    t.false(Number.isNaN(Date.parse(String(update.time))));
  }
  t.deepEqual(
    targets(),
    [...targets()].sort((a, b) => a - b),
  );
});

test("on a terminal: a bar per table, and a destructive command asks first (no or Ctrl-D: exit 1 and nothing changes; yes: it goes ahead)", async (t) => {
  const { server, pipeline } = await setupOf("sqlite");
  const { Asked } = pipeline;
  await Asked.populate({ reserveJobs: true, suppressErrors: true });
  const bars = await cliOnTerminal(["--server", server.url, "status", "Asked"]);
  t.is(bars.code, 0, bars.stdout);
  // cli-progress's in-place redraw: the bar (as wide as the terminal leaves room for), its percentage and the same text as the plain line.
  t.regex(bars.stdout, /Asked \|█{10,30}\| 100% 3\/3 done, 1 error, 0 reserved, 0 pending, 0 ignored/);
  t.true(bars.stdout.includes(`${ESC}[`), "terminal escape sequences");

  const declined = await cliOnTerminal(["--server", server.url, "errors", "Asked", "--delete"], "n\n");
  t.is(declined.code, 1, declined.stdout);
  t.regex(declined.stdout, /Delete 1 error job of Asked\? The next refresh queues their keys again\. \[y\/N\] /);
  t.regex(declined.stdout, /populus: not confirmed; nothing changed/);
  t.is(await Asked.jobs.errors.count(), 1);

  // Ctrl-D (end of input) at the question is a no as well, not a silent exit 0.
  const endOfInput = await cliOnTerminal(["--server", server.url, "errors", "Asked", "--delete"], "\u0004");
  t.is(endOfInput.code, 1, endOfInput.stdout);
  t.regex(endOfInput.stdout, /populus: not confirmed; nothing changed/);
  t.is(await Asked.jobs.errors.count(), 1);

  const confirmed = await cliOnTerminal(["--server", server.url, "errors", "Asked", "--delete"], "y\n");
  t.is(confirmed.code, 0, confirmed.stdout);
  t.regex(confirmed.stdout, /deleted 1 error job of Asked/);
  t.is(await Asked.jobs.errors.count(), 0, "confirmed: the error job is deleted");
});

test("bad input is one line on stderr and exit 2, and changes nothing", async (t) => {
  const { server, pipeline } = await setupOf("sqlite");
  const { Frozen } = pipeline;
  await Frozen.populate({ reserveJobs: true, suppressErrors: true });
  await Frozen.jobs.ignore([{ id: 7 }]);
  const snapshot = async () => ({ jobs: await Frozen.jobs.fetch(), progress: await Frozen.jobs.progress(), target: await Frozen.fetch() });
  const before = await snapshot();
  t.like(before.progress, { error: 1, ignore: 1, target: 3 });
  const at = ["--server", server.url];
  const cases: [string[], string | RegExp][] = [
    [["ignore", "Frozen", "--key", "{id:1}", "--yes"], /^populus: --key "\{id:1\}" is not JSON \(.+\); write e\.g\. '\{"id":3\}'\n$/],
    [["ignore", "Frozen", "--key", '{"id":"one"}', "--yes"], `populus: --key: "id" is an int64 attribute; give a whole number, got "one"\n`],
    [["ignore", "Frozen", "--key", '{"id":1.5}', "--yes"], `populus: --key: "id" is an int64 attribute; give a whole number, got 1.5\n`],
    [["ignore", "Frozen", "--key", '{"idx":1}', "--yes"], `populus: --key: Frozen has no key attribute "idx"; its key attributes are id\n`],
    [["ignore", "Frozen", "--key", "[1]", "--yes"], `populus: --key must be a JSON object of key attributes, e.g. '{"id":3}'\n`],
    [["ignore", "Frozen", "--yes"], `populus: populus ignore needs the keys to ignore: --key '{"attribute":value}', repeated for several\n`],
    [["ignore", "Frozen", "--key", '{"id":1}'], "populus: ignore changes the store and stdin is not a terminal to confirm it on; add --yes\n"],
    [["ignore", "Nope", "--key", '{"id":1}', "--yes"], new RegExp(`^populus: no table "Nope" on ${server.url}; it has (\\w+, )*Frozen(, \\w+)*\\n$`)],
    [["errors", "Frozen", "--delete"], "populus: errors --delete changes the store and stdin is not a terminal to confirm it on; add --yes\n"],
    [["errors", "Frozen", "--delete", "--yes", "--key", '{"id":"x"}'], `populus: --key: "id" is an int64 attribute; give a whole number, got "x"\n`],
    [
      ["errors", "Frozen", "--delete", "--yes", "--limit", "3"],
      "populus: --limit chooses what is listed; --delete deletes every error job that matches (narrow it with --key)\n",
    ],
    [["errors", "Frozen", "--key", "{}"], "populus: --key names no attribute; give at least one of id\n"],
    [
      ["jobs", "Frozen", "--status", "done"],
      `populus: option '--status <status>' argument 'done' is invalid. "done" is not a job status; use pending, reserved, success, error, ignore\n`,
    ],
    [["jobs", "Frozen", "--limit", "0"], `populus: option '--limit <n>' argument '0' is invalid. --limit must be a whole number from 1 to 1000000, got "0"\n`],
    [["jobs", "Frozen", "--stauts", "error"], "populus: unknown option '--stauts' (Did you mean --status?)\n"],
    [["jobs"], "populus: missing required argument 'table'\n"],
    [["status", "Frozen", "extra"], "populus: too many arguments for 'status'. Expected 1 argument but got 2.\n"],
    [["tabels"], "populus: unknown command 'tabels' (Did you mean tables?)\n"],
  ];
  // Run side by side: none of them may change anything, which the snapshot checks after all of them.
  const exits = await Promise.all(cases.map(([args]) => cli([...at, ...args])));
  for (const [i, [args, stderr]] of cases.entries()) {
    const exit = exits[i] ?? { code: null, stdout: "", stderr: "" };
    t.is(exit.code, 2, args.join(" "));
    if (typeof stderr === "string") t.is(exit.stderr, stderr, args.join(" "));
    else t.regex(exit.stderr, stderr, args.join(" "));
    t.is(exit.stdout, "", args.join(" "));
  }
  const badServer = await cli(["--server", "ftp://x", "tables"]);
  t.deepEqual(badServer, {
    code: 2,
    stdout: "",
    stderr: `populus: option '--server <url>' argument 'ftp://x' is invalid. --server "ftp://x" must start with http:// or https://\n`,
  });
  const noCommand = await cli(at);
  t.is(noCommand.code, 2);
  t.regex(noCommand.stderr, /^Usage: populus \[options\] \[command\]/);
  t.deepEqual(await snapshot(), before);
});

test("refresh loads the pipeline module and syncs the jobs with its key source; an unknown table exits 2, a module that cannot load exits 3", async (t) => {
  const { server, pipeline } = await setupOf("sqlite");
  const refresh = (...args: string[]) => cli(["--server", server.url, ...args], { node: ["--import", "tsx"] });
  const first = await refresh("--json", "refresh", "Fresh", "--pipeline", PIPELINE, "--priority", "2");
  t.is(first.code, 0, first.stderr);
  t.deepEqual(JSON.parse(first.stdout), [{ table: "Fresh", added: 5, removed: 0, orphaned: 0, rePended: 0 }]);
  t.like(await pipeline.Fresh.jobs.progress(), { pending: 5 });
  t.deepEqual(
    (await pipeline.Fresh.jobs.pending.fetch()).map((j) => j.priority),
    [2, 2, 2, 2, 2],
  );
  const again = await refresh("refresh", "Fresh", "--pipeline", PIPELINE);
  t.deepEqual(again, { code: 0, stdout: "Fresh: 0 added, 0 removed, 0 orphaned reset, 0 re-pended\n", stderr: "" });

  const unknown = await refresh("refresh", "Nope", "--pipeline", PIPELINE);
  t.deepEqual(unknown, {
    code: 2,
    stdout: "",
    stderr: "populus: table Nope: the pipeline module exports no such table; it exports Asked, Fresh, Frozen, Mean, Steps\n",
  });
  const missing = join(scratch, "no-such-pipeline.js");
  // These fail before any import, so plain node does.
  const unloadable = await cli(["--server", server.url, "refresh", "--pipeline", missing]);
  t.deepEqual(unloadable, { code: 3, stdout: "", stderr: `populus: cannot load pipeline module ${missing}: ${missing} does not exist\n` });
  const noPipeline = await cli(["--server", server.url, "refresh"]);
  t.deepEqual(noPipeline, { code: 2, stdout: "", stderr: "populus: required option '--pipeline <module>' not specified\n" });
});

test("a server that cannot be reached exits 1 with one line naming it", async (t) => {
  // A port that was free a moment ago: nothing listens there.
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const { port } = probe.address() as { port: number };
  probe.close();
  await once(probe, "close");
  const exit = await cli(["--server", `http://127.0.0.1:${port}`, "tables"]);
  t.is(exit.code, 1);
  t.regex(exit.stderr, new RegExp(`^populus: cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\n$`));
  t.is(exit.stdout, "");
});

test("tokens: no token and a reader token are refused admin actions (exit 4) and change nothing; an admin token deletes", async (t) => {
  const database: TestDatabase = await createTestDatabase("sqlite");
  const tokens = { reader: "reader-token-0123456789abcdef", worker: "worker-token-0123456789abcdef", admin: "admin-token-0123456789abcdef" };
  const tokensFile = join(scratch, "tokens");
  writeFileSync(
    tokensFile,
    Object.entries(tokens)
      .map(([role, token]) => `${role} ${token}\n`)
      .join(""),
  );
  chmodSync(tokensFile, 0o600);
  const tokenFile = (role: keyof typeof tokens) => {
    const path = join(scratch, `${role}.token`);
    writeFileSync(path, `${tokens[role]}\n`);
    return path;
  };
  let server: ServerProcess | undefined;
  let pipeline: Pipeline | undefined;
  t.teardown(async () => {
    pipeline?.db.close();
    await server?.stop();
    await database.drop();
  });
  server = await startServer({
    database: database.url,
    args: ["--tokens-file", tokensFile],
    env: { POPULUS_TOKENS: undefined, POPULUS_TOKENS_FILE: undefined },
  });
  pipeline = (await import(`./fixtures/cli-pipeline.js?${new URLSearchParams({ url: server.url, token: tokens.admin, for: "tokens" })}`)) as Pipeline;
  await pipeline.Frozen.populate({ reserveJobs: true, suppressErrors: true });
  const as = (role: keyof typeof tokens) => ["--server", server?.url ?? "", "--token-file", tokenFile(role)];

  const listed = await cli([...as("reader"), "tables", "--json"]);
  t.is(listed.code, 0, listed.stderr);
  t.deepEqual(
    (JSON.parse(listed.stdout) as { displayName: string }[]).map((x) => x.displayName),
    ["Frozen"],
  );
  const readerDeletes = await cli([...as("reader"), "errors", "Frozen", "--delete", "--yes"]);
  t.deepEqual(readerDeletes, {
    code: 4,
    stdout: "",
    stderr: `populus: ${server.url} refused the call: DeleteJobs needs the admin role; this token has the reader role\n`,
  });
  const readerIgnores = await cli([...as("reader"), "ignore", "Frozen", "--key", '{"id":9}', "--yes"]);
  t.deepEqual(readerIgnores, {
    code: 4,
    stdout: "",
    stderr: `populus: ${server.url} refused the call: Ignore needs the admin role; this token has the reader role\n`,
  });
  const readerRefreshes = await cli([...as("reader"), "refresh", "Frozen", "--pipeline", PIPELINE], { node: ["--import", "tsx"] });
  t.is(readerRefreshes.code, 4);
  t.is(readerRefreshes.stderr, `populus: ${server.url} refused the call: Refresh needs the worker role; this token has the reader role\n`);
  const anonymous = await cli(["--server", server.url, "status"]);
  t.is(anonymous.code, 4);
  t.regex(anonymous.stderr, /^populus: http:\S+ refused the call: ListTables needs a bearer token: .* \(give --token-file, or POPULUS_TOKEN\)\n$/);
  const unknown = await cli(["--server", server.url, "status"], { env: { POPULUS_TOKEN: "not-a-token-of-this-server" } });
  t.deepEqual(unknown, {
    code: 4,
    stdout: "",
    stderr: `populus: ${server.url} refused the call: the bearer token is not valid on this server (give --token-file, or POPULUS_TOKEN)\n`,
  });
  t.like(await pipeline.Frozen.jobs.progress(), { error: 1, ignore: 0 });

  const adminDeletes = await cli([...as("admin"), "errors", "Frozen", "--delete", "--yes"]);
  t.deepEqual(adminDeletes, { code: 0, stdout: "deleted 1 error job of Frozen\n", stderr: "" });
  t.like(await pipeline.Frozen.jobs.progress(), { error: 0 });
});

test("status --watch resumes after the server restarts, as the SDK's watch does, and goes on showing the counts", async (t) => {
  const database = await createTestDatabase("sqlite");
  let server = await startServer({ database: database.url });
  const db = connect({ url: server.url });
  t.teardown(async () => {
    db.close();
    await server.stop();
    await database.drop();
  });
  const Resumed = db.table<{ id: number }>("Resumed", {
    keySource: Array.from({ length: 4 }, (_, id) => ({ id })),
    make: (key) => ({ id: key.id }),
    module: PIPELINE,
  });
  await Resumed.jobs.refresh();
  const watch = startCli(["--server", server.url, "status", "Resumed", "--watch"]);
  await until("the snapshot", () => watch.stdout().includes("Resumed: 0/4 done, 0 errors, 0 reserved, 4 pending, 0 ignored\n"), watch.exited);

  // SIGTERM ends the Watch streams (UNAVAILABLE); the same database comes back on the same port.
  t.is(await server.stop(), 0);
  server = await startServer({ database: database.url, args: ["--port", String(server.port)] });
  t.is((await Resumed.populate({ reserveJobs: true, refresh: false })).successCount, 4);
  await until("the counts after the restart", () => watch.stdout().includes("Resumed: 4/4 done, 0 errors, 0 reserved, 0 pending, 0 ignored\n"), watch.exited);

  watch.child.kill("SIGINT");
  const exit = await watch.exited;
  t.is(exit.code, 0);
  t.is(exit.stderr, "");
});
