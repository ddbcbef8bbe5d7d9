/**
 * What the SDK tests share: per dialect, a server on a fresh database, a
 * scratch directory, and the test file's pipeline fixture imported with both
 * (`?url=…&dir=…`, so each dialect gets a module instance of its own); the
 * worker processes a test starts; and waiting on them.
 *
 * Importing this registers the hooks of the test file that imports it: the
 * setups are made before its tests and, after them, every worker still
 * running is SIGKILLed and each setup torn down.
 */
import test from "ava";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTestDatabase, type Dialect, type TestDatabase, testDialects } from "./databases.js";
import { type ServerProcess, startServer } from "./server-process.js";

export interface PipelineSetup<P> {
  readonly database: TestDatabase;
  readonly server: ServerProcess;
  /** Scratch directory, also the fixture's `dir` (where its makes record their calls). */
  readonly dir: string;
  readonly pipeline: P;
}

/** Worker processes started by this test file. */
const children = new Set<ChildProcess>();

test.after.always(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/**
 * Sets up `fixture` (a file name under test/fixtures) once per dialect under
 * test; answers the getter of a dialect's setup. `query` adds to the import
 * URL (a distinct module instance, e.g. when two files load one fixture).
 */
export function pipelinePerDialect<P extends { readonly db: { close(): void } }>(
  fixture: string,
  query: Readonly<Record<string, string>> = {},
): (dialect: Dialect) => Promise<PipelineSetup<P>> {
  const setups = new Map<Dialect, Promise<PipelineSetup<P>>>();
  const name = fixture.replace(/\.[jt]s$/, "");
  const setUp = async (dialect: Dialect): Promise<PipelineSetup<P>> => {
    const database = await createTestDatabase(dialect);
    const server = await startServer({ database: database.url });
    const dir = mkdtempSync(join(tmpdir(), `populus-${name}-${dialect}-`));
    const search = new URLSearchParams({ url: server.url, dir, ...query });
    const pipeline = (await import(`../fixtures/${fixture}?${search}`)) as P;
    return { database, server, dir, pipeline };
  };
  test.before(() => {
    for (const d of testDialects()) setups.set(d, setUp(d));
  });
  test.after.always(async () => {
    for (const s of setups.values()) {
      const setup = await s.catch(() => undefined);
      if (setup === undefined) continue;
      setup.pipeline.db.close();
      await setup.server.stop();
      await setup.database.drop();
      rmSync(setup.dir, { recursive: true, force: true });
    }
  });
  return (dialect) => setups.get(dialect) ?? Promise.reject(new Error(`no ${dialect} setup: it is not among the dialects under test`));
}

/** How a worker process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** ms from its start */
  readonly at: number;
}

export interface Worker {
  readonly child: ChildProcess;
  /** Resolves when it exits; rejects when it is still running `exitWithinMs` after its start. */
  readonly exited: Promise<Exit>;
}

/**
 * Starts `node --import tsx <script> ...args`, tracked so that it is
 * SIGKILLed after the file's tests if still running. `detached` gives it a
 * process group of its own (to signal the group, as a terminal's Ctrl-C does).
 */
export function startWorker(
  script: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; detached?: boolean; exitWithinMs?: number } = {},
): Worker {
  const started = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
    detached: options.detached ?? false,
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Exit>((resolve, reject) => {
    const limit = options.exitWithinMs;
    const timer =
      limit === undefined ? undefined : setTimeout(() => reject(new Error(`worker still running after ${limit / 1000} s: ${stderr.trim()}`)), limit);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr, at: Date.now() - started });
    });
  });
  // Handled here too: a test that failed before awaiting it must not turn the limit into an unhandled rejection.
  exited.catch(() => undefined);
  return { child, exited };
}

/**
 * Polls until `check()` holds; rejects after `ms`, or at once when `worker`
 * exits first (with its stderr). Generous by default: with other SDK test
 * files beside these, a dozen tsx processes start at once on the 2-core
 * machine, and a worker took over 20 s to reach its first make.
 */
export async function waitFor(what: string, check: () => boolean, worker?: Worker, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  let gone: Exit | undefined;
  void worker?.exited.then(
    (e) => (gone = e),
    () => undefined,
  );
  while (!check()) {
    if (gone !== undefined) throw new Error(`waiting for ${what}: the worker exited first (${gone.signal ?? gone.code}): ${gone.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`waiting for ${what}: timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export { recordedCalls } from "../fixtures/calls.js";
