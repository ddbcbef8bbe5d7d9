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
  const child = spawn(process.execPath, [...(options.node ?? []), CLI_MAIN, ...args], { stdio: ["pipe", "pipe", "pipe"], env: { ...CLEAN_ENV, ...options.env } });
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
  const command = [process.execPath, CLI_MAIN, ...args].map(quote).join(" ");
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

const COUNTS = { pending: 0, reserved: 0, success: 0, error: 0, ignore: 0, target: 0, remaining: 0 };

const showsTheStore = test.macro(async (t: ExecutionContext, dialect: Dialect) => {
  const { server, pipeline } = await setupOf(dialect);
  const { Mean } = pipeline;
  const made = await Mean.populate({ reserveJobs: true, suppressErrors: true });
  t.is(made.successCount, 11);
  const at = ["--server", server.url];

  const tables = await cli([...at, "tables", "--json"]);
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
  const tablesText = await cli([...at, "tables"]);
  t.regex(tablesText.stdout, /^TABLE +STORED AS +KEY +PENDING +RESERVED +ERROR +IGNORE +TARGET +CREATED\n/);
  t.regex(tablesText.stdout, /\nMean +mean +session string, subject_id int64 +0 +0 +1 +0 +11 +\d{4}-/);

  const status = await cli([...at, "status", "Mean"]);
  t.deepEqual(status, { code: 0, stdout: "Mean: 12/12 done, 1 error, 0 reserved, 0 pending, 0 ignored\n", stderr: "" });
  const statusJson = await cli([...at, "--json", "status", "mean"]);
  t.deepEqual(JSON.parse(statusJson.stdout), [{ table: "Mean", ...COUNTS, error: 1, target: 11 }]);

  // The failed job, as the store holds it, through the SDK: what the CLI must show.
  const [failed] = await Mean.jobs.errors.fetch();
  t.truthy(failed);
  t.regex(failed?.errorStack ?? "", /cli-pipeline\.ts/);
  const jobs = await cli([...at, "jobs", "Mean", "--status", "error", "--json"]);
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
  const byKey = await cli([...at, "jobs", "Mean", "--key", '{"subject_id":3}']);
  t.is(byKey.code, 0, byKey.stderr);
  t.regex(byKey.stdout, /^STATUS +PRIORITY +ATTEMPTS +KEY +WORKER +SINCE +MESSAGE\nerror +5 +1 +\{"session":"a","subject_id":3\} +\S+:\d+ +\S+ +subject 3 has no recording\n$/);

  const errors = await cli([...at, "errors", "Mean"]);
  t.is(errors.code, 0, errors.stderr);
  const stackLines = (failed?.errorStack ?? "").split("\n").map((l) => `    ${l}`);
  t.is(
    errors.stdout,
    [`{"session":"a","subject_id":3}  attempt 1 on ${failed?.host}:${failed?.pid}  ${failed?.completeTime?.toISOString()}`, "  subject 3 has no recording", ...stackLines, ""].join(
      "\n",
    ),
  );

  const deleted = await cli([...at, "errors", "Mean", "--delete", "--yes"]);
  t.deepEqual(deleted, { code: 0, stdout: "deleted 1 error job of Mean\n", stderr: "" });
  t.is(await Mean.jobs.errors.count(), 0);

  const ignored = await cli([...at, "--json", "ignore", "Mean", "--key", '{"subject_id":20,"session":"a"}', "--key", '{"subject_id":"21","session":"a"}', "--yes"]);
  t.deepEqual(JSON.parse(ignored.stdout), { table: "Mean", ignored: 2 });
  t.deepEqual(
    (await Mean.jobs.ignored.fetch()).map((j) => j.key),
    [
      { session: "a", subject_id: 20 },
      { session: "a", subject_id: 21 },
    ],
  );
});

for (const dialect of testDialects()) {
  test(`${dialect}: tables, status, jobs and errors show the store; errors --delete and ignore change it; --json has the documented fields`, showsTheStore, dialect);
}
